"""The rotation planner: zero downtime as a property (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.keys.rotation import KeyWindow, RotationPolicy, plan_manual_rotation, plan_rotation

H = 3600


def test_first_key_published_at_once() -> None:
    plan = plan_rotation(1000, [], RotationPolicy(30 * 86400, 86400, H))
    assert plan.activate_at == 1000
    assert plan.retire == ()


def test_publish_ahead_then_retire_after_overlap() -> None:
    policy = RotationPolicy(interval=10 * H, overlap=2 * H, publish_ahead=H)
    keys = [KeyWindow("a", 0)]
    early = plan_rotation(5 * H, keys, policy)
    assert not early.due
    assert early.next_check == 9 * H
    plan = plan_rotation(9 * H, keys, policy)
    assert plan.activate_at == 10 * H  # published an hour ahead of activation
    assert plan.retire == (("a", 12 * H),)  # old key ends overlap after the new one starts
    pending = [KeyWindow("a", 0, 12 * H), KeyWindow("b", 10 * H)]
    wait = plan_rotation(9 * H + 5, pending, policy)
    assert not wait.due
    assert wait.next_check == 10 * H


def test_manual_rotation_retires_every_live_key() -> None:
    keys = [KeyWindow("a", 0), KeyWindow("b", 0, 100 * H), KeyWindow("old", 0, 10), KeyWindow("r", 0, 0, 5)]
    plan = plan_manual_rotation(1000, keys, overlap=H)
    assert plan.activate_at == 1000
    assert plan.retire == (("a", 1000 + H), ("b", 1000 + H))


@settings(max_examples=200, deadline=None)
@given(
    interval=st.integers(60, 10_000),
    overlap=st.integers(0, 5_000),
    ahead=st.integers(0, 5_000),
    jitter=st.lists(st.integers(0, 3_000), min_size=5, max_size=40),
)
def test_zero_downtime(interval: int, overlap: int, ahead: int, jitter: list[int]) -> None:
    """Running the planner no later than it asks, some key is always valid, and both during overlaps."""
    policy = RotationPolicy(interval, overlap, ahead)
    keys: dict[str, KeyWindow] = {}
    now = 0
    activations: list[tuple[str, str, int]] = []  # (old, new, activation)
    for j in jitter:
        plan = plan_rotation(now, list(keys.values()), policy)
        if plan.due:
            assert plan.activate_at is not None
            assert plan.activate_at >= now
            for kid, end in plan.retire:
                k = keys[kid]
                assert k.not_after == 0 or end <= k.not_after  # retirements only shorten
                keys[kid] = KeyWindow(kid, k.valid_from, end)
            new = f"k{len(keys)}"
            current = max((k for k in keys.values() if k.valid_at(now)), key=lambda k: k.valid_from, default=None)
            if current is not None:
                activations.append((current.key_id, new, plan.activate_at))
            keys[new] = KeyWindow(new, plan.activate_at)
        # The scheduler wakes at next_check at the latest (here: somewhere in (now, next_check]).
        now = max(now + 1, plan.next_check - j)
    horizon = now
    first = min(k.valid_from for k in keys.values())
    for t in range(first, horizon, max(1, (horizon - first) // 2000)):
        assert any(k.valid_at(t) for k in keys.values()), f"no valid key at {t}"
    for old, new, at in activations:
        for t in (at, at + overlap // 2, max(at, at + overlap - 1)):
            if t < horizon and overlap > 0:
                assert keys[old].valid_at(t), (old, t)
                assert keys[new].valid_at(t), (new, t)
