"""KeyRegistry against a real anvil: every rule, and every way a relayer could try to cheat it.

Events are built and signed with keyreg.core.builder; every digest the contract computes must equal
keyreg.core.eip712.event_digest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from registry_fixture import Registry
from web3 import Web3

from keyreg.chain.deploy import ANVIL_CHAIN_ID, call_for, deploy_registry, event_input, recovery_call
from keyreg.core import builder
from keyreg.core.eip712 import TYPE_HASH, controller_commitment, domain_separator, event_digest
from keyreg.core.hashing import SECP256K1_N, address_of_private_key, keccak, sign_digest
from keyreg.core.merkle import SparseMerkleTree, verify_proof
from keyreg.core.records import ZERO20, ZERO32, Domain, Event, Inception, PublishedKey, SignedEvent

pytestmark = pytest.mark.anvil

T0 = 1_700_000_000


def secret(label: str) -> bytes:
    return keccak(label.encode())


def ed_key(key_id: str, n: int = 1) -> PublishedKey:
    return PublishedKey(key_id, "Ed25519", bytes([n]) * 32, ("sig",), T0, 0)


@dataclass
class Actor:
    """A subject as its controllers see it: who controls it now, who is committed next, its head."""

    current: list[bytes]
    threshold: int
    next: list[bytes]
    next_threshold: int
    subject: bytes = ZERO32
    seq: int = 0
    head: bytes = ZERO32
    timestamp: int = T0

    @property
    def controllers(self) -> tuple[bytes, ...]:
        return builder.controller_set(self.current)

    def advance(self, digest: bytes, seq: int, timestamp: int) -> None:
        self.head, self.seq, self.timestamp = digest, seq, timestamp


def make_actor(name: str, n: int = 1, threshold: int = 1, governor: bytes = ZERO20) -> tuple[Actor, Inception]:
    current = [secret(f"{name}/c{i}") for i in range(n)]
    nxt = [secret(f"{name}/n{i}") for i in range(n)]
    actor = Actor(current, threshold, nxt, threshold)
    return actor, actor_inception(actor, governor)


def actor_inception(actor: Actor, governor: bytes = ZERO20) -> Inception:
    """The inception of an actor (unsigned)."""
    return builder.inception(
        T0,
        builder.controller_set(actor.current),
        actor.threshold,
        builder.controller_set(actor.next),
        actor.next_threshold,
        keys=[ed_key("k1")],
        governor=governor,
        metadata="svc",
    )


def incept(reg: Registry, name: str, n: int = 1, threshold: int = 1, governor: bytes = ZERO20) -> Actor:
    actor, inc = make_actor(name, n, threshold, governor)
    signed = builder.sign_event(reg.domain, inc, actor.current[:threshold])
    receipt = reg.anchor(signed)
    digest = reg.digest(signed)
    [log] = reg.logs(receipt, "HeadAnchored")
    assert (log["subject"], log["seq"], log["digest"], log["kind"]) == (digest, 0, digest, 0)
    actor.subject = actor.head = digest
    return actor


def next_update(actor: Actor, key_id: str = "k2", dt: int = 10) -> Event:
    return builder.update(actor.subject, actor.seq + 1, actor.head, actor.timestamp + dt, publish=[ed_key(key_id, 2)])


def sign(reg: Registry, event: Event, secrets: list[bytes]) -> SignedEvent:
    return builder.sign_event(reg.domain, event, secrets)


def do_update(reg: Registry, actor: Actor, key_id: str = "k2") -> SignedEvent:
    signed = sign(reg, next_update(actor, key_id), actor.current[: actor.threshold])
    reg.anchor(signed, actor.controllers, actor.threshold)
    actor.advance(reg.digest(signed), signed.event.seq, signed.event.timestamp)
    return signed


def rotation_event(
    actor: Actor, dt: int = 10, seq: int | None = None, prev: bytes | None = None, governor: bytes = ZERO20
) -> Event:
    """Rotation revealing actor.next and committing to a fresh set derived from it (naming ``governor``)."""
    following = [keccak(s) for s in actor.next]
    return builder.rotation(
        actor.subject,
        actor.seq + 1 if seq is None else seq,
        actor.head if prev is None else prev,
        actor.timestamp + dt,
        builder.controller_set(actor.next),
        actor.next_threshold,
        builder.controller_set(following),
        actor.next_threshold,
        governor=governor,
    )


def rotated(actor: Actor, signed: SignedEvent, reg: Registry) -> None:
    actor.current, actor.threshold = actor.next, actor.next_threshold
    actor.next = [keccak(s) for s in actor.next]
    actor.advance(reg.digest(signed), signed.event.seq, signed.event.timestamp)


def high_s(sig: bytes) -> bytes:
    """The same signature with s replaced by n - s (and v flipped): valid for ecrecover, banned by EIP-2."""
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


# ---------------------------------------------------------------------------------------------
# Hashing agrees with the core


def test_type_hashes_and_domain_match_core(registry: Registry) -> None:
    f = registry.contract.functions
    assert f.DOMAIN_TYPEHASH().call() == TYPE_HASH["EIP712Domain"]
    assert f.INCEPTION_TYPEHASH().call() == TYPE_HASH["Inception"]
    assert f.UPDATE_TYPEHASH().call() == TYPE_HASH["Update"]
    assert f.ROTATION_TYPEHASH().call() == TYPE_HASH["Rotation"]
    assert f.REVOCATION_TYPEHASH().call() == TYPE_HASH["Revocation"]
    assert f.DELEGATION_TYPEHASH().call() == TYPE_HASH["Delegation"]
    assert f.OPERATORSET_TYPEHASH().call() == TYPE_HASH["OperatorSet"]
    assert f.domainSeparator().call() == domain_separator(registry.domain)


@pytest.mark.parametrize(("n", "threshold"), [(1, 1), (3, 2)])
def test_every_kind_digest_equals_core(registry: Registry, n: int, threshold: int) -> None:
    actor = incept(registry, f"kinds{n}", n, threshold)  # checks the inception digest
    upd = builder.update(
        actor.subject,
        1,
        actor.head,
        T0 + 1,
        publish=[ed_key("k2", 2), ed_key("k3", 3)],
        retire=[("k1", T0 + 500)],
        metadata="new metadata ✓",
    )
    rev = builder.revocation(actor.subject, 2, event_digest(registry.domain, upd), T0 + 2, "k2", T0 + 2, "lost")
    expected = []
    for ev in (upd, rev):
        signed = sign(registry, ev, actor.current[:threshold])
        receipt = registry.anchor(signed, actor.controllers, threshold)
        [log] = registry.logs(receipt, "HeadAnchored")
        assert log["digest"] == event_digest(registry.domain, ev)
        expected.append(log["kind"])
        actor.advance(log["digest"], ev.seq, ev.timestamp)
    assert expected == [1, 3]
    rot = sign(registry, rotation_event(actor), actor.next[:threshold])
    [log] = registry.logs(registry.anchor(rot), "HeadAnchored")
    assert (log["digest"], log["kind"], log["seq"]) == (event_digest(registry.domain, rot.event), 2, 3)
    rotated(actor, rot, registry)
    whole = builder.revocation(actor.subject, 4, actor.head, actor.timestamp, "", actor.timestamp, "retired")
    signed = sign(registry, whole, actor.current[:threshold])
    [log] = registry.logs(registry.anchor(signed, actor.controllers, threshold), "HeadAnchored")
    assert log["digest"] == event_digest(registry.domain, whole)
    assert registry.head(actor.subject) == (4, log["digest"])


def test_storage_layout_matches_docs(registry: Registry) -> None:
    """headSlot and the packed word are what offline verifiers prove with eth_getProof."""
    actor = incept(registry, "layout", governor=b"\x11" * 20)
    do_update(registry, actor)
    slot = registry.contract.functions.headSlot(actor.subject).call()
    assert slot == int.from_bytes(keccak(actor.subject + (0).to_bytes(32, "big")), "big")
    w3, addr = registry.w3, registry.contract.address
    packed = int.from_bytes(w3.eth.get_storage_at(addr, slot), "big")
    assert packed & (2**64 - 1) == 1  # seq
    assert (packed >> 64) & (2**64 - 1) == actor.timestamp
    assert (packed >> 128) & 0xFF == 1  # kind: update
    assert (packed >> 136) & 0xFF == 0  # not revoked
    assert bytes(w3.eth.get_storage_at(addr, slot + 1)) == actor.head
    assert bytes(w3.eth.get_storage_at(addr, slot + 2)) == controller_commitment(actor.controllers, 1)
    assert bytes(w3.eth.get_storage_at(addr, slot + 3)) == controller_commitment(builder.controller_set(actor.next), 1)
    assert bytes(w3.eth.get_storage_at(addr, slot + 4))[12:] == b"\x11" * 20
    proof = w3.eth.get_proof(addr, [slot, slot + 1], "latest")
    assert [int.from_bytes(bytes(p["value"]), "big") for p in proof["storageProof"]] == [
        packed,
        int.from_bytes(actor.head, "big"),
    ]


def test_anyone_may_relay(registry: Registry) -> None:
    actor, inc = make_actor("relay")
    relayer = registry.accounts[7]
    receipt = registry.anchor(sign(registry, inc, actor.current), sender=relayer)
    assert receipt["from"] == relayer


def test_anchor_events_sequence_in_one_call(registry: Registry) -> None:
    actor, inc = make_actor("seq", 3, 2)
    s_inc = sign(registry, inc, actor.current[:2])
    subject = registry.digest(s_inc)
    actor.subject = actor.head = subject
    upd = sign(registry, next_update(actor), actor.current[1:])
    actor.advance(registry.digest(upd), 1, upd.event.timestamp)
    rot = sign(registry, rotation_event(actor), actor.next)
    items = [(s_inc, None, None), (upd, actor.controllers, 2), (rot, None, None)]
    rotated(actor, rot, registry)
    rev_event = builder.revocation(subject, 3, actor.head, actor.timestamp, "k1", actor.timestamp)
    rev = sign(registry, rev_event, actor.current)
    items.append((rev, actor.controllers, 2))
    receipt = registry.anchor_events(items)
    logs = registry.logs(receipt, "HeadAnchored")
    assert [(log["seq"], log["kind"]) for log in logs] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert [log["digest"] for log in logs] == [registry.digest(s) for s, _, _ in items]
    # All or nothing: a bad event anywhere reverts the whole call.
    other, inc2 = make_actor("seq2")
    s2 = sign(registry, inc2, other.current)
    bad = list(event_input(upd, actor.controllers, 2))
    assert registry.error_of("anchorEvents", [[event_input(s2, None, None), tuple(bad)]]) == "WrongSeq"
    assert registry.head(registry.digest(s2)) == (0, ZERO32)


# ---------------------------------------------------------------------------------------------
# Forgery and authority


def test_wrong_signer(registry: Registry) -> None:
    actor = incept(registry, "ws")
    mallory = secret("mallory")
    forged = sign(registry, next_update(actor), [mallory])
    assert registry.anchor_error(forged, actor.controllers, 1) == "NotAController"
    # Listing mallory as "the controllers" does not help: the set must match the stored commitment.
    mset = builder.controller_set([mallory])
    assert registry.anchor_error(sign(registry, next_update(actor), [mallory]), mset, 1) == "ControllersMismatch"
    # An inception must be signed by its own controllers.
    _, inc = make_actor("ws2")
    assert registry.anchor_error(sign(registry, inc, [mallory])) == "NotAController"


def test_below_threshold(registry: Registry) -> None:
    actor = incept(registry, "bt", 3, 2)
    one = sign(registry, next_update(actor), actor.current[:1])
    assert registry.anchor_error(one, actor.controllers, 2) == "BelowThreshold"
    # Lying about the threshold changes the commitment, so it is caught too.
    assert registry.anchor_error(one, actor.controllers, 1) == "ControllersMismatch"
    a2, inc = make_actor("bt2", 3, 2)
    assert registry.anchor_error(sign(registry, inc, a2.current[:1])) == "BelowThreshold"
    do_update(registry, actor)  # 2 of 3 is enough
    actor.current = actor.current[::-1]
    do_update(registry, actor, "k3")  # any 2 of 3


def test_tampered_fields_break_the_signature(registry: Registry) -> None:
    actor = incept(registry, "tamper")
    signed = sign(registry, next_update(actor), actor.current)
    name, args = call_for(signed, actor.controllers, 1)
    body = list(args[5])
    body[0] = keccak(b"attacker key")  # a relayer swaps the published keys
    assert registry.error_of(name, [*args[:5], body, *args[6:]]) == "NotAController"
    assert registry.error_of(name, [*args[:4], args[4] + 1, *args[5:]]) == "NotAController"  # timestamp
    # The same words replayed as a revocation: non-canonical, and with a canonical body a wrong digest.
    assert registry.error_of(name, [3, *args[1:]]) == "NonCanonicalBody"
    as_revocation = [args[5][0], (T0).to_bytes(32, "big"), args[5][2], ZERO32]
    assert registry.error_of(name, [3, *args[1:5], as_revocation, *args[6:]]) == "NotAController"
    assert registry.error_of(name, [2, *args[1:]]) == "WrongKind"  # only update/revocation here
    inc_actor, inc = make_actor("tamper2", governor=b"\x22" * 20)
    name, args = call_for(sign(registry, inc, inc_actor.current))
    assert registry.error_of(name, [*args[:4], Web3.to_checksum_address(b"\x33" * 20), *args[5:]]) == "NotAController"


def test_replayed_event_is_rejected(registry: Registry) -> None:
    actor = incept(registry, "replay")
    signed = do_update(registry, actor)
    assert registry.anchor_error(signed, actor.controllers, 1) == "WrongSeq"
    _, inc = make_actor("replay")
    assert registry.anchor_error(sign(registry, inc, actor.current)) == "SubjectExists"


def test_signed_for_another_chain_or_contract(registry: Registry) -> None:
    actor = incept(registry, "net")
    event = next_update(actor)
    other_chain = Domain(ANVIL_CHAIN_ID + 1, registry.domain.verifying_contract)
    signed = builder.sign_event(other_chain, event, actor.current)
    assert registry.anchor_error(signed, actor.controllers, 1) == "NotAController"
    # A second registry on the same chain: events signed for it are invalid here and vice versa.
    other = deploy_registry(registry.w3)
    other_contract = Domain(ANVIL_CHAIN_ID, bytes.fromhex(other.address[2:]))
    signed = builder.sign_event(other_contract, event, actor.current)
    assert registry.anchor_error(signed, actor.controllers, 1) == "NotAController"
    a2, inc = make_actor("net2")
    assert registry.anchor_error(builder.sign_event(other_chain, inc, a2.current)) == "NotAController"


def test_stale_gap_and_wrong_prev(registry: Registry) -> None:
    actor = incept(registry, "chain")
    first = do_update(registry, actor)
    stale = builder.update(actor.subject, 1, first.event.prev, T0 + 50, publish=[ed_key("k9")])
    assert registry.anchor_error(sign(registry, stale, actor.current), actor.controllers, 1) == "WrongSeq"
    gap = builder.update(actor.subject, 3, actor.head, T0 + 50, publish=[ed_key("k9")])
    assert registry.anchor_error(sign(registry, gap, actor.current), actor.controllers, 1) == "WrongSeq"
    wrong_prev = builder.update(actor.subject, 2, actor.subject, T0 + 50, publish=[ed_key("k9")])
    assert registry.anchor_error(sign(registry, wrong_prev, actor.current), actor.controllers, 1) == "WrongPrev"
    backwards = builder.update(actor.subject, 2, actor.head, T0 - 1, publish=[ed_key("k9")])
    signed = sign(registry, backwards, actor.current)
    assert registry.anchor_error(signed, actor.controllers, 1) == "TimestampBeforeHead"
    unknown = builder.update(keccak(b"nobody"), 1, keccak(b"nobody"), T0, publish=[ed_key("k9")])
    assert registry.anchor_error(sign(registry, unknown, actor.current), actor.controllers, 1) == "UnknownSubject"


def test_signature_encoding_rules(registry: Registry) -> None:
    actor = incept(registry, "sigs", 3, 2)
    event = next_update(actor)
    digest = event_digest(registry.domain, event)
    ordered = sign(registry, event, actor.current[:2]).signatures
    cases = {
        "SignersNotAscending": (ordered[1], ordered[0]),  # descending
        "SignersNotAscending ": (ordered[0], ordered[0]),  # the same signer twice
        "HighS": (ordered[0], high_s(ordered[1])),
        "BadV": (ordered[0], ordered[1][:64] + b"\x01"),
        "BadSignaturesLength": (ordered[0], ordered[1][:64]),
        "InvalidSignature": (ordered[0], b"\x00" * 64 + b"\x1b"),
    }
    for expected, sigs in cases.items():
        signed = SignedEvent(event, sigs, registry.domain)
        assert registry.anchor_error(signed, actor.controllers, 2) == expected.strip(), expected
    # The untouched pair passes; the core agrees that high-s is invalid.
    assert sign_digest(actor.current[0], digest) in ordered
    assert registry.anchor_error(SignedEvent(event, ordered, registry.domain), actor.controllers, 2) is None


def test_inception_controller_set_rules(registry: Registry) -> None:
    actor, inc = make_actor("set", 3, 2)
    for controllers, threshold, expected in [
        (inc.controllers[::-1], 2, "BadControllerSet"),  # unsorted
        ((inc.controllers[0], inc.controllers[0]), 1, "BadControllerSet"),  # duplicate
        ((), 0, "BadControllerSet"),
        (inc.controllers, 0, "BadThreshold"),
        (inc.controllers, 4, "BadThreshold"),
    ]:
        bad = replace(inc, controllers=controllers, threshold=threshold)
        assert registry.anchor_error(sign(registry, bad, actor.current)) == expected


def test_events_after_whole_subject_revocation_are_refused(registry: Registry) -> None:
    actor = incept(registry, "closed")
    whole = sign(registry, builder.revocation(actor.subject, 1, actor.head, T0, "", T0, "closing"), actor.current)
    registry.anchor(whole, actor.controllers, 1)
    actor.advance(registry.digest(whole), 1, T0)
    assert registry.contract.functions.subjectState(actor.subject).call()[3] is True
    assert registry.anchor_error(sign(registry, next_update(actor), actor.current), actor.controllers, 1) == (
        "SubjectIsRevoked"
    )
    assert registry.anchor_error(sign(registry, rotation_event(actor), actor.next)) == "SubjectIsRevoked"


def test_non_canonical_body_words(registry: Registry) -> None:
    actor = incept(registry, "canon")
    rev = sign(registry, builder.revocation(actor.subject, 1, actor.head, T0, "k1", T0), actor.current)
    name, args = call_for(rev, actor.controllers, 1)
    body = list(args[5])
    assert registry.error_of(name, [*args[:5], [*body[:3], b"\x01" * 32], *args[6:]]) == "NonCanonicalBody"
    upd = sign(registry, next_update(actor), actor.current)
    name, args = call_for(upd, actor.controllers, 1)
    body = list(args[5])
    body[2] = (2).to_bytes(32, "big")  # setMetadata is a bool
    assert registry.error_of(name, [*args[:5], body, *args[6:]]) == "NonCanonicalBody"


# ---------------------------------------------------------------------------------------------
# Pre-rotation and recovery


def test_rotation_requires_the_precommitted_set(registry: Registry) -> None:
    actor = incept(registry, "rot", 3, 2)
    good = rotation_event(actor)
    # Revealing any other set (here: the current one) does not match the commitment.
    wrong_set = replace(good, controllers=actor.controllers)
    assert registry.anchor_error(sign(registry, wrong_set, actor.current[:2])) == "CommitmentMismatch"
    wrong_threshold = replace(good, threshold=3)
    assert registry.anchor_error(sign(registry, wrong_threshold, actor.next)) == "CommitmentMismatch"
    # The right set, signed by the *current* controllers (an attacker holding today's keys).
    assert registry.anchor_error(sign(registry, good, actor.current)) == "NotAController"
    assert registry.anchor_error(sign(registry, good, actor.next[:1])) == "BelowThreshold"
    signed = sign(registry, good, actor.next[:2])
    registry.anchor(signed)
    old = actor.controllers
    rotated(actor, signed, registry)
    # The old set lost control; the revealed set now signs updates.
    assert registry.anchor_error(sign(registry, next_update(actor), actor.current[:2]), old, 2) == "ControllersMismatch"
    do_update(registry, actor)
    state = registry.contract.functions.subjectState(actor.subject).call()
    assert state[5] == controller_commitment(actor.controllers, 2)
    assert state[6] == controller_commitment(builder.controller_set(actor.next), 2)


def test_rotation_without_commitment_is_impossible(registry: Registry) -> None:
    actor, _ = make_actor("final")
    inc = builder.inception(T0, actor.controllers, 1, None, keys=[ed_key("k1")])
    signed = sign(registry, inc, actor.current)
    registry.anchor(signed)
    actor.subject = actor.head = registry.digest(signed)
    assert registry.anchor_error(sign(registry, rotation_event(actor), actor.next)) == "NoNextCommitment"


def test_recovery_rotation_replaces_an_anchored_rogue_update(registry: Registry) -> None:
    actor = incept(registry, "recover", 3, 2)
    base_seq, base_head = actor.seq, actor.head
    # An attacker with two current keys anchors a rogue update at seq 1.
    rogue = sign(registry, next_update(actor, "evil"), actor.current[:2])
    registry.anchor(rogue, actor.controllers, 2)
    rogue_digest = registry.digest(rogue)
    assert registry.head(actor.subject) == (1, rogue_digest)
    # The owner's rotation at the same seq, extending the same prev, signed by the committed set.
    rot = sign(registry, rotation_event(actor, seq=base_seq + 1, prev=base_head), actor.next[:2])
    # A plain anchorRotation cannot: seq 1 is taken.
    assert registry.anchor_error(rot) == "WrongSeq"
    name, args = recovery_call(rot, rogue)
    # The displaced head must be revealed exactly.
    bad_body = list(args[-1])
    bad_body[0] = keccak(b"x")
    assert registry.error_of(name, [*args[:-1], bad_body]) == "DisplacedHeadMismatch"
    assert registry.error_of(name, [*args[:-3], 3, *args[-2:]]) == "DisplacedHeadMismatch"
    # Only the pre-committed set can recover.
    wrong = sign(registry, rot.event, actor.current[:2])
    assert registry.error_of(*recovery_call(wrong, rogue)) == "NotAController"
    receipt = registry.ok(name, args)
    [replaced] = registry.logs(receipt, "HeadReplaced")
    assert (replaced["seq"], replaced["replacedDigest"], replaced["digest"]) == (1, rogue_digest, registry.digest(rot))
    assert registry.head(actor.subject) == (1, registry.digest(rot))
    old = actor.controllers
    rotated(actor, rot, registry)
    # The attacker's keys are no longer controllers; a rotation head cannot be displaced.
    rogue2 = sign(registry, next_update(actor, "evil2"), [secret("recover/c0"), secret("recover/c1")])
    assert registry.anchor_error(rogue2, old, 2) == "ControllersMismatch"
    again = sign(registry, rotation_event(actor, seq=1, prev=base_head), actor.next[:2])
    assert registry.error_of(*recovery_call(again, rogue)) == "NotRecoverable"


def test_recovery_cannot_undo_a_whole_subject_revocation(registry: Registry) -> None:
    """ADR 0011: a whole-subject revocation is final; the pre-committed next keys cannot undo it."""
    actor = incept(registry, "recover2")
    prev_head = actor.head
    revocation = sign(registry, builder.revocation(actor.subject, 1, actor.head, T0, "", T0, "gone"), actor.current)
    registry.anchor(revocation, actor.controllers, 1)
    revocation_digest = registry.digest(revocation)
    rot = sign(registry, rotation_event(actor, seq=1, prev=prev_head), actor.next)
    assert registry.error_of(*recovery_call(rot, revocation)) == "SubjectIsRevoked"
    state = registry.contract.functions.subjectState(actor.subject).call()
    assert state[3] is True  # still revoked
    assert registry.head(actor.subject) == (1, revocation_digest)
    assert registry.anchor_error(rot) == "SubjectIsRevoked"  # nor by a plain rotation after it


def test_recovery_still_replaces_a_key_level_revocation(registry: Registry) -> None:
    actor = incept(registry, "recover3")
    prev_head = actor.head
    rogue = sign(registry, builder.revocation(actor.subject, 1, actor.head, T0, "k1", T0, "rogue"), actor.current)
    registry.anchor(rogue, actor.controllers, 1)
    rot = sign(registry, rotation_event(actor, seq=1, prev=prev_head), actor.next)
    receipt = registry.ok(*recovery_call(rot, rogue))
    [replaced] = registry.logs(receipt, "HeadReplaced")
    assert (replaced["replacedDigest"], replaced["digest"]) == (registry.digest(rogue), registry.digest(rot))
    assert registry.contract.functions.subjectState(actor.subject).call()[3] is False
    rotated(actor, rot, registry)
    do_update(registry, actor)


# ---------------------------------------------------------------------------------------------
# Governance hook


def test_only_the_named_governor_can_revoke(registry: Registry) -> None:
    governor = registry.accounts[3]
    actor = incept(registry, "gov", governor=bytes.fromhex(governor[2:]))
    plain = incept(registry, "nogov")
    reason = keccak(b"evidence")
    args = [actor.subject, "k1", T0 + 100, reason, 42]
    assert registry.error_of("revokeByGovernance", args, sender=registry.accounts[4]) == "NotGovernor"
    assert registry.error_of("revokeByGovernance", args) == "NotGovernor"
    assert registry.error_of("revokeByGovernance", [plain.subject, *args[1:]], sender=governor) == "NoGovernor"
    assert registry.error_of("revokeByGovernance", [keccak(b"?"), *args[1:]], sender=governor) == "UnknownSubject"
    assert registry.error_of("revokeByGovernance", [actor.subject, "k1", 0, reason, 42], sender=governor) == (
        "ZeroEffectiveTime"
    )
    receipt = registry.ok("revokeByGovernance", args, sender=governor)
    [log] = registry.logs(receipt, "GovernanceRevoked")
    assert dict(log) == {
        "subject": actor.subject,
        "keyIdHash": keccak(b"k1"),
        "keyId": "k1",
        "effectiveAt": T0 + 100,
        "reasonHash": reason,
        "proposalId": 42,
        "governor": governor,
    }
    f = registry.contract.functions
    assert f.governanceRevokedAt(actor.subject, keccak(b"k1")).call() == T0 + 100
    # Storage slot as documented in docs/contracts.md section 3 (provable with eth_getProof).
    inner = keccak(actor.subject + (3).to_bytes(32, "big"))
    slot = keccak(keccak(b"k1") + inner)
    assert int.from_bytes(registry.w3.eth.get_storage_at(registry.contract.address, slot), "big") == T0 + 100
    assert registry.error_of("revokeByGovernance", args, sender=governor) == "AlreadyRevokedEarlier"
    registry.ok("revokeByGovernance", [actor.subject, "k1", T0 + 50, reason, 43], sender=governor)
    registry.ok("revokeByGovernance", [actor.subject, "", T0 + 60, reason, 44], sender=governor)  # whole subject
    assert f.governanceRevokedAt(actor.subject, keccak(b"")).call() == T0 + 60
    # A rotation that restates the governor keeps it (protocol v2: a rotation sets the governor in
    # force; tests/chain/test_registry_v2.py covers changing and dropping it).
    rot = sign(registry, rotation_event(actor, governor=bytes.fromhex(governor[2:])), actor.next)
    registry.anchor(rot)
    assert f.subjectState(actor.subject).call()[7] == governor


# ---------------------------------------------------------------------------------------------
# Batch anchoring


def test_batch_root_is_stored_once(registry: Registry) -> None:
    tree = SparseMerkleTree()
    for i in range(50):
        tree.set(keccak(b"s%d" % i), i % 5, keccak(b"h%d" % i))
    root = tree.root
    submitter = registry.accounts[2]
    receipt = registry.ok("anchorBatch", [root, len(tree)], sender=submitter)
    [log] = registry.logs(receipt, "BatchAnchored")
    assert (log["batchId"], log["root"], log["count"], log["submitter"]) == (1, root, 50, submitter)
    block = registry.w3.eth.get_block(receipt["blockNumber"])
    f = registry.contract.functions
    assert f.batchOf(root).call() == [receipt["blockNumber"], block["timestamp"], submitter]
    assert f.batchCount().call() == 1
    word = int.from_bytes(
        registry.w3.eth.get_storage_at(registry.contract.address, keccak(root + (1).to_bytes(32, "big"))), "big"
    )
    assert (word & (2**48 - 1), (word >> 48) & (2**48 - 1), word >> 96) == (
        receipt["blockNumber"],
        block["timestamp"],
        int(submitter, 16),
    )
    # A verifier checks a head against the anchored root off-chain.
    subject = keccak(b"s7")
    assert verify_proof(root, subject, 2, keccak(b"h7"), tree.prove(subject))
    assert registry.error_of("anchorBatch", [root, 50]) == "BatchExists"
    assert registry.error_of("anchorBatch", [ZERO32, 0]) == "ZeroRoot"
    tree.set(keccak(b"s7"), 3, keccak(b"h7'"))
    receipt = registry.ok("anchorBatch", [tree.root, len(tree)])
    assert registry.logs(receipt, "BatchAnchored")[0]["batchId"] == 2


def test_reverting_relay_transaction_fails_on_chain(registry: Registry) -> None:
    """A cheating relayer's transaction is mined as a revert and changes nothing."""
    actor = incept(registry, "cheat")
    forged = sign(registry, next_update(actor, "evil"), [secret("mallory")])
    name, args = call_for(forged, actor.controllers, 1)
    receipt = registry.transact(name, args, sender=registry.accounts[9])
    assert receipt["status"] == 0
    assert registry.head(actor.subject) == (0, actor.subject)
    assert address_of_private_key(actor.current[0]) in actor.controllers
