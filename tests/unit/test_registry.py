"""The Registry service over the in-memory store: ingest outcomes, duplicity, fork choice, governance."""

from __future__ import annotations

import pytest

from keyreg.core import builder as b
from keyreg.core.codec import encode_event
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.core.records import Domain, GovernanceRevocation, PublishedKey
from keyreg.outcomes import Report
from keyreg.registry import Registry
from keyreg.store.base import AnchorRecord
from keyreg.store.memory import MemoryStore

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
OTHER = Domain(1, DOMAIN.verifying_contract)
NOW = 1_700_000_000
CURRENT = keccak(b"current-controller")
NEXT = keccak(b"next-controller")
GOVERNOR = address_of_private_key(keccak(b"governor"))


def key(kid: str, t: int = NOW - 1000, purposes: tuple[str, ...] = ("sig",)) -> PublishedKey:
    return PublishedKey(kid, "Ed25519", keccak(kid.encode()), purposes, t, 0)


def incept(governor: bytes = b"\x00" * 20, domain: Domain = DOMAIN):
    ev = b.inception(
        NOW - 1000,
        b.controller_set([CURRENT]),
        1,
        b.controller_set([NEXT]),
        1,
        keys=[key("k0")],
        governor=governor,
    )
    return b.sign_event(domain, ev, [CURRENT])


@pytest.fixture
def registry() -> Registry:
    return Registry(DOMAIN, MemoryStore(), clock=lambda: NOW)


def test_accept_then_replay_is_known_and_stored_once(registry: Registry) -> None:
    inc = incept()
    first, again = registry.ingest([encode_event(inc), encode_event(inc)])
    assert first.status == "accepted"
    assert again.status == "known"
    assert registry.events(first.subject) == [encode_event(inc)]  # type: ignore[arg-type]
    assert registry.counters["accepted"] == 1
    assert registry.counters["known"] == 1


def test_garbage_and_wrong_network_are_rejected_with_codes_and_audited(registry: Registry) -> None:
    bad, wrong = registry.ingest([b"{not json", encode_event(incept(domain=OTHER))])
    assert bad.status == "rejected"
    assert bad.error is not None
    assert bad.error.code == "malformed"
    assert wrong.status == "rejected"
    assert wrong.error is not None
    assert wrong.error.code == "wrong_network"
    assert registry.states == {}
    store = registry.store
    assert isinstance(store, MemoryStore)
    assert [a.action for a in store.audit] == ["reject", "reject"]


def test_batch_of_one_subject_applies_in_order_and_notifies_listeners(registry: Registry) -> None:
    reports: list[Report] = []
    registry.listeners.append(reports.append)
    inc = incept()
    subject = registry.ingest([inc])[0].subject
    assert subject is not None
    up1 = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 900, publish=[key("k1")]), [CURRENT])
    acc1 = registry.ingest([up1])[0]
    assert acc1.digest is not None
    up2 = b.sign_event(DOMAIN, b.update(subject, 2, acc1.digest, NOW - 800, retire=[("k0", NOW)]), [CURRENT])
    results = registry.ingest([up2, up2])
    assert [r.status for r in results] == ["accepted", "known"]
    state = registry.state(subject)
    assert state is not None
    assert state.seq == 2
    assert registry.tree.get(subject) == (2, state.head)
    assert registry.verdict(subject, "k0", NOW - 1).status == "valid"
    assert registry.verdict(subject, "k0", NOW).status == "expired"
    assert sum(len(r.accepted) for r in reports) == 3


def test_future_event_refused_at_admission_but_accepted_for_backfill(registry: Registry) -> None:
    ev = b.inception(NOW + 3600, b.controller_set([CURRENT]), 1, keys=[key("k0")])
    signed = b.sign_event(DOMAIN, ev, [CURRENT])
    assert registry.ingest([signed])[0].error.code == "timestamp"  # type: ignore[union-attr]
    assert registry.ingest([signed], admission=False)[0].status == "accepted"


def test_equivocation_disputes_until_an_anchor_resolves_it(registry: Registry) -> None:
    subject = registry.ingest([incept()])[0].subject
    assert subject is not None
    a = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 900, publish=[key("ka")]), [CURRENT])
    c = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 900, publish=[key("kc")]), [CURRENT])
    assert registry.ingest([a])[0].status == "accepted"
    dup = registry.ingest([c])[0]
    assert dup.status == "duplicity"
    assert subject in registry.disputed
    assert registry.verdict(subject, "k0", NOW).status == "disputed"
    assert registry.valid_keys(subject) == []
    assert len(registry.store.evidence(subject)) == 1
    # The same conflicting event again is not new evidence.
    assert registry.ingest([c])[0].status == "known"
    assert len(registry.store.evidence(subject)) == 1
    # The chain anchors the second one: it wins, the subject is no longer disputed.
    assert dup.digest is not None
    registry.record_anchors([AnchorRecord(subject, 1, dup.digest, 5_000_000, "direct", 5, b"\x01" * 32)])
    assert subject not in registry.disputed
    state = registry.state(subject)
    assert state is not None
    assert state.head == dup.digest
    assert registry.verdict(subject, "kc", NOW).status == "valid"
    assert registry.verdict(subject, "ka", NOW).status == "unknown-key"


def test_rotation_by_precommitted_keys_supersedes_a_rogue_update(registry: Registry) -> None:
    subject = registry.ingest([incept()])[0].subject
    assert subject is not None
    rogue = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 900, publish=[key("evil")]), [CURRENT])
    rogue_digest = registry.ingest([rogue])[0].digest
    assert rogue_digest is not None
    rogue2 = b.sign_event(DOMAIN, b.update(subject, 2, rogue_digest, NOW - 800, publish=[key("evil2")]), [CURRENT])
    assert registry.ingest([rogue2])[0].status == "accepted"
    rot = b.sign_event(
        DOMAIN,
        b.rotation(subject, 1, subject, NOW - 850, b.controller_set([NEXT]), 1, b.controller_set([CURRENT]), 1),
        [NEXT],
    )
    result = registry.ingest([rot])[0]
    assert result.status == "duplicity"
    assert result.switched
    state = registry.state(subject)
    assert state is not None
    assert state.seq == 1
    assert state.controllers == b.controller_set([NEXT])
    assert subject not in registry.disputed
    assert registry.verdict(subject, "evil", NOW).status == "unknown-key"
    assert len(registry.events(subject)) == 2


def test_governance_revocation_applies_only_from_the_named_governor(registry: Registry) -> None:
    subject = registry.ingest([incept(governor=GOVERNOR)])[0].subject
    assert subject is not None
    bogus = GovernanceRevocation(subject, "k0", NOW - 500, b"\x00" * 32, 7, b"\x99" * 20)
    registry.add_governance_revocations([bogus])
    assert registry.verdict(subject, "k0", NOW).status == "valid"
    real = GovernanceRevocation(subject, "k0", NOW - 500, b"\x00" * 32, 8, GOVERNOR)
    registry.add_governance_revocations([real, real])
    verdict = registry.verdict(subject, "k0", NOW)
    assert verdict.status == "revoked"
    assert verdict.revoked is not None
    assert verdict.revoked.by == "governance"
    assert verdict.revoked.proposal_id == 8
    assert registry.verdict(subject, "k0", NOW - 501).status == "valid"
    # the bogus record is not even held: only the named governor's count (node.governance_book, review M8)
    assert [g.proposal_id for g in registry.governance(subject)] == [8]


def test_registry_reloads_its_read_model_from_the_store(registry: Registry) -> None:
    subject = registry.ingest([incept(governor=GOVERNOR)])[0].subject
    assert subject is not None
    registry.add_governance_revocations([GovernanceRevocation(subject, "k0", NOW - 10, b"\x00" * 32, 1, GOVERNOR)])
    again = Registry(DOMAIN, registry.store, clock=lambda: NOW)
    assert again.state(subject) == registry.state(subject)
    assert again.tree.root == registry.tree.root
    assert again.verdict(subject, "k0", NOW).status == "revoked"


def test_anchor_rank_prefers_recovery_then_direct_then_batch() -> None:
    from keyreg.registry import anchor_rank

    def rec(mode: str, position: int) -> AnchorRecord:
        return AnchorRecord(b"\x01" * 32, 1, b"\x02" * 32, position, mode, position // 1_000_000, b"")

    ranks = [
        anchor_rank(rec("recovery", 9_000_001)),
        anchor_rank(rec("recovery", 8_000_000)),
        anchor_rank(rec("direct", 1_000_000)),
        anchor_rank(rec("direct", 2_000_000)),
        anchor_rank(rec("batch", 500_000)),
    ]
    assert ranks == sorted(ranks)


def test_recovery_anchor_overrides_an_earlier_direct_anchor(registry: Registry) -> None:
    subject = registry.ingest([incept()])[0].subject
    assert subject is not None
    rogue = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 900, publish=[key("evil")]), [CURRENT])
    rogue_digest = registry.ingest([rogue])[0].digest
    assert rogue_digest is not None
    registry.record_anchors([AnchorRecord(subject, 1, rogue_digest, 3_000_000, "direct", 3, b"")])
    rot = b.sign_event(
        DOMAIN,
        b.rotation(subject, 1, subject, NOW - 850, b.controller_set([NEXT]), 1, None),
        [NEXT],
    )
    result = registry.ingest([rot])[0]
    assert result.status == "duplicity"
    assert not result.switched  # the rogue update was anchored first
    assert result.digest is not None
    registry.record_anchors([AnchorRecord(subject, 1, result.digest, 4_000_000, "recovery", 4, b"")])
    state = registry.state(subject)
    assert state is not None
    assert state.head == result.digest


def test_large_batch_matches_one_by_one_ingest() -> None:
    """A large batch (in-line; bulk ones on workers: tests/registry/test_registry_signature_workers.py):
    same results, same errors as one event at a time."""
    from keyreg.signature_workers import MIN_BATCH
    from tests.store.streams import DOMAIN as STREAM_DOMAIN
    from tests.store.streams import mixed_items

    items = mixed_items(7, 20, 6)
    assert len(items) >= 2 * MIN_BATCH
    clock = lambda: 1_800_000_000  # noqa: E731
    batched = Registry(STREAM_DOMAIN, MemoryStore(), clock=clock).ingest(items)
    one_by_one = Registry(STREAM_DOMAIN, MemoryStore(), clock=clock)
    expected = [one_by_one.ingest([item])[0] for item in items]
    assert [r.to_dict() for r in batched] == [r.to_dict() for r in expected]
    assert {r.status for r in batched} >= {"accepted", "rejected", "known"}
    codes = {r.error.code for r in batched if r.error is not None}
    assert {"malformed", "unauthorized_signer", "bad_signature"} <= codes, codes


def test_disputed_subjects_hold_the_same_branch_whatever_the_arrival_order() -> None:
    heads = []
    for order in (0, 1):
        registry = Registry(DOMAIN, MemoryStore(), clock=lambda: NOW)
        subject = registry.ingest([incept()])[0].subject
        assert subject is not None
        a = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 900, publish=[key("ka")]), [CURRENT])
        c = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 900, publish=[key("kc")]), [CURRENT])
        registry.ingest([a, c] if order == 0 else [c, a])
        assert subject in registry.disputed
        heads.append(registry.tree.root)
    assert heads[0] == heads[1]


def test_lone_surrogate_in_text_is_a_malformed_event_not_a_crash(registry: Registry) -> None:
    raw = encode_event(incept()).replace(b'"metadata":""', b'"metadata":"\\ud800"')
    [result] = registry.ingest([raw])
    assert result.status == "rejected"
    assert result.error is not None
    assert result.error.code == "malformed"
