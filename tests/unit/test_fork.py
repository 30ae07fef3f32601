"""Duplicity and fork choice: the chain decides, else the recovery rule, else disputed (fail closed)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.errors import StaleEvent, UnauthorizedSigner
from keyreg.core.fork import SubjectLog, choose
from keyreg.core.keystate import key_verdict
from keyreg.core.log import apply_event
from tests.vectors import generate as gen

T0 = gen.T0
D = gen.DEVNET


def _base() -> Any:
    """Controller 'cur' (compromised in these tests), next set 'nxt' committed at inception."""
    w = gen.LogWriter(D)
    w.incept(T0, ["cur"], 1, ["nxt"], keys=[gen.key("k1", "Ed25519", ["sign"], T0)])
    return w


def _log_with(w: Any) -> SubjectLog:
    log = SubjectLog(D)
    for e in w.events:
        assert log.append(e).status == "accepted"
    return log


def test_choose_rules() -> None:
    w = _base()
    state = apply_event(None, w.events[0], D).state
    rogue = apply_event(state, gen.sign(D, w.next_update(T0 + 1, metadata="rogue"), ["cur"]), D)
    other = apply_event(state, gen.sign(D, w.next_update(T0 + 1, metadata="other"), ["cur"]), D)
    rotation = apply_event(state, gen.sign(D, w.next_rotation(T0 + 1, ["nxt"], 1, None), ["nxt"]), D)
    assert choose(rogue, rotation, {}) is rotation  # recovery rule
    assert choose(rotation, rogue, {}) is rotation
    assert choose(rogue, other, {}) is None  # disputed
    assert choose(rogue, rotation, {rogue.digest: 5}) is rogue  # the chain decides first
    assert choose(rogue, other, {rogue.digest: 5, other.digest: 4}) is other  # lower rank wins
    assert choose(rogue, other, {rogue.digest: 4, other.digest: 4}) is rogue


def test_replay_of_a_held_event_is_known_not_duplicity() -> None:
    w = _base()
    w.update(T0 + 1, ["cur"], metadata="m")
    w.update(T0 + 2, ["cur"], metadata="n")
    log = _log_with(w)
    result = log.append(w.events[1])
    assert result.status == "known"
    assert not log.evidence
    with pytest.raises(StaleEvent):
        log.append(w.events[0])  # the inception again


def test_two_updates_at_one_seq_are_evidence_and_disputed() -> None:
    w = _base()
    first = w.update(T0 + 1, ["cur"], metadata="first")
    log = _log_with(w)
    w.events.pop()
    w.head = log.events[0].digest
    second = gen.sign(D, w.next_update(T0 + 1, metadata="second"), ["cur"])
    result = log.append(second)
    assert result.status == "duplicity"
    assert result.evidence is not None
    assert (result.evidence.seq, result.evidence.first, result.evidence.second) == (1, first, second)
    assert log.disputed
    assert log.state is not None
    # No rule decides, so every node holds the same branch: the lower digest.
    lower = min((result.evidence.first_digest, "first"), (result.evidence.second_digest, "second"))[1]
    assert log.state.metadata == lower
    assert result.switched == (lower == "second")
    verdict = key_verdict(log.state, log.state.subject, "k1", T0 + 5, disputed=log.disputed)
    assert verdict.status == "disputed"
    assert log.append(second).status == "known"  # the same evidence twice is not news
    assert len(log.evidence) == 1
    # an anchor arrives for the second: fork choice re-runs and switches
    [res] = log.resolve({log.evidence[0].second_digest: 1})
    assert res.switched == (lower == "first")
    assert not log.disputed
    assert log.state is not None
    assert log.state.metadata == "second"


def test_recovery_rotation_supersedes_an_unanchored_rogue_update() -> None:
    w = _base()
    rogue = w.update(T0 + 1, ["cur"], publish=[gen.key("evil", "Ed25519", ["sign"], T0 + 1)])
    log = _log_with(w)
    w.events.pop()
    w.head = log.events[0].digest
    rotation = gen.sign(D, w.next_rotation(T0 + 2, ["nxt"], 1, ["nxt-2"]), ["nxt"])
    result = log.append(rotation)
    assert result.status == "duplicity"
    assert result.switched
    assert [a.signed for a in result.dropped] == [rogue]
    assert not log.disputed
    assert log.state is not None
    assert log.state.controllers == (gen.address("nxt"),)
    assert "evil" not in log.state.keys


def test_rotation_held_first_is_kept_against_a_later_rogue_update() -> None:
    w = _base()
    w.rotate(T0 + 2, ["nxt"], ["nxt"], 1, None)
    log = _log_with(w)
    rogue = gen.sign(D, gen.builder.update(w.subject, 1, log.events[0].digest, T0 + 1, metadata="x"), ["cur"])
    result = log.append(rogue)
    assert result.status == "duplicity"
    assert not result.switched
    assert not log.disputed


def test_an_anchored_rogue_update_beats_a_later_rotation() -> None:
    w = _base()
    w.update(T0 + 1, ["cur"], metadata="rogue")
    log = _log_with(w)
    rogue_digest = log.events[1].digest
    w.events.pop()
    w.head = log.events[0].digest
    rotation = gen.sign(D, w.next_rotation(T0 + 2, ["nxt"], 1, None), ["nxt"])
    result = log.append(rotation, anchored={rogue_digest: 10})
    assert result.status == "duplicity"
    assert not result.switched
    assert log.events[1].digest == rogue_digest


def test_an_anchored_descendant_anchors_its_branch() -> None:
    """Anchoring seq 2 anchors seq 1 too (prev chains commit to it): the branch wins at seq 1."""
    w = _base()
    w.update(T0 + 1, ["cur"], metadata="a")
    w.update(T0 + 2, ["cur"], metadata="b")
    log = _log_with(w)
    head_digest = log.events[2].digest
    rotation = gen.sign(
        D, gen.builder.rotation(w.subject, 1, log.events[0].digest, T0 + 3, [gen.address("nxt")], 1, None), ["nxt"]
    )
    result = log.append(rotation, anchored={head_digest: 7})
    assert result.status == "duplicity"
    assert not result.switched
    assert log.state is not None
    assert log.state.head == head_digest
    # without that anchor the recovery rule would have switched
    fresh = _log_with(w)
    assert fresh.append(rotation).switched


def test_an_invalid_conflicting_event_is_an_error_not_evidence() -> None:
    w = _base()
    w.update(T0 + 1, ["cur"], metadata="a")
    log = _log_with(w)
    w.events.pop()
    w.head = log.events[0].digest
    forged = gen.sign(D, w.next_update(T0 + 1, metadata="forged"), ["mallory"])
    with pytest.raises(UnauthorizedSigner):
        log.append(forged)
    assert not log.evidence


# --------------------------------------------------------------------------------------------
# ADR 0011: a whole-subject revocation is final. It wins against every unanchored competitor at its
# seq (a recovery rotation included); only an anchor that the chain recorded first outranks it.


def _competitors(seed_ts: int = T0 + 1) -> tuple[Any, dict[str, Any]]:
    """Events at seq 1 of one subject, each validly signed: who holds 'cur' can sign all but the rotation."""
    w = _base()
    state = apply_event(None, w.events[0], D).state
    signed = {
        "update": gen.sign(D, w.next_update(seed_ts, metadata="rogue"), ["cur"]),
        "key-revocation": gen.sign(D, w.next_revocation(seed_ts, "k1", seed_ts, "key"), ["cur"]),
        "subject-revocation": gen.sign(D, w.next_revocation(seed_ts, "", seed_ts + 5, "late"), ["cur"]),
        "subject-revocation-early": gen.sign(D, w.next_revocation(seed_ts, "", seed_ts, "early"), ["cur"]),
        "rotation": gen.sign(D, w.next_rotation(seed_ts, ["nxt"], 1, ["nxt-2"]), ["nxt"]),
    }
    return w, {name: (s, apply_event(state, s, D)) for name, s in signed.items()}


def test_choose_a_whole_subject_revocation_beats_an_unanchored_recovery_rotation() -> None:
    _, c = _competitors()
    revocation, rotation = c["subject-revocation"][1], c["rotation"][1]
    update, key_revocation = c["update"][1], c["key-revocation"][1]
    assert choose(revocation, rotation, {}) is revocation
    assert choose(rotation, revocation, {}) is revocation
    assert choose(update, revocation, {}) is revocation
    # a key-level revocation stays displaceable by the recovery rule
    assert choose(key_revocation, rotation, {}) is rotation
    # between two whole-subject revocations the earlier effective time wins (fail closed)
    early = c["subject-revocation-early"][1]
    assert choose(revocation, early, {}) is early
    assert choose(early, revocation, {}) is early
    # the chain decides first: an anchored rotation (recorded before any anchor of the revocation)
    assert choose(revocation, rotation, {rotation.digest: 3}) is rotation
    assert choose(revocation, rotation, {rotation.digest: 3, revocation.digest: 2}) is revocation


def test_a_held_whole_subject_revocation_is_not_displaced_by_a_recovery_rotation() -> None:
    """The attack of finding 12 replayed on the core: the next keys try to undo a subject revocation."""
    w, c = _competitors()
    log = SubjectLog(D)
    log.append(w.events[0])
    assert log.append(c["subject-revocation"][0]).status == "accepted"
    result = log.append(c["rotation"][0])
    assert result.status == "duplicity"
    assert not result.switched
    assert not log.disputed
    assert log.state is not None
    assert log.state.revoked_seq == 1
    verdict = key_verdict(log.state, log.state.subject, "k1", T0 + 10, disputed=log.disputed)
    assert verdict.status == "revoked"
    assert verdict.revoked is not None
    assert verdict.revoked.whole_subject


def test_a_whole_subject_revocation_displaces_a_held_recovery_rotation_and_its_branch() -> None:
    w, c = _competitors()
    log = SubjectLog(D)
    log.append(w.events[0])
    log.append(c["rotation"][0])
    held = log.events[1]
    later = gen.sign(D, gen.builder.update(w.subject, 2, held.digest, T0 + 3, metadata="after"), ["nxt"])
    assert log.append(later).status == "accepted"
    result = log.append(c["subject-revocation"][0])
    assert result.switched
    assert [a.signed for a in result.dropped] == [c["rotation"][0], later]
    assert log.state is not None
    assert log.state.revoked_seq == 1
    assert not log.disputed


def test_a_leaked_old_key_cannot_revoke_over_an_anchored_rotation() -> None:
    """Anchored history is immutable: a whole-subject revocation signed later with keys that a rotation
    (anchored) retired at that seq loses, else any old key leak could destroy the subject retroactively."""
    w, c = _competitors()
    log = SubjectLog(D)
    log.append(w.events[0])
    log.append(c["rotation"][0])
    rotation_digest = log.events[1].digest
    result = log.append(c["subject-revocation"][0], anchored={rotation_digest: 1})
    assert result.status == "duplicity"
    assert not result.switched
    assert log.state is not None
    assert log.state.revoked_seq is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["update", "key-revocation", "subject-revocation", "subject-revocation-early", "rotation"]),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    st.randoms(use_true_random=False),
    st.sets(st.sampled_from(["update", "key-revocation", "subject-revocation", "rotation"]), max_size=2),
)
def test_fork_choice_property_final_revocation_order_independent(
    names: list[str], rnd: Any, anchored_names: set[str]
) -> None:
    """Whatever arrives in whatever order: every node holds the same event at seq 1; with no anchor among
    the competitors a whole-subject revocation (the earliest) is held whenever one competes; the best
    anchor wins otherwise; a whole-subject revocation is held only through one of those two rules."""
    w, c = _competitors()
    anchored = {c[n][1].digest: rank for rank, n in enumerate(sorted(anchored_names)) if n in names}
    held = []
    for _ in range(3):
        order = names[:]
        rnd.shuffle(order)
        log = SubjectLog(D)
        log.append(w.events[0])
        for n in order:
            log.append(c[n][0], anchored)
        held.append(log.events[1].digest)
    assert len(set(held)) == 1
    by_digest = {c[n][1].digest: n for n in names}
    winner = by_digest[held[0]]
    if anchored:
        assert held[0] == min(anchored, key=lambda d: (anchored[d], d))
    elif "subject-revocation-early" in names:
        assert winner == "subject-revocation-early"
    elif "subject-revocation" in names:
        assert winner == "subject-revocation"
    elif "rotation" in names:
        assert winner == "rotation"
