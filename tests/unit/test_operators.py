"""Protocol 2 (docs/adr/0028-protocol-v2-operators-and-custody.md): operator sets, the update
signature rule, the operator limits and fork choice rule 4, each against an independent model."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.eip712 import event_digest
from keyreg.core.errors import RuleViolation
from keyreg.core.fork import SubjectLog, choose
from keyreg.core.keystate import key_verdict
from keyreg.core.log import SubjectState, apply_event, replay
from keyreg.core.records import NO_OPERATORS, SignedEvent
from tests.vectors import generate as gen

T0 = gen.T0
D = gen.DEVNET
DAY = 86_400
CONTROLLERS = ["ctl-a", "ctl-b", "ctl-c"]
OPERATORS = ["op-a", "op-b", "op-c"]
OUTSIDERS = ["eve"]
PURPOSES = ["sign", "jwt", "tls", "encrypt"]


def _subject(ctl_threshold: int, op_threshold: int, purposes: list[str], max_validity: int, max_keys: int) -> Any:
    w = gen.LogWriter(D)
    ops = gen.operators_of(OPERATORS, op_threshold, purposes, max_validity, max_keys)
    w.incept(T0, CONTROLLERS, ctl_threshold, ["ctl-next"], operators=ops, signers=CONTROLLERS)
    return w


def _code(state: SubjectState, signed: SignedEvent) -> str | None:
    try:
        apply_event(state, signed, D)
    except RuleViolation as exc:
        return exc.code
    return None


# ---------------------------------------------------------------------------------------------
# The update signature rule (ADR 0028 section 4), against the table itself


def expected_update_code(signers: list[str], ctl_threshold: int, op_threshold: int) -> str | None:
    """The ADR's rule, written from its text: controller-signed, else operator-signed, else
    below_threshold when every signer is of one set, else unauthorized_signer."""
    all_ctl = all(s in CONTROLLERS for s in signers)
    all_op = all(s in OPERATORS for s in signers)
    if all_ctl and len(signers) >= ctl_threshold:
        return None
    if all_op and len(signers) >= op_threshold:
        return None
    if all_ctl or all_op:
        return "below_threshold"
    return "unauthorized_signer"


@settings(max_examples=120, deadline=None)
@given(
    ctl_threshold=st.integers(1, 3),
    op_threshold=st.integers(1, 3),
    signers=st.lists(st.sampled_from(CONTROLLERS + OPERATORS + OUTSIDERS), max_size=5, unique=True),
    kind=st.sampled_from(["update", "revocation", "delegation"]),
)
def test_who_may_sign_what(ctl_threshold: int, op_threshold: int, signers: list[str], kind: str) -> None:
    w = _subject(ctl_threshold, op_threshold, ["sign"], DAY, 8)
    state = replay(w.events, D)[-1].state
    if kind == "update":
        event: Any = w.next_update(T0 + 1, publish=[gen.key("k1", "Ed25519", ["sign"], T0 + 1, T0 + 100)])
        want = expected_update_code(signers, ctl_threshold, op_threshold)
    else:
        if kind == "revocation":
            event = w.next_revocation(T0 + 1, "", T0 + 1)
        else:
            event = w.next_delegation(T0 + 1, NO_OPERATORS)
        # controllers only, whatever the operators sign
        if all(s in CONTROLLERS for s in signers):
            want = None if len(signers) >= ctl_threshold else "below_threshold"
        else:
            want = "unauthorized_signer"
    got = _code(state, gen.sign(D, event, signers))
    assert got == want
    if want is None and kind == "update":
        acc = apply_event(state, gen.sign(D, event, signers), D)
        ctl_signed = all(s in CONTROLLERS for s in signers) and len(signers) >= ctl_threshold
        assert acc.authority == ("controllers" if ctl_signed else "operators")
        assert acc.state.head_authority == acc.authority


# ---------------------------------------------------------------------------------------------
# The operator limits (ADR 0028 section 5), against a model of the key set


@st.composite
def operator_runs(draw: st.DrawFn) -> tuple[Any, list[tuple[str, Any]]]:
    scope = draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=3, unique=True))
    max_validity = draw(st.sampled_from([60, 3600, DAY]))
    max_keys = draw(st.integers(1, 3))
    w = _subject(1, 1, scope, max_validity, max_keys)
    # The controllers' own keys: one in scope without expiry, one outside scope.
    steps: list[tuple[str, Any]] = []
    n = draw(st.integers(1, 8))
    for i in range(n):
        op = draw(st.sampled_from(["publish", "publish", "retire", "metadata", "ctl-publish", "ctl-revoke"]))
        purposes = draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=2, unique=True))
        validity = draw(st.sampled_from([0, 30, max_validity, max_validity + 1]))
        target = draw(st.integers(0, 20))
        steps.append((op, (i, purposes, validity, target)))
    return w, steps


class KeyModel:
    """The ADR's operator limits from first principles: a list of keys with purposes, expiry and revocation."""

    def __init__(self, scope: tuple[str, ...], max_validity: int, max_keys: int) -> None:
        self.scope, self.max_validity, self.max_keys = scope, max_validity, max_keys
        self.keys: dict[str, dict[str, Any]] = {}

    def in_scope(self, purposes: Any) -> bool:
        return all(p in self.scope for p in purposes)

    def live_in_scope(self, t: int) -> int:
        return sum(
            1
            for k in self.keys.values()
            if not k["revoked"] and (k["not_after"] == 0 or k["not_after"] > t) and self.in_scope(k["purposes"])
        )

    def operator_publish(self, t: int, kid: str, purposes: list[str], not_after: int) -> bool:
        if not self.in_scope(purposes) or not_after == 0 or not_after > t + self.max_validity:
            return False
        self.keys[kid] = {"purposes": purposes, "not_after": not_after, "revoked": False}
        if self.live_in_scope(t) > self.max_keys:
            del self.keys[kid]
            return False
        return True

    def operator_retire(self, kid: str) -> bool:
        return self.in_scope(self.keys[kid]["purposes"])


@settings(max_examples=80, deadline=None)
@given(run=operator_runs())
def test_operator_limits_match_the_model(run: tuple[Any, list[tuple[str, Any]]]) -> None:
    w, steps = run
    state = replay(w.events, D)[-1].state
    ops = state.operators
    model = KeyModel(ops.purposes, ops.max_validity, ops.max_keys)
    t = T0
    for op, (i, purposes, validity, target) in steps:
        t += 10
        kid = f"k{i}"
        live = sorted(k for k, v in model.keys.items() if not v["revoked"] and (v["not_after"] or 1) > t)
        retirable = [k for k in live if model.keys[k]["not_after"] == 0 or model.keys[k]["not_after"] >= t + 1]
        if op == "publish":
            not_after = t + validity if validity else 0
            event = w.next_update(t, publish=[gen.key(kid, "Ed25519", purposes, t, not_after)])
            ok = model.operator_publish(t, kid, purposes, not_after)
            signers = ["op-b"]
        elif op == "retire" and retirable:
            kid = retirable[target % len(retirable)]
            event = w.next_update(t, retire=[(kid, t + 1)])
            ok = model.operator_retire(kid)
            if ok:
                model.keys[kid]["not_after"] = t + 1
            signers = ["op-a"]
        elif op == "metadata":
            event, ok, signers = w.next_update(t, metadata="x"), False, ["op-c"]
        elif op == "ctl-revoke" and live:
            kid = live[target % len(live)]
            event, ok, signers = w.next_revocation(t, kid, t, "r"), True, ["ctl-a"]
            model.keys[kid]["revoked"] = True
        else:  # the controllers publish outside any limit: no expiry, any purpose
            event = w.next_update(t, publish=[gen.key(kid, "Ed25519", purposes, t)])
            ok, signers = True, ["ctl-b"]
            model.keys[kid] = {"purposes": purposes, "not_after": 0, "revoked": False}
        signed = gen.sign(D, event, signers)
        got = _code(state, signed)
        assert got == (None if ok else "operator_limit"), (op, purposes, validity)
        if ok:
            w.append(signed)
            state = apply_event(state, signed, D).state
    # What the model counts is what the state holds.
    for kid, k in model.keys.items():
        rec = state.keys[kid]
        assert (rec.revoked_at is not None) == k["revoked"]


def test_operator_keys_are_revocable_by_the_controllers_from_any_time() -> None:
    w = _subject(1, 1, ["sign"], DAY, 4)
    w.update(T0 + 10, ["op-a"], publish=[gen.key("rogue", "Ed25519", ["sign"], T0 + 10, T0 + DAY)])
    w.revoke(T0 + 20, ["ctl-a"], "rogue", T0 + 10, "operator host taken")
    state = replay(w.events, D)[-1].state
    assert key_verdict(state, state.subject, "rogue", T0 + 15, "sign").status == "revoked"


def test_a_rotation_changes_operators_and_the_old_ones_lose_their_power() -> None:
    w = _subject(1, 1, ["sign"], DAY, 4)
    new_ops = gen.operators_of(["op-new"], 1, ["sign"], DAY, 4)
    w.rotate(T0 + 5, ["ctl-next"], ["ctl-next"], 1, None, operators=new_ops)
    state = replay(w.events, D)[-1].state
    assert state.operators == new_ops
    upd = w.next_update(T0 + 6, publish=[gen.key("k", "Ed25519", ["sign"], T0 + 6, T0 + 60)])
    assert _code(state, gen.sign(D, upd, ["op-a"])) == "unauthorized_signer"
    assert _code(state, gen.sign(D, upd, ["op-new"])) is None


def test_a_rotation_keeps_every_governor_it_ever_named() -> None:
    old, new = gen.address("dao-1"), gen.address("dao-2")
    w = gen.LogWriter(D)
    w.incept(T0, ["c1"], 1, ["c2"], governor=old)
    w.rotate(T0 + 1, ["c2"], ["c2"], 1, ["c3"], governor=new)
    w.rotate(T0 + 2, ["c3"], ["c3"], 1, None)  # drops the governor
    state = replay(w.events, D)[-1].state
    assert state.governor == b"\x00" * 20
    assert state.governors == (old, new)


# ---------------------------------------------------------------------------------------------
# Fork choice rule 4 (ADR 0028 section 7): order independence with operator-signed competitors


def _competitors(w: Any, n_op: int, n_ctl: int, rotation: bool) -> list[SignedEvent]:
    out = []
    for i in range(n_op):
        key = gen.key(f"op-{i}", "Ed25519", ["sign"], T0 + 1, T0 + 100)
        out.append(gen.sign(D, w.next_update(T0 + 1, publish=[key]), [OPERATORS[i % 3]]))
    for i in range(n_ctl):
        out.append(gen.sign(D, w.next_update(T0 + 1, metadata=f"ctl-{i}"), ["ctl-a"]))
    if rotation:
        out.append(gen.sign(D, w.next_rotation(T0 + 1, ["ctl-next"], 1, None), ["ctl-next"]))
    return out


@settings(max_examples=40, deadline=None)
@given(
    n_op=st.integers(0, 3),
    n_ctl=st.integers(0, 2),
    rotation=st.booleans(),
    order=st.randoms(use_true_random=False),
)
def test_fork_choice_authority_rule_is_order_independent(n_op: int, n_ctl: int, rotation: bool, order: Any) -> None:
    w = _subject(1, 1, ["sign"], DAY, 8)
    competitors = _competitors(w, n_op, n_ctl, rotation)
    if len(competitors) < 2:
        return
    outcomes = set()
    for _ in range(3):
        order.shuffle(competitors)
        log = SubjectLog(D)
        log.append(w.events[0])
        for c in competitors:
            log.append(c)
        assert log.state is not None
        outcomes.add((log.state.head, log.disputed))
    assert len(outcomes) == 1
    head, disputed = outcomes.pop()
    # Rule 3 (exactly one rotation) decides, else rule 4 (exactly one controller-signed event), else disputed.
    if rotation:
        assert not disputed
        assert head == _digest_of_kind(competitors, "rotation")
    elif n_ctl == 1:
        assert not disputed
        assert head == _digest_of_kind(competitors, "update", "ctl-0")
    else:
        assert disputed


def _digest_of_kind(competitors: list[SignedEvent], kind: str, metadata: str | None = None) -> bytes:
    return next(
        event_digest(D, c.event)
        for c in competitors
        if c.event.kind == kind and (metadata is None or getattr(c.event, "metadata", None) == metadata)
    )


def test_choose_rule_4_pairwise() -> None:
    w = _subject(1, 1, ["sign"], DAY, 8)
    state = replay(w.events, D)[-1].state
    op_a, op_b, ctl, _rot = (apply_event(state, c, D) for c in _competitors(w, 2, 1, True))
    assert (op_a.authority, op_b.authority, ctl.authority) == ("operators", "operators", "controllers")
    assert choose(op_a, ctl, {}) is ctl
    assert choose(ctl, op_a, {}) is ctl
    assert choose(op_a, op_b, {}) is None  # two operator-signed events: disputed
    assert choose(op_a, ctl, {op_a.digest: 1}) is op_a  # the chain decides first


@pytest.mark.parametrize(("n_op", "n_ctl"), list(itertools.product([1, 2], [1])))
def test_controllers_take_the_head_back_from_a_rogue_operator(n_op: int, n_ctl: int) -> None:
    w = _subject(1, 1, ["sign"], DAY, 8)
    rogue, *rest = _competitors(w, n_op, n_ctl, False)
    log = SubjectLog(D)
    log.append(w.events[0])
    log.append(rogue)
    # the rogue operator's branch grows before the controllers act
    w.append(rogue)
    log.append(gen.sign(D, w.next_update(T0 + 2, retire=[("op-0", T0 + 3)]), ["op-a"]))
    for c in rest:
        log.append(c)
    assert not log.disputed
    assert log.state is not None
    assert log.state.seq == 1
    assert log.state.head_authority == "controllers"
    assert log.events[1].authority == "controllers"


def test_builder_next_events_extend_the_state_and_a_rotation_keeps_governor_and_operators() -> None:
    from keyreg.core import builder

    gov = gen.address("dao-keep")
    w = gen.LogWriter(D)
    ops = gen.operators_of(["op-a"], 1, ["sign"], DAY, 4)
    w.incept(T0, ["c1"], 1, ["c2"], governor=gov, operators=ops)
    state = replay(w.events, D)[-1].state
    rot = builder.next_rotation(state, T0 + 1, [gen.address("c2")], 1, None)
    assert (rot.subject, rot.seq, rot.prev, rot.governor, rot.operators) == (state.subject, 1, state.head, gov, ops)
    state = apply_event(state, gen.sign(D, rot, ["c2"]), D).state
    dropped = builder.next_delegation(state, T0 + 2, NO_OPERATORS)
    state = apply_event(state, gen.sign(D, dropped, ["c2"]), D).state
    assert not state.operators
    upd = builder.next_update(state, T0 + 3, metadata="m")
    rev = builder.next_revocation(apply_event(state, gen.sign(D, upd, ["c2"]), D).state, T0 + 4, "", T0 + 4)
    assert (upd.seq, rev.seq) == (3, 4)
