"""Zero-downtime rotation of service keys: a pure planner (this module) and the node's scheduler
(:mod:`keyreg.keys.scheduler`).

The schedule is a grid: key *j* activates at the boundary ``b_j = j * interval`` (Unix time), so
every node holding the subject's keys computes the same instants::

         window   publish_ahead              overlap
        |<---->|<------------->|<------------------------>|
   -----W------P---------------A--------------------------R------> time
        |      |               new key active: the       old key retired
        |      latest on-time  service signs with it;    (its notAfter)
        |      publication     old key still valid
        event timestamp (W = A - publish_ahead - window)

The successor's update is published during ``[W, P]`` (``window = min(publish_ahead, interval -
publish_ahead)``); its timestamp is ``W`` and it activates at ``A`` and retires every older key
of the schedule at ``A + overlap``. So the event is a pure function of (head, policy, boundary):
two nodes holding the same keys sign byte-identical events (docs/adr/0014-redundant-schedulers.md).

A scheduler that finds itself past ``P`` (overdue: it was down, or its clock jumped) never
activates a key early: it activates at the first *slot* ``A + m * window`` (m >= 1) at least
``publish_ahead`` from now, i.e. at now + publish_ahead rounded up to the slot grid, and the
service keeps signing with the current key until then. Only an emergency rotation
(:func:`plan_emergency_rotation`, ``keyreg keys rotate --now``) skips publish-ahead.

Invariants (property-tested in tests/keys/test_rotation_planner.py), for any valid policy and any
clock readings the scheduler takes:

- at most one activation per interval ``[b_j, b_j+1)``; if the scheduler runs at least as often as
  ``next_check`` asks, exactly one (keys published == intervals elapsed, plus at most one);
- every scheduled key is published at least ``publish_ahead`` before it activates;
- the overlap is measured from the successor's activation: old and new are both valid during
  ``[A, A + overlap)``, and some key is valid at every instant;
- retirements only ever shorten a key's validity (the protocol rule).

Only the *newest* key of the schedule decides when the next one is due. (Taking the earliest end
of every key in force, as an earlier version did, made the key retired by the last rotation look
like a key about to lapse: each rotation made the next one due at once, forever.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..core.errors import ConfigError
from ..core.log import SubjectState


class PolicyError(ConfigError):
    """A rotation policy that cannot work (the message says why and what to change)."""

    code = "rotation_policy"


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

    @property
    def end(self) -> int | None:
        """The first instant the key is no longer valid (None: no end)."""
        ends = [e for e in (self.not_after or None, self.revoked_at) if e is not None]
        return min(ends) if ends else None

    def ends_after(self, t: int) -> bool:
        """Still valid at some instant >= t."""
        end = self.end
        return end is None or end > t


def policy_problems(interval: int, overlap: int, publish_ahead: int) -> list[str]:
    """Why a scheduled-rotation policy cannot work (empty: it can)."""
    out = []
    if publish_ahead < 1:
        out.append(
            f"publish_ahead_s is {publish_ahead}: it must be at least 1 s, and longer than the time your "
            "verifiers take to refetch the JWKS, or they see tokens from a key they have not fetched yet"
        )
    if interval <= publish_ahead:
        out.append(
            f"rotation_interval_s ({interval}) must be longer than publish_ahead_s ({publish_ahead}): each "
            "successor is published publish_ahead before it activates, which must come after the key it "
            "replaces is active"
        )
    if overlap < 1:
        out.append(
            f"overlap_s is {overlap}: it must be at least 1 s (longer than your tokens live), or tokens "
            "signed just before a rotation fail just after it"
        )
    if overlap >= interval:
        out.append(
            f"overlap_s ({overlap}) must be shorter than rotation_interval_s ({interval}): otherwise a "
            "retired key is still valid when its successor is replaced, and the keys in force pile up"
        )
    return out


@dataclass(frozen=True)
class RotationPolicy:
    """The schedule: activations every ``interval`` s on the Unix-time grid, each published
    ``publish_ahead`` s ahead, the previous key valid ``overlap`` s after its successor activates."""

    interval: int
    overlap: int
    publish_ahead: int

    def __post_init__(self) -> None:
        problems = policy_problems(self.interval, self.overlap, self.publish_ahead)
        if problems:
            raise PolicyError("rotation policy refused: " + "; ".join(problems))

    @property
    def window(self) -> int:
        """How long before ``activation - publish_ahead`` an on-time event may be published (and
        the slot step of overdue activations). Never longer than ``interval - publish_ahead``, so a
        successor is never published before the key it replaces is active."""
        return min(self.publish_ahead, self.interval - self.publish_ahead)

    def boundary_after(self, t: int) -> int:
        """The first grid activation strictly after ``t``."""
        return (t // self.interval + 1) * self.interval


def scheduled_not_after(policy: RotationPolicy, activation: int, timestamp: int, max_validity: int | None) -> int:
    """The notAfter of a key the schedule publishes: 0 (no end) when the controllers sign; under an
    operator set, the key's natural end (its successor's activation + overlap), capped by the
    operator's maxValidity from the update's timestamp (ADR 0028 section 5.2). A capped key ends
    early and the planner (:func:`next_activation`) schedules its successor ``overlap`` before that."""
    if max_validity is None:
        return 0
    return min(activation + policy.interval + policy.overlap, timestamp + max_validity)


def operator_policy_problems(policy: RotationPolicy, max_validity: int, max_keys: int) -> list[str]:
    """Why a node's operator limits cannot carry this rotation policy (empty: they can)."""
    out = []
    # A scheduled update is timestamped lead = publish_ahead + window before its key activates; a
    # key capped by maxValidity ends at timestamp + maxValidity, and its successor (activating
    # overlap before that end) must be published no earlier than the key activates, itself lead
    # before its activation: maxValidity >= 2 * lead + overlap.
    lead = policy.publish_ahead + policy.window
    if max_validity < 2 * lead + policy.overlap:
        out.append(
            f"the operator's maxValidity ({max_validity} s) is too short for this schedule: a key is published "
            f"{lead} s before it activates and must stay valid overlap_s ({policy.overlap}) past its successor's "
            f"activation; allow at least rotation_interval_s + overlap_s + 2 * publish_ahead_s "
            f"({policy.interval + policy.overlap + 2 * policy.publish_ahead} s), via a delegation ceremony"
        )
    if max_keys < 3:
        out.append(
            f"the operator's maxKeys ({max_keys}) is below 3: during an overlap the previous, the current and "
            "the next key of the schedule are live together"
        )
    return out


def default_operator_limits(interval: int, overlap: int, publish_ahead: int) -> tuple[int, int]:
    """(maxValidity, maxKeys) that fit a rotation schedule with no slack beyond one extra key: a key
    lives from its publication (<= 2 * publish_ahead before activation) to its successor's
    activation + overlap; at most the previous, current and next keys are live, plus one a person
    publishes by hand."""
    return interval + overlap + 2 * publish_ahead, 4


@dataclass(frozen=True)
class RotationPlan:
    """What to do now: publish a key activating at ``activate_at`` (None: nothing) in an update with
    ``timestamp``, retire keys, and look again at ``next_check``."""

    activate_at: int | None
    retire: tuple[tuple[str, int], ...]
    next_check: int
    timestamp: int = 0
    overdue: bool = False  # published later than planned: activation moved to a later slot
    skips_publish_ahead: bool = False  # only emergency rotations

    @property
    def due(self) -> bool:
        return self.activate_at is not None


def _retirements(live: Iterable[KeyWindow], activation: int, overlap: int) -> tuple[tuple[str, int], ...]:
    end = activation + overlap
    return tuple(sorted((k.key_id, end) for k in live if k.ends_after(activation) and (k.end is None or k.end > end)))


def next_activation(keys: Iterable[KeyWindow], policy: RotationPolicy, now: int) -> tuple[int, KeyWindow | None]:
    """(when the next key of the schedule should activate, the key it succeeds or None).

    The newest live key decides: its successor is due at the next grid boundary, or ``overlap``
    before the newest key ends if it ends earlier (a manual retirement or a revocation).
    """
    live = [k for k in keys if k.ends_after(now)]
    if not live:
        return now + policy.publish_ahead, None
    newest = max(live, key=lambda k: (k.valid_from, k.key_id))
    target = policy.boundary_after(newest.valid_from)
    end = newest.end
    if end is not None:
        target = min(target, end - policy.overlap)
    return target, newest


def plan_rotation(now: int, keys: Iterable[KeyWindow], policy: RotationPolicy) -> RotationPlan:
    """The scheduled rotation. ``keys``: the keys of the schedule (the subject's keys with the
    scheduler's algorithm and purposes), as the log has them."""
    keys = list(keys)
    live = [k for k in keys if k.ends_after(now)]
    ahead, step = policy.publish_ahead, policy.window
    if not live:  # nothing in force: the service has no key until the first one activates
        activation = now + ahead
        return RotationPlan(activation, (), activation, now, overdue=True)
    target, newest = next_activation(live, policy, now)
    assert newest is not None
    if newest.valid_from > now:  # the successor is published and not yet active
        return RotationPlan(None, (), newest.valid_from)
    opens = target - ahead - step
    if now < opens:
        return RotationPlan(None, (), opens)
    if now <= target - ahead:  # on time: the deterministic event for this boundary
        activation, overdue = target, False
    else:  # overdue: the first slot at least publish_ahead away
        slots = -(-(now + ahead - target) // step)  # ceil
        activation, overdue = target + slots * step, True
    timestamp = activation - ahead - step
    return RotationPlan(
        activation, _retirements(live, activation, policy.overlap), activation, timestamp, overdue=overdue
    )


def plan_manual_rotation(now: int, keys: Iterable[KeyWindow], overlap: int, activate_in: int = 0) -> RotationPlan:
    """``keyreg keys rotate --overlap``: a new key from now + activate_in; the live keys end overlap later.

    The node hands a new key to the service only once it has been public for publish_ahead_s
    (node/keys/handout.py), so the service keeps the old key meanwhile if it is still valid.
    """
    activation = now + activate_in
    live = [k for k in keys if k.ends_after(now)]
    return RotationPlan(activation, _retirements(live, activation, overlap), activation, now)


def plan_emergency_rotation(now: int, keys: Iterable[KeyWindow]) -> RotationPlan:
    """``keyreg keys rotate --now``: a new key active at once, the live keys revoked now.

    The one path that skips publish-ahead (``skips_publish_ahead``): verifiers that only refresh
    their JWKS on a timer reject the new key's tokens until they refetch. ``retire`` lists the keys
    to revoke (effective ``now``)."""
    live = [k for k in keys if k.ends_after(now) and k.revoked_at is None]
    return RotationPlan(now, tuple(sorted((k.key_id, now) for k in live)), now, now, skips_publish_ahead=True)


def coverage_gap(now: int, keys: Iterable[KeyWindow], horizon: int) -> int | None:
    """The first instant in [now, now + horizon] at which none of ``keys`` is valid, or None."""
    windows = sorted((k for k in keys if k.ends_after(now)), key=lambda k: k.valid_from)
    t = now
    for k in windows:
        if k.valid_from > t:
            break
        end = k.end
        if end is None:
            return None
        t = max(t, end)
    return t if t <= now + horizon else None


def windows_of(state: SubjectState, key_ids: Iterable[str]) -> list[KeyWindow]:
    """KeyWindows of the given key ids as the subject's log has them."""
    out = []
    for kid in key_ids:
        rec = state.keys.get(kid)
        if rec is not None:
            out.append(KeyWindow(kid, rec.valid_from, rec.not_after, rec.revoked_at))
    return out


def scheduled_windows(state: SubjectState, alg: str, purposes: Iterable[str]) -> list[KeyWindow]:
    """The keys of the schedule: the subject's keys with this algorithm and exactly these purposes.

    A function of the log alone (not of what one node's keystore holds), so two nodes that hold the
    same subject plan the same events.
    """
    want = frozenset(purposes)
    return [
        KeyWindow(kid, rec.valid_from, rec.not_after, rec.revoked_at)
        for kid, rec in state.keys.items()
        if rec.key.alg == alg and frozenset(rec.key.purposes) == want
    ]
