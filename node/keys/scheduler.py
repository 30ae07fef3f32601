"""The node's rotation scheduler: runs the planner (node/keys/rotation.py) for the node's subject,
publishes what it plans, adopts what a twin node published, and keeps the service's key file.

Each pass is synchronous (run on a worker thread) and returns when to look again. Its state is in
``/v1/health`` under ``services.rotation`` and in the ``keyreg_rotation_*`` metrics: the next
activation, the keys in force, the keys published, the last error, and the operator warning
(the subject has no valid key within ``overlap_s`` and no successor is scheduled), which is logged
too. A policy that cannot work is refused when the scheduler starts (:class:`PolicyError`).

Events are deterministic (docs/adr/0014-redundant-schedulers.md): the successor key is derived
from the keystore's rotation seed and its activation time, the timestamp is the slot's, and the
signatures are RFC 6979 deterministic, so two nodes that hold the same keystore and the same
``[rotation]`` settings sign byte-identical updates (the second is ``known``, not duplicity).

Custody (docs/operations.md "Custody"): a node in operator mode signs its updates with the operator
key alone, and every key it publishes keeps the operator limits: purposes in scope, a notAfter
within maxValidity of the update (:func:`~keyreg.keys.rotation.scheduled_not_after`), at most maxKeys
live. Limits that cannot carry the ``[rotation]`` schedule are refused when the scheduler starts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..core.errors import KeyregError
from ..core.log import SubjectState
from .handout import Handout, write_key_file
from .keystore import Keystore
from .operations import Head, operator_set_of, sign_update
from .rotation import (
    KeyWindow,
    PolicyError,
    RotationPlan,
    RotationPolicy,
    coverage_gap,
    next_activation,
    operator_policy_problems,
    plan_rotation,
    scheduled_not_after,
    scheduled_windows,
)
from .service_keys import ServiceKey

if TYPE_CHECKING:
    import trio

    from ..config import Config
    from ..registry import Registry

log = logging.getLogger("keyreg.rotation")

RETRY_S = 30  # after a failed pass
MAX_SLEEP_S = 60.0  # look at least this often (keys a twin published, clock jumps, CLI changes)
ADOPT_MAX = 4  # newest unheld keys of the schedule tried per pass


def scheduled_key(seed: bytes, subject: bytes, alg: str, activation: int) -> ServiceKey:
    """The key the schedule publishes for ``activation``: the same on every node with this seed."""
    return ServiceKey.derive(seed, alg, subject + activation.to_bytes(8, "big"))


class RotationScheduler:
    """One node's scheduler. ``handout`` gives the service's key (the node's
    ``current_signing_key``) for the key file; ``clock`` is the real clock, and the scheduler's own
    clock adds ``[rotation] clock_offset_s`` (drills of a missed rotation)."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        keystore: Keystore | None,
        handout: Callable[[], Handout] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        rcfg = config.rotation
        self.policy = RotationPolicy(rcfg.rotation_interval_s, rcfg.overlap_s, rcfg.publish_ahead_s)
        self.config, self.registry, self.keystore, self.handout = config, registry, keystore, handout
        self.rcfg, self.clock = rcfg, clock
        self.purposes = tuple(rcfg.purposes)
        self.started = clock()
        self.published = 0
        self.overdue_published = 0  # of which published late (activation moved to a later slot)
        self.errors = 0
        self.last_error: str | None = None
        self.last_error_at: int | None = None
        self.warning: str | None = None
        self.info: dict[str, Any] = {}
        self.next_activation: int | None = None
        self.keys_in_force = 0
        self._underivable: set[str] = set()  # keys of the schedule this seed does not give
        self._file_written: tuple[str | None, str | None] = (None, None)  # (key, successor) in the file
        self.operator = keystore.operator_policy if keystore is not None else None
        if self.operator is not None:
            problems = operator_policy_problems(self.policy, self.operator.max_validity, self.operator.max_keys)
            outside = sorted(set(self.purposes) - set(self.operator.purposes))
            if outside:
                problems.append(
                    f"[rotation] purposes {outside} are outside the operator scope {sorted(self.operator.purposes)}"
                )
            if problems:
                raise PolicyError("rotation refused under the node's operator limits: " + "; ".join(problems))
        self.key_file: Path | None = None
        if rcfg.key_file and handout is not None:
            path = Path(rcfg.key_file)
            self.key_file = path if path.is_absolute() else config.data_dir / path

    def now(self) -> int:
        # Rounded up: a successor planned "publish_ahead from now" is never less than that away.
        return math.ceil(self.clock() + self.rcfg.clock_offset_s)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """The ``services.rotation`` part of /v1/health."""
        p = self.policy
        return {
            "ok": self.last_error is None and self.warning is None,
            "enabled": True,
            "policy": {"interval_s": p.interval, "overlap_s": p.overlap, "publish_ahead_s": p.publish_ahead},
            "clockOffset_s": self.rcfg.clock_offset_s,
            "nextRotation": self.next_activation,
            "keysInForce": self.keys_in_force,
            "keysPublished": self.published,
            "overduePublished": self.overdue_published,
            "errors": self.errors,
            "lastError": self.last_error,
            "lastErrorAt": self.last_error_at,
            "warning": self.warning,
            "signer": "operator" if self.operator is not None else "controllers",
            **self.info,
        }

    def _fail(self, now: int, message: str) -> int:
        self.errors += 1
        self.last_error, self.last_error_at = message, now
        log.error("rotation: %s", message)
        return now + RETRY_S

    def _observe(self, now: int, windows: list[KeyWindow], plan_next: int | None) -> None:
        in_force = [k for k in windows if k.valid_at(now)]
        pending = [k for k in windows if k.valid_from > now and k.ends_after(now)]
        self.keys_in_force = len(in_force)
        self.next_activation = plan_next
        self.info = {
            "inForce": sorted(k.key_id for k in in_force),
            "pending": [
                {"keyId": k.key_id, "activeFrom": k.valid_from} for k in sorted(pending, key=lambda k: k.valid_from)
            ],
        }
        gap = coverage_gap(now, windows, self.policy.overlap)
        warning = None
        if gap is not None and not pending:
            warning = (
                f"the subject has no valid {self.rcfg.algorithm} key from {gap} (within overlap_s) and no successor "
                "is scheduled: check the scheduler's lastError, or rotate by hand (`keyreg keys rotate`)"
            )
        if warning != self.warning and warning is not None:
            log.warning("rotation: %s", warning)
        self.warning = warning

    # ------------------------------------------------------------------ passes

    async def run(self, *, task_status: trio.TaskStatus[None] | None = None) -> None:
        """Run passes until cancelled, each on a worker thread (a node service)."""
        import trio  # here, not at module level: the CLI imports this package and need not load trio

        p = self.policy
        log.info(
            "rotation scheduler: every %ss, overlap %ss, published %ss ahead", p.interval, p.overlap, p.publish_ahead
        )
        if task_status is not None:
            task_status.started()
        while True:
            delay = await trio.to_thread.run_sync(self.run_pass)
            await trio.sleep(delay)

    def run_pass(self) -> float:
        """Plan and, if due, publish; keep the key file. Returns the seconds until the next pass."""
        now = self.now()
        try:
            wake = self._pass(now)
        except KeyregError as exc:
            wake = self._fail(now, f"{exc.code}: {exc.message}")
        except Exception as exc:  # keep the scheduler alive; the next pass retries
            log.exception("rotation pass failed")
            wake = self._fail(now, f"{type(exc).__name__}: {exc}")
        delay = float(wake - now)
        if self.key_file is not None:
            delay = min(delay, self._write_key_file())
        return max(0.2, min(MAX_SLEEP_S, float(max(1, self.policy.window // 2)), delay))

    def _pass(self, now: int) -> int:
        registry, ks = self.registry, self.keystore
        if ks is None:
            return self._fail(now, "the node has no keystore: run `keyreg init`")
        ks.reload()
        subject = ks.subject
        state = registry.state(subject) if subject is not None else None
        if subject is None or state is None:
            return self._fail(now, "the keystore has no subject the node knows: run `keyreg subject create`")
        windows = scheduled_windows(state, self.rcfg.algorithm, self.purposes)
        plan = plan_rotation(now, windows, self.policy)
        target, _ = next_activation(windows, self.policy, now)
        self._observe(now, windows, plan.activate_at or target)
        if subject in registry.disputed:
            return self._fail(now, "the subject is disputed (two events at one seq): not rotating until it is resolved")
        if not ks.unlocked:
            return self._fail(now, "the keystore is locked: restart the node with KEYREG_PASSWORD set")
        if self.operator is not None and operator_set_of(self.operator) != state.operators:
            return self._fail(
                now,
                "the subject's operator set in force is not this node's operator key and limits (the controllers "
                "changed it, or the keystore is not this subject's): the node cannot sign; give it the operator key "
                "the controllers delegated to (docs/operations.md, Custody)",
            )
        self._adopt(ks, subject, state, now)
        if not plan.due:
            self.last_error = None
            return plan.next_check
        grace_ends = self.started + self.rcfg.overdue_grace_s
        if plan.overdue and windows and self.clock() < grace_ends:
            # Just started: the events peers published while we were down may still be arriving.
            return now + int(grace_ends - self.clock()) + 1
        return self._publish(ks, ks.rotation_seed(), subject, state, plan, now)

    def _adopt(self, ks: Keystore, subject: bytes, state: SubjectState, now: int) -> None:
        """Store the keys of the schedule a twin node published (derivable from the same seed)."""
        want = frozenset(self.purposes)
        unheld = [
            rec
            for kid, rec in state.keys.items()
            if rec.key.alg == self.rcfg.algorithm
            and frozenset(rec.key.purposes) == want
            and (rec.not_after == 0 or rec.not_after > now)
            and rec.revoked_at is None
            and kid not in self._underivable
            and not ks.has_service_key(kid)
        ]
        if not unheld:
            return
        seed = ks.rotation_seed()  # decrypts nothing new, but reads and checks the controllers' files
        for rec in sorted(unheld, key=lambda r: -r.key.not_before)[:ADOPT_MAX]:
            key = scheduled_key(seed, subject, self.rcfg.algorithm, rec.key.not_before)
            if key.key_id == rec.key.key_id and key.public_key == rec.key.public_key:
                ks.add_service_key(key, self.purposes)
                log.info("rotation: adopted %s (published by a node sharing this keystore)", key.key_id)
            else:  # published by hand elsewhere: not ours to derive (bounded by the subject's key cap)
                self._underivable.add(rec.key.key_id)

    def _publish(
        self, ks: Keystore, seed: bytes, subject: bytes, state: SubjectState, plan: RotationPlan, now: int
    ) -> int:
        registry = self.registry
        assert plan.activate_at is not None
        key = scheduled_key(seed, subject, self.rcfg.algorithm, plan.activate_at)
        if not ks.has_service_key(key.key_id):
            ks.add_service_key(key, self.purposes)
        head = Head(subject, state.seq, state.head, state.timestamp, state.governor, state.operators)
        max_validity = self.operator.max_validity if self.operator is not None else None
        not_after = scheduled_not_after(self.policy, plan.activate_at, plan.timestamp, max_validity)
        signed = sign_update(
            ks,
            self.config.domain,
            head,
            plan.timestamp,
            [key.published(self.purposes, plan.activate_at, not_after)],
            plan.retire,
            state=state,
        )
        latest = registry.state(subject)
        if latest is None or latest.head != state.head:
            return now  # the head moved meanwhile (a twin's event, the CLI): plan again at once
        result = registry.ingest([signed], source="rotation")[0]
        if result.status == "known":  # a twin published the same event first
            log.info("rotation: %s was already published by a twin node", key.key_id)
        elif result.status != "accepted":
            msg = result.error.message if result.error else result.status
            return self._fail(now, f"the scheduled update was not accepted ({result.status}): {msg}")
        else:
            self.published += 1
            self.overdue_published += int(plan.overdue)
            log.info(
                "rotation: published %s active from %d%s; retiring %s",
                key.key_id,
                plan.activate_at,
                " (overdue: moved to the first slot publish_ahead_s away)" if plan.overdue else "",
                ", ".join(f"{k}@{t}" for k, t in plan.retire) or "nothing",
            )
        self.last_error = None
        self.next_activation = plan.activate_at
        return plan.next_check

    # ------------------------------------------------------------------ the key file

    def _write_key_file(self) -> float:
        """Rewrite the key file when the handed-out key changed; seconds until it may change."""
        assert self.key_file is not None
        assert self.handout is not None
        try:
            handout = self.handout()
        except KeyregError as exc:
            self.info["keyFile"] = {"path": str(self.key_file), "error": exc.message}
            return float(RETRY_S)
        successor = handout.successor.key.key_id if handout.successor is not None else None
        written = (handout.key.key_id, successor)
        if written != self._file_written or not self.key_file.exists():
            write_key_file(self.key_file, handout)
            if written[0] != self._file_written[0]:
                log.info("rotation: key file now holds %s", handout.key.key_id)
            self._file_written = written
        self.info["keyFile"] = {"path": str(self.key_file), "keyId": handout.key.key_id, "next": successor}
        if handout.next_change is None:
            return MAX_SLEEP_S
        return max(0.2, handout.next_change - self.clock() + 0.05)


class RotationCollector:
    """The ``keyreg_rotation_*`` metrics of the node's scheduler."""

    def __init__(self, scheduler: RotationScheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Any:
        s = self.scheduler
        yield GaugeMetricFamily(
            "keyreg_rotation_next_activation_timestamp_seconds",
            "When the next key of the schedule activates (0: unknown)",
            value=s.next_activation or 0,
        )
        yield GaugeMetricFamily(
            "keyreg_rotation_keys_in_force", "Keys of the schedule valid now", value=s.keys_in_force
        )
        c = CounterMetricFamily("keyreg_rotation_keys_published", "Keys this node's scheduler published")
        c.add_metric([], s.published)
        yield c
        e = CounterMetricFamily("keyreg_rotation_errors", "Failed scheduler passes")
        e.add_metric([], s.errors)
        yield e
        yield GaugeMetricFamily(
            "keyreg_rotation_last_error_timestamp_seconds",
            "When the last failed pass happened (0: the last pass succeeded)",
            value=(s.last_error_at or 0) if s.last_error else 0,
        )
        yield GaugeMetricFamily(
            "keyreg_rotation_no_successor_warning",
            "1 when the subject has no valid key within overlap_s and no successor is scheduled",
            value=1 if s.warning else 0,
        )
