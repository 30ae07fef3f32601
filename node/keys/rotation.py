"""Zero-downtime rotation of service keys: a pure planner and the node's scheduler task.

The planner decides, from the keys in force and a policy, what the next update event must do::

        publish_ahead        overlap
      |<---------->|<------------------>|
   ---P------------A--------------------R-------> time
      publish new  new key active;      old key retired (notAfter)
      key (future  service signs with
      notBefore)   it; old still valid

Invariants (property-tested in tests/keys/test_rotation.py): if the planner runs at least as
often as it asks (``next_check``), then at every instant at least one key is valid, and during
``[A, A + overlap)`` both the old and the new key are valid. Retirements only ever shorten a
key's validity (the protocol rule), so a retirement never removes the last valid key before its
successor is active.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.log import SubjectState
from .keystore import Keystore
from .operations import Head, sign_update
from .service_keys import ServiceKey

if TYPE_CHECKING:
    from ..app import Node

log = logging.getLogger("keyreg.rotation")


@dataclass(frozen=True)
class KeyWindow:
    """When a key is valid: [valid_from, not_after) unless revoked (0 = no end)."""

    key_id: str
    valid_from: int
    not_after: int = 0
    revoked_at: int | None = None

    def valid_at(self, t: int) -> bool:
        if self.revoked_at is not None and self.revoked_at <= t:
            return False
        return self.valid_from <= t and (self.not_after == 0 or t < self.not_after)

    def ends_after(self, t: int) -> bool:
        """Still valid at some instant >= t."""
        end = self.not_after or 2**63
        if self.revoked_at is not None:
            end = min(end, self.revoked_at)
        return end > t


@dataclass(frozen=True)
class RotationPolicy:
    interval: int  # seconds between activations
    overlap: int  # seconds the old key stays valid after the new one activates
    publish_ahead: int = 0  # seconds between publishing a key and its activation

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.overlap < 0 or self.publish_ahead < 0:
            raise ValueError("rotation interval must be > 0; overlap and publish_ahead >= 0")


@dataclass(frozen=True)
class RotationPlan:
    """What to do now: publish a key from ``activate_at`` (None: nothing), retire keys, wake at next_check."""

    activate_at: int | None
    retire: tuple[tuple[str, int], ...]
    next_check: int

    @property
    def due(self) -> bool:
        return self.activate_at is not None


def _retirements(live: Iterable[KeyWindow], activation: int, overlap: int) -> tuple[tuple[str, int], ...]:
    end = activation + overlap
    return tuple(sorted((k.key_id, end) for k in live if k.not_after == 0 or k.not_after > end))


def plan_rotation(now: int, keys: Iterable[KeyWindow], policy: RotationPolicy) -> RotationPlan:
    """The scheduled rotation: ``keys`` are the rotating keys (published, this subject's own)."""
    live = [k for k in keys if k.ends_after(now)]
    pending = [k for k in live if k.valid_from > now]
    active = [k for k in live if k.valid_from <= now and k.valid_at(now)]
    if pending:  # a successor is already published; look again once it is active
        return RotationPlan(None, (), max(k.valid_from for k in pending))
    if not active:  # nothing valid: publish one at once (first key, or recovery after expiry)
        return RotationPlan(now, (), now + max(1, policy.interval - policy.publish_ahead))
    current = max(active, key=lambda k: k.valid_from)
    due = current.valid_from + policy.interval
    ends = [k.not_after for k in active if k.not_after] + [k.revoked_at for k in active if k.revoked_at]
    if ends:  # something in force ends early: the successor must be active `overlap` before that
        due = min(due, min(ends) - policy.overlap)
    publish_at = due - policy.publish_ahead
    if now < publish_at:
        return RotationPlan(None, (), publish_at)
    activation = max(due, now)
    return RotationPlan(activation, _retirements(active, activation, policy.overlap), activation)


def plan_manual_rotation(now: int, keys: Iterable[KeyWindow], overlap: int, activate_in: int = 0) -> RotationPlan:
    """``keyreg keys rotate --overlap``: a new key from now + activate_in; the live keys end overlap later."""
    activation = now + activate_in
    live = [k for k in keys if k.ends_after(now)]
    return RotationPlan(activation, _retirements(live, activation, overlap), activation)


def windows_of(state: SubjectState, key_ids: Iterable[str]) -> list[KeyWindow]:
    """KeyWindows of the given key ids as the subject's log has them."""
    out = []
    for kid in key_ids:
        rec = state.keys.get(kid)
        if rec is not None:
            out.append(KeyWindow(kid, rec.valid_from, rec.not_after, rec.revoked_at))
    return out


# ------------------------------------------------------------------------------- the scheduler


def rotate_once(node: Node, policy: RotationPolicy, now: int | None = None) -> tuple[int, dict[str, Any]]:
    """Run the planner for the node's own subject; publish if due. Returns (next check, status)."""
    now = int(time.time()) if now is None else now
    ks: Keystore | None = node.keystore
    if ks is None or not ks.unlocked:
        return now + 60, {"ok": False, "reason": "keystore locked"}
    ks.reload()
    subject = ks.subject
    state = node.registry.state(subject) if subject else None
    if subject is None or state is None:
        return now + 60, {"ok": False, "reason": "no subject yet"}
    rcfg = node.config.rotation
    mine = [i.key_id for i in ks.service_key_infos() if i.alg == rcfg.algorithm]
    plan = plan_rotation(now, windows_of(state, mine), policy)
    if not plan.due:
        return plan.next_check, {"ok": True, "nextCheck": plan.next_check}
    assert plan.activate_at is not None
    key = ServiceKey.generate(rcfg.algorithm)
    ks.add_service_key(key, tuple(rcfg.purposes))
    head = Head(subject, state.seq, state.head, state.timestamp)
    signed = sign_update(
        ks, node.config.domain, head, now, [key.published(tuple(rcfg.purposes), plan.activate_at)], plan.retire
    )
    result = node.registry.ingest([signed], source="rotation")[0]
    if result.status != "accepted":
        msg = result.error.message if result.error else result.status
        log.error("scheduled rotation was not accepted: %s", msg)
        return now + 60, {"ok": False, "reason": msg}
    log.info(
        "rotation: published %s active from %d; retiring %s",
        key.key_id,
        plan.activate_at,
        ", ".join(f"{k}@{t}" for k, t in plan.retire) or "nothing",
    )
    return plan.next_check, {"ok": True, "published": key.key_id, "activeFrom": plan.activate_at}


async def run_rotation_scheduler(node: Node, *, task_status: Any = None) -> None:
    """Node service: keep the subject's service keys rotating per config [rotation]."""
    import trio  # here, not at module level: the CLI imports this module and need not load trio

    rcfg = node.config.rotation
    policy = RotationPolicy(rcfg.rotation_interval_s, rcfg.overlap_s, rcfg.publish_ahead_s)
    status: dict[str, Any] = {"ok": True, "enabled": True}
    node.register_status("rotation", lambda: dict(status))
    if task_status is not None:
        task_status.started()
    while True:
        try:
            next_check, info = await trio.to_thread.run_sync(rotate_once, node, policy)
        except Exception as exc:  # keep the scheduler alive; the next pass retries
            log.error("rotation pass failed: %s", exc)
            next_check, info = int(time.time()) + 60, {"ok": False, "reason": type(exc).__name__}
        status.update(info)
        # Wake at the planned time, but at least every minute (clock jumps, keys added by the CLI).
        await trio.sleep(min(60.0, max(1.0, next_check - time.time())))
