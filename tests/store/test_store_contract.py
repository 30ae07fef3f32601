"""The Store contract, run against MemoryStore, SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from keyreg.core.builder import commitment_for, controller_set, sign_event
from keyreg.core.codec import encode_event
from keyreg.core.log import Accepted, apply_event, replay
from keyreg.core.records import GovernanceRevocation, Rotation
from keyreg.registry import Registry
from keyreg.store.audit import verify_audit
from keyreg.store.base import AnchorRecord, AuditEntry, Changes, EventConflict
from keyreg.store.check import check_store
from keyreg.store.sql import SqlStore
from tests.store.streams import DOMAIN, interleaved, secret, subject_events

Open = Callable[[], Any]


def _accepted(seed: int, index: int, count: int) -> list[Accepted]:
    return replay([e.signed for e in subject_events(seed, index, count)], DOMAIN)


def _changes(accs: list[Accepted]) -> Changes:
    ch = Changes()
    for acc in accs:
        ch.appended.append((acc, encode_event(acc.signed)))
        ch.states[acc.subject] = acc.state
        ch.audit.append(AuditEntry("accept", acc.subject, acc.signed.event.seq, acc.digest, {"kind": "x"}))
    return ch


def _ingest_all(reg: Registry, raws: list[bytes], batch: int = 64) -> list[Any]:
    out = []
    for i in range(0, len(raws), batch):
        out += reg.ingest(raws[i : i + batch])
    return out


def test_registry_roundtrip_and_reopen(open_store: Open) -> None:
    stream = interleaved(3, 6, 9)
    raws = [encode_event(e.signed) for e in stream]
    store = open_store()
    reg = Registry(DOMAIN, store)
    results = _ingest_all(reg, raws)
    assert [r.status for r in results] == ["accepted"] * len(raws)

    again = open_store()  # a restart: the same data read back from the store
    reg2 = Registry(DOMAIN, again)
    assert reg2.states == reg.states
    assert reg2.tree.root == reg.tree.root
    for e in stream:
        assert again.digest_at(e.subject, e.seq) == e.digest
    subject = stream[0].subject
    mine = [encode_event(e.signed) for e in stream if e.subject == subject]
    assert again.events(subject) == mine
    assert again.events(subject, 3, 2) == mine[3:5]
    assert again.log(subject) == [e.signed for e in stream if e.subject == subject]
    assert again.digest_at(subject, 99) is None
    report = verify_audit(again, again.audit_head())
    assert report.ok, report.problems
    assert report.records == len(raws)
    assert [r.action for r in again.audit_records(0, 5)] == ["accept"] * 5


def test_redelivery_is_a_noop(open_store: Open) -> None:
    store = open_store()
    accs = _accepted(1, 0, 4)
    store.commit(_changes(accs))
    head = store.audit_head()
    store.commit(_changes(accs))  # the whole batch again
    store.commit(_changes(accs[1:2]))  # an old event again, with its (older) state
    assert store.audit_head() == head
    reopened = open_store()
    states = {s.subject: s for s, _ in reopened.load_states()}
    assert states[accs[0].subject] == accs[-1].state  # the head did not move back
    assert reopened.events(accs[0].subject) == [encode_event(a.signed) for a in accs]


def test_redelivery_mixed_with_new_events(open_store: Open) -> None:
    store = open_store()
    accs = _accepted(1, 0, 6)
    store.commit(_changes(accs[:3]))
    store.commit(_changes(accs[1:6]))  # 1, 2 known; 3, 4, 5 new
    assert open_store().events(accs[0].subject) == [encode_event(a.signed) for a in accs]
    assert verify_audit(store, store.audit_head()).records == 6


def test_conflicting_event_raises_and_rolls_back(open_store: Open) -> None:
    store = open_store()
    accs = _accepted(1, 0, 3)
    store.commit(_changes(accs))
    head = store.audit_head()
    # A different, validly signed event at the occupied seq 2 (the rotation the next keys allow).
    ev = Rotation(
        accs[0].subject,
        2,
        accs[1].digest,
        accs[1].state.timestamp + 1,
        controller_set([secret(1, 0, 1)]),
        1,
        commitment_for([secret(1, 0, 2)], 1),
    )
    rogue = apply_event(accs[1].state, sign_event(DOMAIN, ev, [secret(1, 0, 1)]), DOMAIN)
    other = _accepted(1, 1, 2)  # a new subject in the same batch must not be stored either
    with pytest.raises(EventConflict):
        store.commit(_changes([*other, rogue]))
    reopened = open_store()
    assert reopened.digest_at(accs[0].subject, 2) == accs[2].digest
    assert reopened.events(other[0].subject) == []
    assert reopened.audit_head() == head
    assert {s.subject: s for s, _ in reopened.load_states()}[accs[0].subject] == accs[2].state


def test_fork_choice_switch_archives_the_losing_branch(open_store: Open) -> None:
    events = subject_events(5, 0, 4)  # 0 inception, 1..3 updates
    store = open_store()
    reg = Registry(DOMAIN, store)
    assert all(r.status == "accepted" for r in reg.ingest([encode_event(e.signed) for e in events]))
    subject, prev = events[0].subject, events[1].digest
    ev = Rotation(
        subject,
        2,
        prev,
        events[1].signed.event.timestamp + 1,
        controller_set([secret(5, 0, 1)]),
        1,
        commitment_for([secret(5, 0, 2)], 1),
    )
    rotation = sign_event(DOMAIN, ev, [secret(5, 0, 1)])
    [result] = reg.ingest([encode_event(rotation)])
    assert result.status == "duplicity"
    assert result.switched
    reopened = open_store()
    assert reopened.log(subject) == [events[0].signed, events[1].signed, rotation]
    assert reopened.digest_at(subject, 3) is None
    assert [(a[1], a[2]) for a in reopened.archived(subject)] == [(2, events[2].digest), (3, events[3].digest)]
    [evidence] = reopened.evidence(subject)
    assert {evidence.first_digest, evidence.second_digest} == {events[2].digest, result.digest}
    reg2 = Registry(DOMAIN, reopened)
    assert reg2.states[subject] == reg.states[subject]
    assert "k3" not in reg2.states[subject].keys  # published on the losing branch
    assert verify_audit(reopened, reopened.audit_head()).ok
    # The old branch's events, re-delivered now, are evidence or stale: never an overwrite.
    reg2.ingest([encode_event(events[3].signed)])
    assert open_store().log(subject)[2] == rotation
    if isinstance(reopened, SqlStore):  # derived rows, archive and evidence replay clean
        report = check_store(reopened, DOMAIN)
        assert report.ok, report.to_dict()
        assert (report.archived, report.evidence) == (2, 1)


def test_disputed_flag_persists(open_store: Open) -> None:
    accs = _accepted(2, 0, 2)
    store = open_store()
    ch = _changes(accs)
    ch.disputed[accs[0].subject] = True
    store.commit(ch)
    assert [d for _, d in open_store().load_states()] == [True]
    store.commit(Changes(states={accs[0].subject: accs[-1].state}, disputed={accs[0].subject: False}))
    assert [d for _, d in open_store().load_states()] == [False]


def test_governance_anchors_evidence_roundtrip_exactly(open_store: Open) -> None:
    accs = _accepted(4, 0, 2)
    store = open_store()
    g = GovernanceRevocation(
        subject=accs[0].subject,
        key_id="k0",
        effective_at=2**64 - 1,  # past SQL's signed 64-bit: must still come back exact
        reason_hash=b"\x11" * 32,
        proposal_id=2**255 + 7,
        governor=b"\x22" * 20,
        block_number=12,
        tx_hash=b"\x33" * 32,
    )
    anchors = [
        AnchorRecord(accs[0].subject, 1, accs[1].digest, 9_000_001, "batch", 9, b"\x44" * 32, b"\x55" * 32),
        AnchorRecord(accs[0].subject, 0, accs[0].digest, 5_000_000, "direct", 5, b"\x66" * 32),
    ]
    ch = _changes(accs)
    ch.governance.append(g)
    ch.anchors.extend(anchors)
    store.commit(ch)
    store.commit(Changes(governance=[g], anchors=anchors))  # re-delivered: no duplicates
    reopened = open_store()
    assert reopened.governance_revocations() == [g]
    assert reopened.governance_revocations(b"\x00" * 32) == []
    assert reopened.anchors() == sorted(anchors, key=lambda a: a.position)
    assert reopened.anchors(accs[0].subject)[0].root is None


def test_append_audit_continues_the_chain(open_store: Open) -> None:
    store = open_store()
    store.commit(_changes(_accepted(1, 0, 2)))
    records = store.append_audit(
        [
            AuditEntry("key-op", None, None, None, {"op": "rotate", "key": b"\x01\x02", "ids": ("a", "b")}),
            AuditEntry("key-op", b"\x07" * 32, 3, None, {"op": "revoke"}),
        ]
    )
    assert [r.index for r in records] == [2, 3]
    assert records[0].detail == {"op": "rotate", "key": "0x0102", "ids": ["a", "b"]}
    assert store.append_audit([]) == []
    reopened = open_store()
    assert reopened.audit_records(2) == records
    report = verify_audit(reopened, reopened.audit_head())
    assert report.ok
    assert report.records == 4
    assert report.head_hash == records[-1].hash
