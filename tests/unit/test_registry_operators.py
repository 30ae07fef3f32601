"""The Registry on protocol 2 subjects: the controllers take a seq back from a rogue operator
(fork choice rule 4 through the conflict path), the signer set in force at an older seq includes
the operators of that time, and the state's operators and governors survive a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyreg.core import builder as b
from keyreg.core.codec import encode_event
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.core.records import Domain, GovernanceRevocation, OperatorSet, PublishedKey, SignedEvent
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore
from keyreg.store.sql import SqlStore

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
NOW = 1_700_000_000
CTL = keccak(b"v2-registry-controller")
NEXT = keccak(b"v2-registry-next")
OP_A = keccak(b"v2-registry-operator-a")
OP_B = keccak(b"v2-registry-operator-b")
GOV_1 = address_of_private_key(keccak(b"v2-gov-1"))
GOV_2 = address_of_private_key(keccak(b"v2-gov-2"))


def _ops(secret: bytes) -> OperatorSet:
    return b.operator_set([address_of_private_key(secret)], 1, ["sig"], 86_400, 4)


def key(kid: str, t: int, not_after: int = 0) -> PublishedKey:
    return PublishedKey(kid, "Ed25519", keccak(kid.encode()), ("sig",), t, not_after)


def incept(operators_of: bytes | None = OP_A, governor: bytes = b"\x00" * 20) -> SignedEvent:
    ops = _ops(operators_of) if operators_of else b.NO_OPERATORS
    ev = b.inception(
        NOW - 1000, b.controller_set([CTL]), 1, b.controller_set([NEXT]), 1, [key("k0", NOW - 1000)], governor, "", ops
    )
    return b.sign_event(DOMAIN, ev, [CTL])


def op_update(subject: bytes, seq: int, prev: bytes, t: int, kid: str, secret: bytes) -> SignedEvent:
    return b.sign_event(DOMAIN, b.update(subject, seq, prev, t, publish=[key(kid, t, t + 3600)]), [secret])


@pytest.fixture
def registry() -> Registry:
    return Registry(DOMAIN, MemoryStore(), clock=lambda: NOW)


def test_controllers_take_a_seq_back_from_a_rogue_operator(registry: Registry) -> None:
    subject = registry.ingest([incept()])[0].subject
    assert subject is not None
    rogue = op_update(subject, 1, subject, NOW - 900, "rogue", OP_A)
    first = registry.ingest([rogue])[0]
    assert first.status == "accepted"
    assert first.digest is not None
    # the rogue branch grows, then the controllers answer at seq 1
    assert registry.ingest([op_update(subject, 2, first.digest, NOW - 800, "rogue2", OP_A)])[0].status == "accepted"
    ours = b.sign_event(DOMAIN, b.update(subject, 1, subject, NOW - 850, retire=[("k0", NOW)]), [CTL])
    result = registry.ingest([ours])[0]
    assert result.status == "duplicity"
    assert result.switched
    assert subject not in registry.disputed
    state = registry.state(subject)
    assert state is not None
    assert (state.seq, state.head_authority) == (1, "controllers")
    assert registry.verdict(subject, "rogue", NOW - 700).status == "unknown-key"
    # A second operator-signed competitor at seq 1 changes nothing: rule 4 keeps the controllers' event.
    again = registry.ingest([op_update(subject, 1, subject, NOW - 900, "rogue3", OP_A)])[0]
    assert again.status == "duplicity"
    assert not again.switched
    assert subject not in registry.disputed


def test_two_operator_signed_events_at_one_seq_are_disputed(registry: Registry) -> None:
    subject = registry.ingest([incept()])[0].subject
    assert subject is not None
    assert registry.ingest([op_update(subject, 1, subject, NOW - 900, "a", OP_A)])[0].status == "accepted"
    assert registry.ingest([op_update(subject, 1, subject, NOW - 900, "b", OP_A)])[0].status == "duplicity"
    assert subject in registry.disputed


def test_a_competitor_is_checked_against_the_operators_in_force_at_its_seq(registry: Registry) -> None:
    """Operators A (inception), then B (delegation at seq 1), then A again (delegation at seq 3). A
    competitor at seq 3 is judged against B, in force after seq 2, found by reading the stored log
    back past the head state (which names A): B's is valid evidence and loses to the delegation
    (rule 4); A's is refused, A was no operator there."""
    subject = registry.ingest([incept()])[0].subject
    assert subject is not None
    heads = [subject]

    def accept(ev: SignedEvent) -> None:
        result = registry.ingest([ev])[0]
        assert result.status == "accepted", result
        assert result.digest is not None
        heads.append(result.digest)

    accept(b.sign_event(DOMAIN, b.delegation(subject, 1, heads[-1], NOW - 900, _ops(OP_B)), [CTL]))
    accept(op_update(subject, 2, heads[-1], NOW - 800, "b1", OP_B))
    accept(b.sign_event(DOMAIN, b.delegation(subject, 3, heads[-1], NOW - 700, _ops(OP_A)), [CTL]))
    accept(op_update(subject, 4, heads[-1], NOW - 600, "a1", OP_A))
    by_a = registry.ingest([op_update(subject, 3, heads[2], NOW - 700, "a2", OP_A)])[0]
    assert by_a.status == "rejected"
    assert by_a.error is not None
    assert by_a.error.code == "unauthorized_signer"
    by_b = registry.ingest([op_update(subject, 3, heads[2], NOW - 700, "b2", OP_B)])[0]
    assert by_b.status == "duplicity"
    assert not by_b.switched
    assert subject not in registry.disputed
    state = registry.state(subject)
    assert state is not None
    assert state.seq == 4
    assert state.operators == _ops(OP_A)


def test_operators_and_governors_survive_a_restart_from_sqlite(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'node.db'}")
    registry = Registry(DOMAIN, store, clock=lambda: NOW)
    subject = registry.ingest([incept(governor=GOV_1)])[0].subject
    assert subject is not None
    rot = b.rotation(subject, 1, subject, NOW - 900, b.controller_set([NEXT]), 1, None, governor=GOV_2,
                     operators=_ops(OP_B))  # fmt: skip
    assert registry.ingest([b.sign_event(DOMAIN, rot, [NEXT])])[0].status == "accepted"
    state = registry.state(subject)
    assert state is not None
    assert state.governors == (GOV_1, GOV_2)
    # governance from the governor named at inception still counts after the move (protocol 8.3)
    registry.add_governance_revocations([GovernanceRevocation(subject, "k0", NOW - 10, b"\x00" * 32, 1, GOV_1)])
    store.close()
    store = SqlStore(f"sqlite:///{tmp_path / 'node.db'}")
    again = Registry(DOMAIN, store, clock=lambda: NOW)
    try:
        assert again.state(subject) == state
        assert again.verdict(subject, "k0", NOW).status == "revoked"
        next_up = op_update(subject, 2, state.head, NOW - 800, "b1", OP_B)
        assert again.ingest([encode_event(next_up)])[0].status == "accepted"
    finally:
        store.close()


def test_ingest_reports_and_audits_an_operator_signed_update(registry: Registry) -> None:
    subject = registry.ingest([incept()])[0].subject
    assert subject is not None
    result = registry.ingest([op_update(subject, 1, subject, NOW - 900, "a", OP_A)])[0]
    assert result.authority == "operators"
    assert result.to_dict()["authority"] == "operators"
    ours = b.sign_event(DOMAIN, b.update(subject, 2, result.digest or b"", NOW - 800, metadata="m"), [CTL])
    second = registry.ingest([ours])[0]
    assert second.authority == "controllers"
    assert "authority" not in second.to_dict()
    accepts = [r for r in registry.store.audit_records() if r.action == "accept"]
    assert [r.detail.get("authority") for r in accepts] == [None, "operators", None]
