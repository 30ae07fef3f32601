"""The rotation planner: the rate, the publish-ahead and zero downtime as properties (hypothesis).

A simulated scheduler runs the pure planner over random policies and clock readings: on time
(waking when the plan asks, up to a little late, plus extra wake-ups), or with missed checks,
restarts (the planner keeps no state, so a restart is a gap), clock jumps forward and small steps
back. The log is simulated as the planner's KeyWindows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.keys.rotation import (
    KeyWindow,
    PolicyError,
    RotationPolicy,
    coverage_gap,
    plan_emergency_rotation,
    plan_manual_rotation,
    plan_rotation,
)

H = 3600
DAY = 24 * H


@dataclass
class Sim:
    """A subject's keys of the schedule and what the simulated scheduler published."""

    policy: RotationPolicy
    keys: dict[str, KeyWindow] = field(default_factory=dict)
    published: list[tuple[str, int, int]] = field(default_factory=list)  # (kid, published at, activation)
    rotations: list[tuple[str, str, int]] = field(default_factory=list)  # (old, new, activation)

    def check(self, now: int) -> int:
        """One scheduler pass at ``now``; returns the plan's next_check."""
        plan = plan_rotation(now, list(self.keys.values()), self.policy)
        if plan.due:
            assert plan.activate_at is not None
            assert plan.timestamp <= now, "an event is never dated after the pass that signs it"
            assert plan.timestamp < plan.activate_at
            current = max((k for k in self.keys.values() if k.valid_at(now)), key=lambda k: k.valid_from, default=None)
            for kid, end in plan.retire:
                k = self.keys[kid]
                assert k.end is None or end <= k.end, "retirements only shorten"
                assert end >= plan.timestamp, "never retroactive"
                self.keys[kid] = KeyWindow(kid, k.valid_from, end, k.revoked_at)
            new = f"k{len(self.keys)}"
            self.keys[new] = KeyWindow(new, plan.activate_at)
            self.published.append((new, now, plan.activate_at))
            if current is not None:
                self.rotations.append((current.key_id, new, plan.activate_at))
        return plan.next_check

    def activations_per_interval(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for k in self.keys.values():
            j = k.valid_from // self.policy.interval
            out[j] = out.get(j, 0) + 1
        return out

    def assert_invariants(self, horizon: int) -> None:
        p = self.policy
        # the rate: never two activations in one interval
        assert max(self.activations_per_interval().values()) == 1, self.activations_per_interval()
        # publish-ahead: every key published at least publish_ahead before it activates
        for kid, at, activation in self.published:
            assert activation - at >= p.publish_ahead, (kid, at, activation)
        # overlap from the successor's activation: both valid during [A, A + overlap)
        for old, new, a in self.rotations:
            for t in (a, a + p.overlap // 2, a + p.overlap - 1):
                if t < horizon:
                    assert self.keys[old].valid_at(t), (old, t)
                    assert self.keys[new].valid_at(t), (new, t)
        # zero downtime: some key valid at every instant (checked at every window edge)
        first = min(k.valid_from for k in self.keys.values())
        edges = {first, horizon - 1}
        for k in self.keys.values():
            for e in (k.valid_from, k.end):
                if e is not None:
                    edges.update((e - 1, e, e + 1))
        for t in sorted(e for e in edges if first <= e < horizon):
            assert any(k.valid_at(t) for k in self.keys.values()), f"no valid key at {t}"


policies = st.integers(2, 40 * DAY).flatmap(
    lambda interval: st.builds(
        RotationPolicy,
        interval=st.just(interval),
        overlap=st.integers(1, interval - 1),
        publish_ahead=st.integers(1, interval - 1),
    )
)


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    t0=st.integers(10**9, 2 * 10**9),
    wakes=st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=5, max_size=60),
)
def test_on_time_scheduler_publishes_one_key_per_interval(
    policy: RotationPolicy, t0: int, wakes: list[tuple[bool, float]]
) -> None:
    """Waking when asked (up to `window` late) or earlier: keys published == intervals elapsed (+1)."""
    sim = Sim(policy, {"k0": KeyWindow("k0", t0)})
    now, due = t0, sim.check(t0)
    for early, frac in wakes:
        if early:  # an extra wake-up before the planned one (the scheduler looks every minute too)
            now = max(now + 1, now + int((due - now) * frac)) if due > now else now + 1
        else:  # the planned wake-up, late by up to the publish window
            now = max(now + 1, due + int(policy.window * frac))
        due = sim.check(now)
    horizon = now + 1
    sim.assert_invariants(horizon)
    intervals_elapsed = (horizon - 1) // policy.interval - t0 // policy.interval  # boundaries in (t0, horizon)
    assert intervals_elapsed <= len(sim.published) <= intervals_elapsed + 1, (len(sim.published), intervals_elapsed)
    # exactly one activation in each interval from t0's to the horizon's (the last may be pending)
    per = sim.activations_per_interval()
    first, last = t0 // policy.interval, (horizon - 1) // policy.interval
    for j in range(first + 1, last):
        assert per.get(j) == 1, (j, per)
    # on time from the start, every activation is on the grid
    if t0 + policy.publish_ahead + policy.window <= policy.boundary_after(t0):
        assert all(a % policy.interval == 0 for _, _, a in sim.published)


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    t0=st.integers(10**9, 2 * 10**9),
    steps=st.lists(st.integers(-120, 10**7), min_size=5, max_size=60),
)
def test_missed_checks_restarts_and_clock_jumps(policy: RotationPolicy, t0: int, steps: list[int]) -> None:
    """Arbitrary gaps (down for days, a clock stepped forward or a little back): never more than one
    activation per interval, never a key used before it was public for publish_ahead, no gap."""
    sim = Sim(policy, {"k0": KeyWindow("k0", t0)})
    now = latest = t0
    sim.check(now)
    for step in steps:
        now = max(t0, now + step)
        latest = max(latest, now)
        sim.check(now)
    horizon = latest + 1
    sim.assert_invariants(horizon)
    intervals_elapsed = (horizon - 1) // policy.interval - t0 // policy.interval  # boundaries in (t0, horizon)
    assert len(sim.published) <= intervals_elapsed + 1


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    t0=st.integers(10**9, 2 * 10**9),
    slot=st.integers(0, 50),
    a=st.floats(0, 1),
    b=st.floats(0, 1),
)
def test_two_nodes_in_the_same_slot_plan_the_same_event(
    policy: RotationPolicy, t0: int, slot: int, a: float, b: float
) -> None:
    """Two schedulers reading one log at different instants of one slot plan the same event: on time
    (slot 0, the window before the boundary) or late by the same number of slots."""
    start = t0 // policy.interval * policy.interval
    keys = [KeyWindow("k0", start)]
    target = start + policy.interval
    ahead, w = policy.publish_ahead, policy.window
    hi = target - ahead + slot * w  # the slot's last instant
    lo = hi - w if slot == 0 else hi - w + 1
    n1, n2 = lo + round((hi - lo) * a), lo + round((hi - lo) * b)
    p1, p2 = plan_rotation(n1, keys, policy), plan_rotation(n2, keys, policy)
    assert p1 == p2
    assert p1.activate_at == target + slot * w
    assert p1.overdue == (slot > 0)


def test_the_runaway_loop_is_gone() -> None:
    """The issue's case: 60 s / 30 s / 15 s over 150 s; was 87 keys, one every ~1.1 s."""
    policy = RotationPolicy(interval=60, overlap=30, publish_ahead=15)
    t0 = 1_000_000_020
    sim = Sim(policy, {"k0": KeyWindow("k0", t0)})
    for now in range(t0, t0 + 151):  # a check every second
        sim.check(now)
    sim.assert_invariants(t0 + 151)
    assert [a for _, _, a in sim.published] == [1_000_000_080, 1_000_000_140, 1_000_000_200]
    assert [at for _, at, _ in sim.published] == [1_000_000_050, 1_000_000_110, 1_000_000_170]


def test_published_ahead_then_retired_after_overlap() -> None:
    policy = RotationPolicy(interval=10 * H, overlap=2 * H, publish_ahead=H)
    keys = [KeyWindow("a", 0)]
    early = plan_rotation(5 * H, keys, policy)
    assert not early.due
    assert early.next_check == 8 * H  # the window opens publish_ahead + window before activation
    plan = plan_rotation(9 * H, keys, policy)
    assert plan.activate_at == 10 * H
    assert plan.timestamp == 8 * H  # deterministic: the window's start, whoever signs it
    assert plan.retire == (("a", 12 * H),)  # the old key ends overlap after the new one starts
    assert not plan.overdue
    pending = [KeyWindow("a", 0, 12 * H), KeyWindow("b", 10 * H)]
    wait = plan_rotation(9 * H + 5, pending, policy)
    assert not wait.due
    assert wait.next_check == 10 * H
    # once b is active, a's retirement (12 H) must not make the next rotation due: next at 20 H
    after = plan_rotation(10 * H, pending, policy)
    assert not after.due
    assert after.next_check == 18 * H


def test_overdue_rotation_activates_publish_ahead_from_now() -> None:
    policy = RotationPolicy(interval=10 * H, overlap=2 * H, publish_ahead=H)
    keys = [KeyWindow("a", 0)]
    now = 10 * H + 123  # down through the whole window and past the planned activation
    plan = plan_rotation(now, keys, policy)
    assert plan.overdue
    assert plan.activate_at is not None
    assert now + H <= plan.activate_at < now + H + policy.window  # the first slot publish_ahead away
    assert plan.retire == (("a", plan.activate_at + 2 * H),)
    assert KeyWindow("a", 0).valid_at(plan.activate_at - 1)  # the service keeps its key until then


def test_first_key_also_waits_publish_ahead() -> None:
    plan = plan_rotation(1000, [], RotationPolicy(30 * DAY, DAY, H))
    assert plan.activate_at == 1000 + H
    assert plan.retire == ()


def test_early_end_pulls_the_successor_forward() -> None:
    policy = RotationPolicy(interval=10 * H, overlap=2 * H, publish_ahead=H)
    keys = [KeyWindow("a", 0, 6 * H)]  # retired by hand at 6 H
    plan = plan_rotation(2 * H, keys, policy)
    assert plan.activate_at == 4 * H  # overlap before a's end, published an hour ahead or more


def test_coverage_gap() -> None:
    assert coverage_gap(100, [KeyWindow("a", 0)], 50) is None
    assert coverage_gap(100, [KeyWindow("a", 0, 130)], 50) == 130
    assert coverage_gap(100, [KeyWindow("a", 0, 130), KeyWindow("b", 120)], 50) is None
    assert coverage_gap(100, [KeyWindow("a", 0, 130), KeyWindow("b", 140)], 50) == 130
    assert coverage_gap(100, [KeyWindow("a", 0, 200)], 50) is None
    assert coverage_gap(100, [], 50) == 100


@pytest.mark.parametrize(
    ("interval", "overlap", "ahead", "reason"),
    [
        (60, 30, 60, "must be longer than publish_ahead_s"),
        (60, 30, 90, "must be longer than publish_ahead_s"),
        (60, 30, 0, "publish_ahead_s is 0"),
        (60, 0, 15, "overlap_s is 0"),
        (60, 60, 15, "must be shorter than rotation_interval_s"),
    ],
)
def test_policies_that_cannot_work_are_refused(interval: int, overlap: int, ahead: int, reason: str) -> None:
    with pytest.raises(PolicyError, match=reason) as err:
        RotationPolicy(interval, overlap, ahead)
    assert err.value.code == "rotation_policy"


def test_manual_rotation_retires_every_live_key() -> None:
    keys = [KeyWindow("a", 0), KeyWindow("b", 0, 100 * H), KeyWindow("old", 0, 10), KeyWindow("r", 0, 0, 5)]
    plan = plan_manual_rotation(1000, keys, overlap=H)
    assert plan.activate_at == 1000
    assert plan.retire == (("a", 1000 + H), ("b", 1000 + H))
    assert not plan.skips_publish_ahead


def test_emergency_is_the_only_plan_that_skips_publish_ahead() -> None:
    keys = [KeyWindow("a", 0), KeyWindow("b", 0, 100 * H), KeyWindow("old", 0, 10)]
    plan = plan_emergency_rotation(1000, keys)
    assert plan.skips_publish_ahead
    assert plan.activate_at == 1000
    assert plan.retire == (("a", 1000), ("b", 1000))
