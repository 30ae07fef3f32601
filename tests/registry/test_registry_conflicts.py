"""Events at occupied seqs (issue 13, finding 4): junk costs no replay, no commit, no recovery.

Before the fix, any event at an occupied seq whose digest differed made the registry commit and
replay the subject's whole log with signature recovery, under its lock, before checking the
event's prev or signatures: 20 junk events at seq 1 of a 2,001-event subject cost 40,020
recoveries and 2.36 s. Now a conflicting candidate must name the stored prev and be signed by the
signer set in force (checked with at most one recovery per signature, after every count check)
before fork choice replays anything, and within a per-subject budget.

Costs are counted, not mocked: recoveries by the process-wide counter every recovery goes through
(``keyreg.core.log.signatures_recovered``), replays and commits by a MemoryStore that counts the
calls of its own real methods.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyreg.config import load_config
from keyreg.core import builder as b
from keyreg.core.codec import encode_event
from keyreg.core.eip712 import event_digest
from keyreg.core.errors import (
    BelowThreshold,
    ChainBroken,
    CommitmentMismatch,
    ConfigError,
    Throttled,
    UnauthorizedSigner,
)
from keyreg.core.hashing import keccak
from keyreg.core.log import signatures_recovered
from keyreg.core.records import Domain, PublishedKey, SignedEvent
from keyreg.registry import ConflictBudget, Registry
from keyreg.store.base import AnchorRecord, Changes
from keyreg.store.memory import MemoryStore

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
NOW = 1_700_000_000
OWNER = keccak(b"conflict-owner")
NEXT = keccak(b"conflict-next")
ATTACKER = keccak(b"conflict-attacker")
LARGE = 2_000  # updates after the inception: the 2,001-event subject


class CountingStore(MemoryStore):
    """The real in-memory store, counting log loads (replays), commits and digest reads."""

    def __init__(self) -> None:
        super().__init__()
        self.log_loads = 0
        self.commits = 0
        self.digest_reads = 0

    def digest_at(self, subject: bytes, seq: int) -> bytes | None:
        self.digest_reads += 1
        return super().digest_at(subject, seq)

    def log(self, subject: bytes) -> list[SignedEvent]:
        self.log_loads += 1
        return super().log(subject)

    def commit(self, changes: Changes) -> None:
        self.commits += 1
        super().commit(changes)


def subject_log(updates: int, secret: bytes = OWNER) -> list[SignedEvent]:
    ctrl = b.controller_set([secret])
    inc = b.sign_event(DOMAIN, b.inception(NOW - 10_000, ctrl, 1, b.controller_set([NEXT]), 1), [secret])
    out = [inc]
    subject = prev = event_digest(DOMAIN, inc.event)
    for seq in range(1, updates + 1):
        up = b.sign_event(DOMAIN, b.update(subject, seq, prev, NOW - 10_000 + seq, metadata=f"m{seq}"), [secret])
        prev = event_digest(DOMAIN, up.event)
        out.append(up)
    return out


@pytest.fixture(scope="module")
def large_log() -> list[SignedEvent]:
    return subject_log(LARGE)


@pytest.fixture
def loaded(large_log: list[SignedEvent]) -> Iterator[tuple[Registry, CountingStore, bytes]]:
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW)
    results = reg.ingest([encode_event(e) for e in large_log])
    assert {r.status for r in results} == {"accepted"}
    subject = results[0].subject
    assert subject is not None
    store.log_loads = store.commits = 0
    yield reg, store, subject
    reg.close()


def junk_at(subject: bytes, seq: int, prev: bytes, n: int, signers: tuple[bytes, ...] = (ATTACKER,)) -> list[bytes]:
    """``n`` distinct updates at ``seq`` naming ``prev``, signed by ``signers``."""
    return [
        encode_event(b.sign_event(DOMAIN, b.update(subject, seq, prev, NOW - 5_000, metadata=f"junk {i}"), signers))
        for i in range(n)
    ]


def test_junk_at_seq_1_of_a_large_subject_costs_no_replay_no_commit_no_recovery(loaded: tuple) -> None:
    reg, store, subject = loaded
    head = reg.state(subject)
    junk = junk_at(subject, 1, hashlib.sha256(b"not the inception").digest(), 20)
    before = signatures_recovered()
    start = time.perf_counter()
    results = reg.ingest(junk, "gossip")
    elapsed = time.perf_counter() - start
    assert [r.status for r in results] == ["rejected"] * 20
    assert all(isinstance(r.error, ChainBroken) for r in results)  # a wrong prev: a gap, as before
    assert signatures_recovered() - before == 0  # was 40,020 (20 replays of 2,001 events)
    assert store.log_loads == 0  # no replay
    assert store.commits == 1  # the batch's own commit (its audit entries), none per conflict
    assert reg.state(subject) == head
    assert not store.evidence(subject)
    assert elapsed < 1.0, f"20 junk events took {elapsed:.2f} s (2.36 s before the fix, ~ms now)"


def test_junk_naming_the_right_prev_costs_only_its_own_signature(loaded: tuple) -> None:
    reg, store, subject = loaded
    junk = junk_at(subject, 1, subject, 20)  # prev = the inception's digest: public, easy to copy
    before = signatures_recovered()
    results = reg.ingest(junk, "api")
    assert all(isinstance(r.error, UnauthorizedSigner) for r in results)
    assert signatures_recovered() - before == 20  # one per event: its own single signature
    assert store.log_loads == 0
    assert store.commits == 1
    # Junk with more signatures than the subject has controllers is refused before any recovery.
    many = junk_at(subject, 1, subject, 5, (ATTACKER, NEXT, keccak(b"third")))
    before = signatures_recovered()
    results = reg.ingest(many, "api")
    assert all(isinstance(r.error, UnauthorizedSigner) for r in results)
    assert signatures_recovered() - before == 0
    assert store.log_loads == 0


def test_large_batch_of_junk_skips_the_parallel_recovery(loaded: tuple) -> None:
    reg, store, subject = loaded
    # 200 junk events (>= the 64 that start worker recovery) at many occupied seqs, wrong prev.
    junk = [
        encode_event(
            b.sign_event(
                DOMAIN, b.update(subject, 1 + i * 7, keccak(b"p%d" % i), NOW - 5_000, metadata="j"), [ATTACKER]
            )
        )
        for i in range(200)
    ]
    before = signatures_recovered()
    results = reg.ingest(junk, "sync", bulk=False)
    assert {type(r.error) for r in results} == {ChainBroken}
    assert signatures_recovered() - before == 0
    assert store.log_loads == 0
    assert store.commits == 1


def test_a_wrong_rotation_is_refused_before_recovery(loaded: tuple) -> None:
    reg, store, subject = loaded
    rot = b.sign_event(
        DOMAIN,
        b.rotation(subject, 1, subject, NOW - 5_000, b.controller_set([ATTACKER]), 1, None),
        [ATTACKER],
    )
    before = signatures_recovered()
    (result,) = reg.ingest([encode_event(rot)])
    assert isinstance(result.error, CommitmentMismatch)
    assert signatures_recovered() - before == 0
    assert store.log_loads == 0


def test_cost_per_junk_event_does_not_grow_with_the_log() -> None:
    """Recoveries, replays and commits per junk event are the same at 3 and at 600 events."""
    costs = []
    for updates in (2, 600):
        store = CountingStore()
        reg = Registry(DOMAIN, store, clock=lambda: NOW)
        log = subject_log(updates, keccak(b"size-%d" % updates))
        subject = reg.ingest(log)[0].subject
        assert subject is not None
        store.log_loads = store.commits = 0
        before = signatures_recovered()
        reg.ingest(junk_at(subject, 1, subject, 10), "gossip")
        costs.append((signatures_recovered() - before, store.log_loads, store.commits))
        reg.close()
    assert costs[0] == costs[1] == (10, 0, 1)


def test_honest_equivocation_is_still_evidence_and_the_owner_cannot_flood_it() -> None:
    store = CountingStore()
    ticks = [0.0]
    reg = Registry(DOMAIN, store, clock=lambda: NOW, conflicts=ConflictBudget(3, 60.0, clock=lambda: ticks[0]))
    log = subject_log(5)
    subject = reg.ingest(log)[0].subject
    assert subject is not None
    prev = event_digest(DOMAIN, log[2].event)
    rivals = junk_at(subject, 3, prev, 5, (OWNER,))  # validly signed by the controller: equivocations
    results = reg.ingest(rivals[:3], "gossip")
    assert [r.status for r in results] == ["duplicity"] * 3
    assert len(store.evidence(subject)) == 3
    assert subject in reg.disputed
    # The fourth in the window: refused for now (nothing replayed), not lost for good.
    loads = store.log_loads
    (over,) = reg.ingest(rivals[3:4], "gossip")
    assert over.status == "rejected"
    assert isinstance(over.error, Throttled)
    assert store.log_loads == loads
    assert reg.conflicts.refused == 1
    ticks[0] = 61.0  # the window has passed
    (later,) = reg.ingest(rivals[3:4], "gossip")
    assert later.status == "duplicity"
    assert len(store.evidence(subject)) == 4


def test_conflicts_before_a_rotation_are_judged_by_the_controllers_then_in_force() -> None:
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW)
    log = subject_log(3)
    subject = reg.ingest(log)[0].subject
    assert subject is not None
    head = event_digest(DOMAIN, log[-1].event)
    rot = b.sign_event(DOMAIN, b.rotation(subject, 4, head, NOW - 5_000, b.controller_set([NEXT]), 1, None), [NEXT])
    assert reg.ingest([rot])[0].status == "accepted"
    # A conflict at seq 5 (after the rotation) is judged by the new set: the old owner is junk.
    # (Checked first: the equivocation at seq 2 below disputes the subject, and the branch every
    # node then holds is the lower digest's, which may drop the rotation.)
    rot_digest = event_digest(DOMAIN, rot.event)
    nxt = b.sign_event(DOMAIN, b.update(subject, 5, rot_digest, NOW - 4_000, metadata="n"), [NEXT])
    assert reg.ingest([nxt])[0].status == "accepted"
    (stale_owner,) = reg.ingest(junk_at(subject, 5, rot_digest, 1, (OWNER,)))
    assert isinstance(stale_owner.error, UnauthorizedSigner)
    prev = event_digest(DOMAIN, log[1].event)
    # At seq 2 the old owner was in force: a competitor signed by the new controller is junk ...
    (by_new,) = reg.ingest(junk_at(subject, 2, prev, 1, (NEXT,)))
    assert isinstance(by_new.error, UnauthorizedSigner)
    # ... and one signed by the old owner is evidence of equivocation (its key outlived its term).
    (by_old,) = reg.ingest(junk_at(subject, 2, prev, 1, (OWNER,)))
    assert by_old.status == "duplicity"
    assert len(store.evidence(subject)) == 1


def test_threshold_subjects_refuse_too_few_signatures_before_recovery() -> None:
    owners = [keccak(b"t%d" % i) for i in range(3)]
    reg = Registry(DOMAIN, CountingStore(), clock=lambda: NOW)
    inc = b.sign_event(DOMAIN, b.inception(NOW - 10_000, b.controller_set(owners), 2), owners[:2])
    subject = reg.ingest([inc])[0].subject
    assert subject is not None
    up = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 9_000, metadata="a"), owners[:2])
    assert reg.ingest([up])[0].status == "accepted"
    before = signatures_recovered()
    (one,) = reg.ingest(junk_at(subject, 1, subject, 1, (owners[0],)))
    assert isinstance(one.error, BelowThreshold)
    assert signatures_recovered() - before == 0
    (two,) = reg.ingest(junk_at(subject, 1, subject, 1, (owners[0], owners[2])))
    assert two.status == "duplicity"  # a threshold of the controllers equivocated


def test_the_budget_table_is_capped() -> None:
    budget = ConflictBudget(1, 60.0, max_subjects=100, clock=lambda: 0.0)
    for i in range(1_000):
        assert budget.take(i.to_bytes(32, "big"))
    assert len(budget._windows) == 100
    assert not budget.take((999).to_bytes(32, "big"))


_KEY = PublishedKey("k", "Ed25519", bytes(32), ("sig",), 0, 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seq=st.integers(1, 6),
    prev_kind=st.sampled_from(["right", "random", "head"]),
    signer=st.sampled_from(["attacker", "next", "owner"]),
    publish=st.booleans(),
)
def test_any_event_at_an_occupied_seq_costs_at_most_its_own_signatures(
    seq: int, prev_kind: str, signer: str, publish: bool
) -> None:
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW)
    log = subject_log(6)
    subject = reg.ingest(log)[0].subject
    assert subject is not None
    prev = {
        "right": event_digest(DOMAIN, log[seq - 1].event),
        "random": hashlib.sha256(b"%d" % seq).digest(),
        "head": event_digest(DOMAIN, log[-1].event),
    }[prev_kind]
    secret = {"attacker": ATTACKER, "next": NEXT, "owner": OWNER}[signer]
    up = b.update(subject, seq, prev, NOW - 5_000, publish=[_KEY] if publish else (), metadata=None if publish else "x")
    ev = b.sign_event(DOMAIN, up, [secret])
    before = signatures_recovered()
    (result,) = reg.ingest([encode_event(ev)])
    recovered = signatures_recovered() - before
    honest = prev == event_digest(DOMAIN, log[seq - 1].event) and signer == "owner"
    if honest:
        assert result.status == "duplicity"  # the owner equivocated: fork choice ran
        assert store.log_loads == 1
    else:
        assert result.status == "rejected"
        assert store.log_loads == 0
        assert recovered <= 1
        state = reg.state(subject)
        assert state is not None
        assert state.seq == 6


def test_conflict_budget_is_configured_and_checked(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, {"ingest": {"conflicts_per_subject": 4, "conflict_window_s": 5.0}})
    assert (cfg.ingest.conflicts_per_subject, cfg.ingest.conflict_window_s) == (4, 5.0)
    with pytest.raises(ConfigError):
        load_config(tmp_path, {"ingest": {"conflicts_per_subject": 0}})


def test_large_batches_recover_ahead_only_events_that_extend_a_head() -> None:
    """Signatures of a large batch are recovered before the rules run, so only for events that
    extend their subject's head (or an event of the batch that does), and for gaps and unknown
    subjects, which the sync batch prepared before may fill (only sync's bulk batches recover ahead)."""
    reg = Registry(DOMAIN, CountingStore(), clock=lambda: NOW)
    a = subject_log(5, keccak(b"ahead-a"))
    reg.ingest(a[:3])  # head at seq 2
    fresh = subject_log(1, keccak(b"ahead-b"))  # an unknown subject: inception then seq 1
    orphan = subject_log(2, keccak(b"ahead-c"))[2]  # seq 2 of a subject we do not know
    subject = event_digest(DOMAIN, a[0].event)
    wrong = b.sign_event(DOMAIN, b.update(subject, 3, keccak(b"x"), NOW, metadata="w"), [ATTACKER])
    after_wrong = b.sign_event(
        DOMAIN, b.update(subject, 4, event_digest(DOMAIN, wrong.event), NOW, metadata="w"), [ATTACKER]
    )
    items = [a[3], a[4], a[3], a[1], fresh[0], fresh[1], orphan, wrong, after_wrong]
    chunk = [(e, event_digest(DOMAIN, e.event)) for e in items]
    ahead = [d is not None for _, d in reg._to_recover(chunk, {})]
    #          A@3   A@4   A@3 copy A@1 (stale) B@0  B@1   C@2 orphan wrong@3 its child
    assert ahead == [True, True, False, False, True, True, True, False, False]
    # The decisions only say where recovery happens: ingesting the batch gives the same results
    # as one event at a time (apply_event recovers what was not recovered ahead).
    single = Registry(DOMAIN, MemoryStore(), clock=lambda: NOW)
    single.ingest(a[:3])
    want = [single.ingest([e])[0].status for e in items * 8]
    # On signature workers (a sync pull's bulk batches): a first bulk batch of another subject
    # starts them, then the 72 events go through _to_recover on the parallel path.
    reg2 = Registry(DOMAIN, MemoryStore(), clock=lambda: NOW, signature_workers=2)
    try:
        reg2.ingest(subject_log(80, keccak(b"ahead-warm-up")), "sync", bulk=True)
        reg2.ingest(a[:3])
        got = [r.status for r in reg2.ingest(items * 8, "sync", bulk=True)]
    finally:
        reg2.close()
    assert got == want


def test_a_large_batch_of_orphans_and_gaps_costs_no_recovery() -> None:
    reg = Registry(DOMAIN, CountingStore(), clock=lambda: NOW)
    log = subject_log(1, keccak(b"orphans"))
    reg.ingest(log)
    subject = event_digest(DOMAIN, log[0].event)
    gaps = [
        b.sign_event(DOMAIN, b.update(subject, 5 + i, keccak(b"g%d" % i), NOW, metadata="g"), [ATTACKER])
        for i in range(100)
    ]
    orphans = [
        b.sign_event(DOMAIN, b.update(keccak(b"o%d" % i), 1, keccak(b"o%d" % i), NOW, metadata="o"), [ATTACKER])
        for i in range(100)
    ]
    before = signatures_recovered()
    results = reg.ingest([encode_event(e) for e in gaps + orphans], "gossip")
    assert {r.status for r in results} == {"rejected"}
    assert signatures_recovered() - before == 0


def test_junk_adds_a_bounded_number_of_audit_records_per_batch() -> None:
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW, reject_audits_per_batch=16)
    log = subject_log(1, keccak(b"audit"))
    reg.ingest(log)
    subject = event_digest(DOMAIN, log[0].event)
    first = len(store.audit_records(0, 10_000))
    junk = [*junk_at(subject, 1, keccak(b"wrong"), 100), b"{not json", b'{"kind":"update"}']
    results = reg.ingest(junk, "gossip")
    assert {r.status for r in results} == {"rejected"}
    records = store.audit_records(first, 10_000)
    assert [r.action for r in records] == ["reject"] * 16 + ["reject-summary"]
    summary = records[-1].detail
    assert summary["unaudited"] == 102 - 16
    assert summary["source"] == "gossip"
    assert sum(summary["codes"].values()) == 86
    # A small batch is audited one by one, as before.
    reg.ingest(junk[:3], "api")
    assert [r.action for r in store.audit_records(first + 17, 100)] == ["reject"] * 3


def test_an_api_client_over_the_conflict_budget_gets_429_not_500() -> None:
    from keyreg.api.app import status_for

    assert status_for(Throttled("over budget")) == 429


# ---------------------------------------------------------------------- review of the fix (H1, M12, L1)

NEXT2 = keccak(b"conflict-next2")
NEXT3 = keccak(b"conflict-next3")


def rotated_log(extra_updates: int = 1) -> list[SignedEvent]:
    """Inception (OWNER, next NEXT), rotation to NEXT at seq 1 (next NEXT2), then updates by NEXT."""
    inc = b.sign_event(
        DOMAIN, b.inception(NOW - 10_000, b.controller_set([OWNER]), 1, b.controller_set([NEXT]), 1), [OWNER]
    )
    subject = prev = event_digest(DOMAIN, inc.event)
    rot = b.rotation(subject, 1, prev, NOW - 9_999, b.controller_set([NEXT]), 1, b.controller_set([NEXT2]), 1)
    out = [inc, b.sign_event(DOMAIN, rot, [NEXT])]
    prev = event_digest(DOMAIN, rot)
    for seq in range(2, 2 + extra_updates):
        up = b.sign_event(DOMAIN, b.update(subject, seq, prev, NOW - 9_999 + seq, metadata=f"m{seq}"), [NEXT])
        prev = event_digest(DOMAIN, up.event)
        out.append(up)
    return out


def test_unsigned_junk_before_a_rotation_spends_no_conflict_budget() -> None:
    """Review H1: junk at seqs before the last rotation drained the subject's conflict budget before
    any signature check, so the owner's validly signed conflicts were then refused as throttled."""
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW, conflicts=ConflictBudget(4, 60.0, clock=lambda: 0.0))
    log = rotated_log(1)
    subject = reg.ingest([encode_event(e) for e in log])[0].subject
    assert subject is not None
    # 40 junk events competing with the rotation at seq 1 (so the signer set in force is found by
    # looking back past the last rotation), naming the public inception digest as prev and signed
    # by a key that is no controller.
    junk = [
        encode_event(b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 9_998, metadata=f"j{i}"), [ATTACKER]))
        for i in range(40)
    ]
    before = signatures_recovered()
    results = reg.ingest(junk, "gossip")
    assert {type(r.error) for r in results} == {UnauthorizedSigner}  # judged, not throttled
    assert signatures_recovered() - before == 40  # L1: one recovery per junk event is the floor
    assert reg.conflicts.refused == 0
    assert reg.lookbacks.refused == 0
    assert store.log_loads == 0
    # The owner's (here: the controller in force) own conflict at seq 2 is still judged.
    rival = b.sign_event(
        DOMAIN, b.update(subject, 2, event_digest(DOMAIN, log[1].event), NOW - 9_990, metadata="other"), [NEXT]
    )
    (res,) = reg.ingest([encode_event(rival)], "gossip")
    assert res.status == "duplicity"


def test_the_owners_recovery_rotation_is_never_throttled_by_others_conflicts() -> None:
    """Review H1: a leaked current key may spend the subject's conflict budget with valid
    equivocations (allowed by design), but the rotation signed by the pre-committed next set,
    which only the owner holds, has a budget of its own and still displaces the rogue head."""
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW, conflicts=ConflictBudget(2, 60.0, clock=lambda: 0.0))
    log = rotated_log(1)
    subject = reg.ingest([encode_event(e) for e in log])[0].subject
    assert subject is not None
    d2 = event_digest(DOMAIN, log[2].event)
    rogue = b.sign_event(DOMAIN, b.update(subject, 3, d2, NOW - 9_000, metadata="rogue"), [NEXT])
    assert reg.ingest([encode_event(rogue)])[0].status == "accepted"
    # The leaked key's holder equivocates at seq 3 until the conflict budget is spent.
    rivals = junk_at(subject, 3, d2, 4, (NEXT,))
    statuses = [r.status for r in reg.ingest(rivals, "gossip")]
    assert statuses == ["duplicity", "duplicity", "rejected", "rejected"]
    assert reg.conflicts.refused == 2
    recovery = b.sign_event(
        DOMAIN, b.rotation(subject, 3, d2, NOW - 8_990, b.controller_set([NEXT2]), 1, b.controller_set([NEXT3]), 1),
        [NEXT2],
    )  # fmt: skip
    (res,) = reg.ingest([encode_event(recovery)], "gossip")
    assert res.status == "duplicity", res.error
    assert reg.recoveries.refused == 0


def test_a_deep_look_back_is_charged_to_its_own_budget_never_the_conflict_budget() -> None:
    """The signer set in force far behind a later rotation is found by reading the log back in
    pages: the first _FREE_SCAN_PAGES are free, further pages charge the look-back budget (which
    junk may spend: it is charged before the signatures are checked), never the conflict budget."""
    from keyreg import registry as registry_module

    pages = registry_module._FREE_SCAN_PAGES
    depth = pages * registry_module._SCAN_PAGE + 50
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW, conflicts=ConflictBudget(2, 60.0, clock=lambda: 0.0))
    log = rotated_log(depth)
    head = event_digest(DOMAIN, log[-1].event)
    subject = reg.ingest([encode_event(e) for e in log])[0].subject
    assert subject is not None
    rot = b.rotation(subject, len(log), head, NOW - 100, b.controller_set([NEXT2]), 1, b.controller_set([NEXT3]), 1)
    assert reg.ingest([encode_event(b.sign_event(DOMAIN, rot, [NEXT2]))])[0].status == "accepted"
    seq = depth + 1  # the set in force at seq - 1 was set at seq 1: more than `pages` pages back
    prev = event_digest(DOMAIN, log[seq - 1].event)
    deep = junk_at(subject, seq, prev, reg.lookbacks.per_subject + 3)
    results = reg.ingest(deep, "gossip")
    errors = [type(r.error) for r in results]
    assert errors[: reg.lookbacks.per_subject] == [UnauthorizedSigner] * reg.lookbacks.per_subject
    assert set(errors[reg.lookbacks.per_subject :]) == {Throttled}
    assert reg.conflicts.refused == 0  # the conflict budget is untouched ...
    # ... and shallow look-backs stay free: at seq 2 the set in force was set at seq 1, a page back.
    (rival,) = reg.ingest(junk_at(subject, 2, event_digest(DOMAIN, log[1].event), 1, (OWNER,)), "api")
    assert isinstance(rival.error, UnauthorizedSigner)
    assert reg.lookbacks.refused == 3


def test_a_batch_alternating_extensions_and_junk_makes_one_commit() -> None:
    """Review M12: junk at the seq the batch itself just filled forced a store commit per pair,
    under the registry lock (500 pairs: 501 commits). It is now judged against the batch's own
    events in memory: one commit per batch."""
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW)
    inc = subject_log(0)[0]
    subject = reg.ingest([encode_event(inc)])[0].subject
    assert subject is not None
    store.commits = 0
    batch, prev = [], subject
    for seq in range(1, 201):
        up = b.sign_event(DOMAIN, b.update(subject, seq, prev, NOW - 9_000 + seq, metadata=f"u{seq}"), [OWNER])
        batch.append(encode_event(up))
        junk = b.update(subject, seq, prev, NOW - 9_000 + seq, metadata=f"j{seq}")
        batch.append(encode_event(b.sign_event(DOMAIN, junk, [ATTACKER])))
        prev = event_digest(DOMAIN, up.event)
    results = reg.ingest(batch, "api")
    assert [r.status for r in results] == ["accepted", "rejected"] * 200
    assert all(isinstance(r.error, UnauthorizedSigner) for r in results[1::2])
    assert store.commits == 1  # was one per pair
    assert store.log_loads == 0
    assert reg.state(subject).seq == 200  # type: ignore[union-attr]


def test_valid_conflicts_in_a_batch_that_extends_their_subject_make_a_bounded_number_of_commits() -> None:
    """A validly signed conflict on a subject the batch extended needs the batch stored first (fork
    choice replays the store): at most MAX_CONFLICT_COMMITS_PER_BATCH such commits, then throttled."""
    from keyreg.registry import MAX_CONFLICT_COMMITS_PER_BATCH

    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW, conflicts=ConflictBudget(100, 60.0, clock=lambda: 0.0))
    owners = [keccak(b"batch-owner-%d" % i) for i in range(MAX_CONFLICT_COMMITS_PER_BATCH + 3)]
    incs = [subject_log(0, owner)[0] for owner in owners]
    subjects = [r.subject for r in reg.ingest([encode_event(e) for e in incs])]
    store.commits = 0
    batch = []
    for owner, subject in zip(owners, subjects, strict=True):
        assert subject is not None
        for tag in ("u", "r"):  # an update, then the owner's own rival at the same seq
            up = b.update(subject, 1, subject, NOW - 9_000, metadata=tag)
            batch.append(encode_event(b.sign_event(DOMAIN, up, [owner])))
    results = reg.ingest(batch, "api")
    assert [r.status for r in results[0::2]] == ["accepted"] * len(owners)
    rivals = results[1::2]
    n = MAX_CONFLICT_COMMITS_PER_BATCH
    assert [r.status for r in rivals[:n]] == ["duplicity"] * n
    assert all(isinstance(r.error, Throttled) for r in rivals[n:])
    assert store.commits == 1 + n  # the batch's own, and one before each of the first n conflicts


def test_new_subjects_past_limits_max_subjects_are_refused_before_any_recovery() -> None:
    """Review H3: a node-wide cap on subjects (limits.max_subjects, code "capacity")."""
    from dataclasses import replace

    from keyreg.core.errors import OverCapacity
    from keyreg.core.limits import DEFAULT_LIMITS

    reg = Registry(DOMAIN, CountingStore(), replace(DEFAULT_LIMITS, max_subjects=3), clock=lambda: NOW)
    incs = [subject_log(0, keccak(b"cap-%d" % i))[0] for i in range(5)]
    assert reg.capacity() == {"subjects": 0, "maxSubjects": 3}
    first = reg.ingest([encode_event(e) for e in incs[:2]])
    assert [r.status for r in first] == ["accepted"] * 2
    assert "warning" not in reg.capacity()
    before = signatures_recovered()
    rest = reg.ingest([encode_event(e) for e in incs[2:]])
    assert [r.status for r in rest] == ["accepted", "rejected", "rejected"]
    assert all(isinstance(r.error, OverCapacity) and r.error.code == "capacity" for r in rest[1:])
    assert signatures_recovered() - before == 1  # the refused ones cost no recovery
    assert len(reg.states) == 3
    assert "full" in str(reg.capacity()["warning"])
    # Events of subjects already held are not new subjects.
    held = rest[0].subject
    up = b.sign_event(DOMAIN, b.update(held, 1, held, NOW - 9_000, metadata="x"), [keccak(b"cap-2")])
    assert reg.ingest([encode_event(up)])[0].status == "accepted"


def test_junk_repeated_at_the_same_seq_reads_the_store_once(loaded: tuple) -> None:
    """The stale path reads a stored digest once per (subject, seq): then from the capped cache."""
    reg, store, subject = loaded
    inception = store.digest_at(subject, 0)
    assert inception is not None
    store.digest_reads = 0
    wrong = junk_at(subject, 1, hashlib.sha256(b"not the inception").digest(), 50)
    unsigned = junk_at(subject, 1, inception, 50, ())
    for batch in (wrong, unsigned, wrong, unsigned):
        results = reg.ingest(batch, "api")
        assert {r.status for r in results} == {"rejected"}
    # seq 1 (is it known?) and seq 0 (its prev): two reads for 200 junk events (was two each).
    assert store.digest_reads == 2
    assert reg.ingest(wrong[:1], "api")[0].error.__class__ is ChainBroken  # the checks are unchanged
    assert isinstance(reg.ingest(unsigned[:1], "api")[0].error, BelowThreshold)


def test_the_digest_cache_follows_a_branch_switch() -> None:
    """A switch rewrites stored seqs: the cache must drop the subject's digests, never answer stale."""
    store = CountingStore()
    reg = Registry(DOMAIN, store, clock=lambda: NOW)
    log = subject_log(5)
    subject = reg.ingest(log)[0].subject
    assert subject is not None
    rival = junk_at(subject, 3, event_digest(DOMAIN, log[2].event), 1, (OWNER,))
    (dup,) = reg.ingest(rival, "gossip")
    assert dup.status == "duplicity"
    assert dup.digest is not None
    events = {event_digest(DOMAIN, log[3].event): encode_event(log[3]), dup.digest: rival[0]}
    held = MemoryStore.digest_at(store, subject, 3)  # fork choice kept one of the two
    assert held in events
    (other,) = set(events) - {held}
    junk = junk_at(subject, 3, hashlib.sha256(b"x").digest(), 1)
    assert reg.ingest(junk, "api")[0].status == "rejected"  # seq 3 read, now cached
    assert reg._digests[(subject, 3)] == held
    # The chain anchors the other one: the subject switches to it at seq 3.
    reg.record_anchors([AnchorRecord(subject, 3, other, 5_000_000, "direct", 5, b"\x01" * 32)])
    assert MemoryStore.digest_at(store, subject, 3) == other
    for seq in range(6):
        assert reg._stored_digest(subject, seq) == MemoryStore.digest_at(store, subject, seq)
    # The formerly stored event is no longer the stored one: fork choice sees it (a replay), not a
    # stale cache entry answering "known" for free.
    loads = store.log_loads
    assert reg.ingest([events[held]], "gossip")[0].status == "duplicity"
    assert store.log_loads == loads + 1


def test_the_digest_cache_is_capped(loaded: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    reg, _store, subject = loaded
    monkeypatch.setattr("keyreg.registry.DIGEST_CACHE_ENTRIES", 8)
    for seq in range(1, 40):
        reg.ingest(junk_at(subject, seq, hashlib.sha256(b"x").digest(), 1), "api")
    assert len(reg._digests) == 8
