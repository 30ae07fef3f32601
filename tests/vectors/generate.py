"""Deterministic generator of keyreg's protocol test vectors (docs/protocol.md section 13).

    python tests/vectors/generate.py           # (re)write the three JSON files next to this script
    python tests/vectors/generate.py --check   # exit 1 if regenerating would change any file

Every secret derives from a fixed label, every timestamp is fixed, and secp256k1 signing is
RFC 6979 deterministic, so the output is byte-for-byte stable. The generator asserts its own
expectations (valid logs replay, each invalid case raises the named error code, each verdict has
the named status): a vector file is only written if the core agrees with it.

The helpers here (``secret``, ``LogWriter``, ``state_summary``...) are also imported by the unit tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyreg.core import builder
from keyreg.core.codec import decode_event, dumps_canonical, event_to_obj, operator_set_to_obj
from keyreg.core.eip712 import TYPE_HASH, domain_separator, encode_type, event_digest, hash_struct, typed_data
from keyreg.core.errors import KeyregError
from keyreg.core.hashing import SECP256K1_N, address_of_private_key, keccak
from keyreg.core.keystate import key_verdict
from keyreg.core.log import SubjectState, replay
from keyreg.core.records import (
    NO_OPERATORS,
    ZERO20,
    Delegation,
    Domain,
    Event,
    GovernanceRevocation,
    Inception,
    OperatorSet,
    PublishedKey,
    Revocation,
    Rotation,
    SignedEvent,
    Update,
)

HERE = Path(__file__).resolve().parent
FORMAT_VERSION = 2  # protocol version 2 (docs/adr/0028-protocol-v2-operators-and-custody.md)
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z: every vector timestamp is T0 + offset

DEVNET = Domain(chain_id=31337, verifying_contract=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
SEPOLIA = Domain(chain_id=11155111, verifying_contract=bytes.fromhex("00000000000000000000000000000000000c0ffe"))


# ---------------------------------------------------------------------------------------------
# Deterministic material


def secret(label: str) -> bytes:
    """A fixed secp256k1 controller secret for a label (throwaway test keys, never real ones)."""
    return keccak(b"keyreg/test-vectors/v1/controller/" + label.encode())


def address(label: str) -> bytes:
    """The address of ``secret(label)``."""
    return address_of_private_key(secret(label))


def public_key(alg: str, label: str) -> bytes:
    """A real, deterministic public key of the given algorithm (published keys are data only)."""
    seed = keccak(b"keyreg/test-vectors/v1/service-key/" + label.encode())
    if alg == "Ed25519":
        return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    if alg == "secp256k1":
        return PrivateKey(seed).public_key.format(compressed=True)
    if alg == "P-256":
        priv = ec.derive_private_key(int.from_bytes(seed, "big") % (2**255), ec.SECP256R1())
        return priv.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    raise ValueError(alg)


def key(key_id: str, alg: str, purposes: Sequence[str], not_before: int, not_after: int = 0) -> PublishedKey:
    """A published key with a deterministic public key derived from its id."""
    return PublishedKey(key_id, alg, public_key(alg, key_id), tuple(purposes), not_before, not_after)


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def domain_obj(domain: Domain) -> dict[str, Any]:
    return {
        "name": domain.name,
        "version": domain.version,
        "chainId": domain.chain_id,
        "verifyingContract": hx(domain.verifying_contract),
    }


def domain_from_obj(obj: dict[str, Any]) -> Domain:
    """Inverse of :func:`domain_obj` (used by the tests)."""
    return Domain(obj["chainId"], bytes.fromhex(obj["verifyingContract"][2:]), obj["name"], obj["version"])


def sign(domain: Domain, event: Event, labels: Iterable[str]) -> SignedEvent:
    """Sign with the controllers named by labels (signatures ascending by signer)."""
    return builder.sign_event(domain, event, [secret(lbl) for lbl in labels])


# ---------------------------------------------------------------------------------------------
# Building a log


class LogWriter:
    """Builds one subject's log event by event, tracking seq and head."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.events: list[SignedEvent] = []
        self.subject = b""
        self.head = b""

    @property
    def seq(self) -> int:
        return len(self.events) - 1

    def append(self, signed: SignedEvent) -> SignedEvent:
        digest = event_digest(self.domain, signed.event)
        if isinstance(signed.event, Inception):
            self.subject = digest
        self.head = digest
        self.events.append(signed)
        return signed

    # Event constructors for the *next* event (not appended: invalid cases sign variants of them).
    def next_update(
        self,
        ts: int,
        publish: Sequence[PublishedKey] = (),
        retire: Sequence[tuple[str, int]] = (),
        metadata: str | None = None,
    ) -> Update:
        return builder.update(self.subject, self.seq + 1, self.head, ts, publish, retire, metadata)

    def next_rotation(
        self,
        ts: int,
        labels: Sequence[str],
        threshold: int,
        next_labels: Sequence[str] | None,
        next_threshold: int = 0,
        governor: bytes = ZERO20,
        operators: OperatorSet = NO_OPERATORS,
    ) -> Rotation:
        nxt = [address(lbl) for lbl in next_labels] if next_labels is not None else None
        return builder.rotation(
            self.subject,
            self.seq + 1,
            self.head,
            ts,
            [address(lbl) for lbl in labels],
            threshold,
            nxt,
            next_threshold or threshold,
            governor,
            operators,
        )

    def next_delegation(self, ts: int, operators: OperatorSet) -> Delegation:
        return builder.delegation(self.subject, self.seq + 1, self.head, ts, operators)

    def next_revocation(self, ts: int, key_id: str, effective_at: int, reason: str = "") -> Revocation:
        return builder.revocation(self.subject, self.seq + 1, self.head, ts, key_id, effective_at, reason)

    # Append helpers.
    def incept(
        self,
        ts: int,
        labels: Sequence[str],
        threshold: int,
        next_labels: Sequence[str] | None,
        next_threshold: int = 0,
        keys: Sequence[PublishedKey] = (),
        governor: bytes = ZERO20,
        metadata: str = "",
        signers: Sequence[str] | None = None,
        operators: OperatorSet = NO_OPERATORS,
    ) -> SignedEvent:
        nxt = [address(lbl) for lbl in next_labels] if next_labels is not None else None
        event = builder.inception(
            ts,
            [address(lbl) for lbl in labels],
            threshold,
            nxt,
            next_threshold or threshold,
            keys,
            governor,
            metadata,
            operators,
        )
        return self.append(sign(self.domain, event, signers if signers is not None else labels))

    def update(self, ts: int, signers: Sequence[str], **kw: Any) -> SignedEvent:
        return self.append(sign(self.domain, self.next_update(ts, **kw), signers))

    def rotate(self, ts: int, signers: Sequence[str], *args: Any, **kw: Any) -> SignedEvent:
        return self.append(sign(self.domain, self.next_rotation(ts, *args, **kw), signers))

    def revoke(self, ts: int, signers: Sequence[str], *args: Any, **kw: Any) -> SignedEvent:
        return self.append(sign(self.domain, self.next_revocation(ts, *args, **kw), signers))

    def delegate(self, ts: int, signers: Sequence[str], operators: OperatorSet) -> SignedEvent:
        return self.append(sign(self.domain, self.next_delegation(ts, operators), signers))


def operators_of(
    labels: Sequence[str], threshold: int, purposes: Sequence[str], max_validity: int, max_keys: int
) -> OperatorSet:
    """An operator set of the operators named by labels."""
    return builder.operator_set([address(lbl) for lbl in labels], threshold, purposes, max_validity, max_keys)


# ---------------------------------------------------------------------------------------------
# Summaries (what the vectors state as expected results)


def state_summary(state: SubjectState) -> dict[str, Any]:
    """The expected final state of a log, in JSON form."""
    return {
        "subject": hx(state.subject),
        "seq": state.seq,
        "head": hx(state.head),
        "timestamp": state.timestamp,
        "controllers": [hx(c) for c in state.controllers],
        "threshold": state.threshold,
        "nextCommitment": hx(state.next_commitment),
        "governor": hx(state.governor),
        "governors": [hx(g) for g in state.governors],
        "operators": operator_set_to_obj(state.operators),
        "metadata": state.metadata,
        "revokedAt": state.revoked_at,
        "revokedSeq": state.revoked_seq,
        "keys": {
            kid: {
                "alg": rec.key.alg,
                "publicKey": hx(rec.key.public_key),
                "purposes": list(rec.key.purposes),
                "publishedSeq": rec.published_seq,
                "validFrom": rec.valid_from,
                "notAfter": rec.not_after,
                "revokedAt": rec.revoked_at,
                "revokedSeq": rec.revoked_seq,
            }
            for kid, rec in sorted(state.keys.items())
        },
    }


def governance_obj(g: GovernanceRevocation) -> dict[str, Any]:
    return {
        "subject": hx(g.subject),
        "keyId": g.key_id,
        "effectiveAt": g.effective_at,
        "reasonHash": hx(g.reason_hash),
        "proposalId": str(g.proposal_id),
        "governor": hx(g.governor),
    }


def governance_from_obj(o: dict[str, Any]) -> GovernanceRevocation:
    """Inverse of :func:`governance_obj` (used by the tests)."""
    return GovernanceRevocation(
        subject=bytes.fromhex(o["subject"][2:]),
        key_id=o["keyId"],
        effective_at=o["effectiveAt"],
        reason_hash=bytes.fromhex(o["reasonHash"][2:]),
        proposal_id=int(o["proposalId"]),
        governor=bytes.fromhex(o["governor"][2:]),
    )


def verdict_obj(
    state: SubjectState,
    key_id: str,
    at: int,
    purpose: str | None,
    expected: str,
    governance: Sequence[GovernanceRevocation] = (),
) -> dict[str, Any]:
    v = key_verdict(state, state.subject, key_id, at, purpose, governance)
    if v.status != expected:
        raise AssertionError(f"verdict {key_id!r} at {at} ({purpose}): core says {v.status}, vector says {expected}")
    out: dict[str, Any] = {"keyId": key_id, "at": at, "purpose": purpose, "status": v.status}
    if v.revoked is not None:
        out["revoked"] = {"by": v.revoked.by, "since": v.revoked.since, "wholeSubject": v.revoked.whole_subject}
    return out


# ---------------------------------------------------------------------------------------------
# valid_logs.json


def _log_entry(
    name: str,
    description: str,
    w: LogWriter,
    labels: Sequence[str],
    verdicts: Sequence[tuple[str, int, str | None, str]],
    governance: Sequence[GovernanceRevocation] = (),
) -> dict[str, Any]:
    accepted = replay(w.events, w.domain)
    state = accepted[-1].state
    return {
        "name": name,
        "description": description,
        "domain": domain_obj(w.domain),
        "controllers": {lbl: {"secret": hx(secret(lbl)), "address": hx(address(lbl))} for lbl in labels},
        "subject": hx(w.subject),
        "events": [event_to_obj(s) for s in w.events],
        "digests": [hx(a.digest) for a in accepted],
        "signers": [[hx(s) for s in a.signers] for a in accepted],
        "authorities": [a.authority for a in accepted],
        "governance": [governance_obj(g) for g in governance],
        "final": state_summary(state),
        "verdicts": [verdict_obj(state, k, at, p, exp, governance) for k, at, p, exp in verdicts],
    }


def single_controller_log() -> dict[str, Any]:
    w = LogWriter(DEVNET)
    w.incept(
        T0,
        ["alice"],
        1,
        ["alice-next"],
        keys=[key("sig-2025", "Ed25519", ["sign"], T0)],
        metadata='{"name":"payments-api"}',
    )
    w.update(T0 + 100, ["alice"], publish=[key("sig-2026", "secp256k1", ["sign", "jwt"], T0 + 200)])
    w.update(T0 + 300, ["alice"], retire=[("sig-2025", T0 + 1000)])  # overlap window ends at T0+1000
    w.update(T0 + 400, ["alice"], metadata='{"name":"payments-api","owner":"team-pay"}')
    w.rotate(T0 + 500, ["alice-next"], ["alice-next"], 1, ["alice-next-2"])
    w.update(T0 + 600, ["alice-next"], publish=[key("enc-1", "P-256", ["encrypt"], T0 + 600, T0 + 10_000)])
    w.revoke(T0 + 700, ["alice-next"], "enc-1", T0 + 650, "key material leaked")
    return _log_entry(
        "single-controller",
        "1-of-1 controller: publish with overlap, retire, metadata, pre-committed rotation, key revocation",
        w,
        ["alice", "alice-next", "alice-next-2"],
        [
            ("sig-2025", T0 - 1, "sign", "not-yet-valid"),
            ("sig-2025", T0 + 50, "sign", "valid"),
            ("sig-2025", T0 + 999, None, "valid"),
            ("sig-2025", T0 + 1000, "sign", "expired"),
            ("sig-2025", T0 + 50, "encrypt", "wrong-purpose"),
            ("sig-2026", T0 + 150, "sign", "not-yet-valid"),
            ("sig-2026", T0 + 250, "jwt", "valid"),
            ("enc-1", T0 + 640, "encrypt", "valid"),
            ("enc-1", T0 + 650, "encrypt", "revoked"),
            ("enc-1", T0 + 20_000, None, "revoked"),
            ("enc-0", T0 + 640, None, "unknown-key"),
        ],
    )


def _gov_revocation(subject: bytes, key_id: str, at: int, governor: bytes, proposal: int) -> GovernanceRevocation:
    return GovernanceRevocation(
        subject=subject,
        key_id=key_id,
        effective_at=at,
        reason_hash=keccak(b"abuse of service key"),
        proposal_id=proposal,
        governor=governor,
    )


def multisig_log() -> dict[str, Any]:
    w = LogWriter(DEVNET)
    gov = address("dao-governor")
    labels = ["ops-1", "ops-2", "ops-3"]
    next_labels = ["ops-4", "ops-5", "ops-6"]
    w.incept(
        T0,
        labels,
        2,
        next_labels,
        2,
        keys=[key("tls-a", "P-256", ["tls"], T0), key("sig-a", "Ed25519", ["sign", "jwt"], T0)],
        governor=gov,
        metadata="",
        signers=["ops-1", "ops-3"],
    )
    w.update(T0 + 10, ["ops-1", "ops-2"], publish=[key("sig-b", "Ed25519", ["sign", "jwt"], T0 + 10)])
    w.rotate(T0 + 20, ["ops-4", "ops-6"], next_labels, 2, ["ops-7", "ops-8", "ops-9"], 2, governor=gov)
    w.update(T0 + 30, ["ops-4", "ops-5", "ops-6"], retire=[("sig-a", T0 + 40)], metadata="rotated")
    w.revoke(T0 + 50, ["ops-5", "ops-6"], "tls-a", T0 + 50, "host decommissioned")
    governance = [
        _gov_revocation(w.subject, "sig-b", T0 + 45, gov, 42),
        # Ignored: not the governor the subject named at inception.
        _gov_revocation(w.subject, "sig-a", T0 + 1, address("rogue-governor"), 7),
    ]
    return _log_entry(
        "multisig-2-of-3",
        "2-of-3 controllers, rotation to a new 2-of-3 set, governor named at inception, governance revocation "
        "(one from the named governor, one from another address that must be ignored)",
        w,
        [*labels, *next_labels],
        [
            ("sig-a", T0 + 5, "jwt", "valid"),
            ("sig-a", T0 + 40, "jwt", "expired"),
            ("sig-b", T0 + 44, "sign", "valid"),
            ("sig-b", T0 + 45, "sign", "revoked"),
            ("tls-a", T0 + 49, "tls", "valid"),
            ("tls-a", T0 + 50, "tls", "revoked"),
            ("tls-a", T0 + 49, "sign", "wrong-purpose"),
        ],
        governance,
    )


def subject_revocation_log() -> dict[str, Any]:
    w = LogWriter(DEVNET)
    w.incept(T0, ["carol"], 1, None, keys=[key("k1", "secp256k1", ["sign"], T0)])
    w.update(T0 + 10, ["carol"], publish=[key("k2", "Ed25519", ["sign"], T0 + 10, T0 + 500)])
    w.revoke(T0 + 100, ["carol"], "", T0 + 90, "service shut down")
    return _log_entry(
        "whole-subject-revocation",
        "no next commitment (cannot rotate); whole-subject revocation terminates the log and revokes every key",
        w,
        ["carol"],
        [
            ("k1", T0 + 89, "sign", "valid"),
            ("k1", T0 + 90, "sign", "revoked"),
            ("k2", T0 + 95, None, "revoked"),
            ("k2", T0 + 50, None, "valid"),
        ],
    )


def other_network_log() -> dict[str, Any]:
    w = LogWriter(SEPOLIA)
    w.incept(
        T0,
        ["alice"],
        1,
        ["alice-next"],
        keys=[key("sig-2025", "Ed25519", ["sign"], T0)],
        metadata='{"name":"payments-api"}',
    )
    w.update(T0 + 100, ["alice"], publish=[key("sig-2026", "secp256k1", ["sign", "jwt"], T0 + 200)])
    return _log_entry(
        "other-network",
        "the first two events of single-controller under another chainId and contract: other digests, "
        "another subject id (domain separation)",
        w,
        ["alice", "alice-next"],
        [("sig-2025", T0 + 50, "sign", "valid")],
    )


DAY = 86_400


def operator_log() -> dict[str, Any]:
    w = LogWriter(DEVNET)
    ops = operators_of(["node-op"], 1, ["sign", "jwt"], 30 * DAY, 2)
    w.incept(
        T0,
        ["owner"],
        1,
        ["owner-next"],
        keys=[key("sig-0", "Ed25519", ["sign"], T0, T0 + 10 * DAY), key("enc-0", "P-256", ["encrypt"], T0)],
        operators=ops,
    )
    # The operator publishes within its limits: purposes in scope, expiry within maxValidity.
    w.update(T0 + 100, ["node-op"], publish=[key("sig-1", "Ed25519", ["sign", "jwt"], T0 + 100, T0 + 100 + 30 * DAY)])
    # It retires an in-scope key (the controllers' sig-0) early, then publishes the next one: the
    # expired/retired key no longer counts against maxKeys 2.
    w.update(T0 + 200, ["node-op"], retire=[("sig-0", T0 + 300)])
    w.update(T0 + 400, ["node-op"], publish=[key("sig-2", "secp256k1", ["sign"], T0 + 400, T0 + 400 + DAY)])
    # The controllers are bound by no operator limit: a key without expiry, any purpose, metadata.
    w.update(
        T0 + 500, ["owner"], publish=[key("sig-ctl", "Ed25519", ["sign"], T0 + 500)], metadata='{"name":"payments"}'
    )
    w.revoke(T0 + 600, ["owner"], "sig-1", T0 + 550, "operator host compromised")
    return _log_entry(
        "operator-set",
        "1-of-1 controller off the node and a 1-of-1 operator on it (purposes sign/jwt, maxValidity 30 days, "
        "maxKeys 2): the operator publishes, retires an in-scope key and publishes again within its limits; "
        "the controllers publish without limits and revoke the operator's key",
        w,
        ["owner", "owner-next", "node-op"],
        [
            ("sig-1", T0 + 150, "jwt", "valid"),
            ("sig-1", T0 + 550, "jwt", "revoked"),
            ("sig-0", T0 + 299, "sign", "valid"),
            ("sig-0", T0 + 300, "sign", "expired"),
            ("sig-2", T0 + 500, "sign", "valid"),
            ("sig-2", T0 + 400 + DAY, "sign", "expired"),
            ("sig-ctl", T0 + 100 * DAY, "sign", "valid"),
            ("enc-0", T0 + 1000, "encrypt", "valid"),
        ],
    )


def delegation_log() -> dict[str, Any]:
    w = LogWriter(DEVNET)
    w.incept(T0, ["dana"], 1, ["dana-next"], keys=[key("sig-0", "Ed25519", ["sign"], T0)])
    # The controllers name a 2-of-3 operator set by delegation; the operators then publish with two signatures.
    w.delegate(T0 + 10, ["dana"], operators_of(["op-a", "op-b", "op-c"], 2, ["sign"], 7 * DAY, 4))
    w.update(T0 + 20, ["op-a", "op-c"], publish=[key("sig-op", "Ed25519", ["sign"], T0 + 20, T0 + 20 + 7 * DAY)])
    # A second delegation drops the operator set: only the controllers may sign from now on.
    w.delegate(T0 + 30, ["dana"], NO_OPERATORS)
    w.update(T0 + 40, ["dana"], retire=[("sig-op", T0 + 50)])
    return _log_entry(
        "delegation",
        "delegation (kind 4) names a 2-of-3 operator set, the operators publish with 2 signatures, a second "
        "delegation drops the set, the controller retires the operators' key",
        w,
        ["dana", "dana-next", "op-a", "op-b", "op-c"],
        [("sig-op", T0 + 45, "sign", "valid"), ("sig-op", T0 + 50, "sign", "expired")],
    )


def governor_change_log() -> dict[str, Any]:
    w = LogWriter(DEVNET)
    old_gov, new_gov = address("dao-old"), address("dao-new")
    w.incept(
        T0,
        ["erin-1", "erin-2"],
        2,
        ["erin-3", "erin-4"],
        1,
        keys=[
            key("k-a", "Ed25519", ["sign"], T0),
            key("k-b", "Ed25519", ["sign"], T0),
            key("k-c", "P-256", ["tls"], T0),
        ],
        governor=old_gov,
        operators=operators_of(["erin-op-1"], 1, ["sign"], DAY, 8),
    )
    # The rotation moves the subject to a new DAO and replaces the operator set.
    w.rotate(
        T0 + 100,
        ["erin-3"],
        ["erin-3", "erin-4"],
        1,
        ["erin-5"],
        1,
        governor=new_gov,
        operators=operators_of(["erin-op-2", "erin-op-3"], 1, ["sign", "tls"], 2 * DAY, 16),
    )
    w.update(T0 + 200, ["erin-op-3"], publish=[key("k-d", "P-256", ["tls"], T0 + 200, T0 + 200 + DAY)])
    governance = [
        # Made by the old DAO while it was in force: still applies after the move (section 8.3).
        _gov_revocation(w.subject, "k-a", T0 + 50, old_gov, 1),
        _gov_revocation(w.subject, "k-b", T0 + 150, new_gov, 2),
        # Never named by an establishment event of the log: ignored.
        _gov_revocation(w.subject, "k-c", T0 + 10, address("rogue-governor"), 3),
    ]
    return _log_entry(
        "rotation-changes-governor-and-operators",
        "a rotation names a new governor and a new operator set; governance revocations of the old and of the "
        "new governor both apply, one of an address never named is ignored; the new operators publish",
        w,
        ["erin-1", "erin-2", "erin-3", "erin-4", "erin-5", "erin-op-1", "erin-op-2", "erin-op-3"],
        [
            ("k-a", T0 + 49, "sign", "valid"),
            ("k-a", T0 + 50, "sign", "revoked"),
            ("k-b", T0 + 150, "sign", "revoked"),
            ("k-c", T0 + 1000, "tls", "valid"),
            ("k-d", T0 + 300, "tls", "valid"),
        ],
        governance,
    )


def valid_logs() -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "description": "Complete valid logs. Replaying 'events' in order under 'domain' MUST accept each event, "
        "give 'digests', 'signers' and 'authorities' (who signed: controllers or operators), the subject id "
        "'subject', the state 'final', and each verdict (governance revocations from 'governance' applied).",
        "logs": [
            single_controller_log(),
            multisig_log(),
            subject_revocation_log(),
            other_network_log(),
            operator_log(),
            delegation_log(),
            governor_change_log(),
        ],
    }


# ---------------------------------------------------------------------------------------------
# invalid.json


def _flip_high_s(sig: bytes) -> bytes:
    s = int.from_bytes(sig[32:64], "big")
    v = 27 if sig[64] == 28 else 28
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((v,))


def _expect(domain: Domain, prior: list[SignedEvent], raw: bytes, code: str, now: int | None) -> None:
    from keyreg.core.log import apply_event

    state = replay(prior, domain)[-1].state if prior else None
    try:
        apply_event(state, decode_event(raw), domain, now=now)
    except KeyregError as exc:
        if exc.code != code:
            raise AssertionError(f"expected {code}, core raised {exc.code}: {exc}") from exc
        return
    raise AssertionError(f"expected {code}, core accepted the event")


def invalid_cases() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []

    def case(
        name: str,
        description: str,
        prior: list[SignedEvent],
        code: str,
        event: SignedEvent | dict[str, Any] | None = None,
        raw: str | None = None,
        now: int | None = None,
        domain: Domain = DEVNET,
    ) -> None:
        entry: dict[str, Any] = {
            "name": name,
            "description": description,
            "domain": domain_obj(domain),
            "prior": [event_to_obj(s) for s in prior],
        }
        if raw is not None:
            entry["eventRaw"] = raw
            data = raw.encode()
        else:
            obj = event_to_obj(event) if isinstance(event, SignedEvent) else event
            entry["event"] = obj
            data = dumps_canonical(obj)
        entry["now"] = now
        entry["code"] = code
        _expect(domain, prior, data, code, now)
        cases.append(entry)

    # Base logs the cases extend.
    a = LogWriter(DEVNET)
    a.incept(T0, ["alice"], 1, ["alice-next"], keys=[key("sig-1", "Ed25519", ["sign"], T0)])
    a.update(T0 + 10, ["alice"], publish=[key("sig-2", "Ed25519", ["sign"], T0 + 10)])
    pa = list(a.events)

    m = LogWriter(DEVNET)
    m.incept(T0, ["ops-1", "ops-2", "ops-3"], 2, ["ops-4", "ops-5", "ops-6"], 2, signers=["ops-1", "ops-2"])
    pm = list(m.events)

    upd = a.next_update(T0 + 20, publish=[key("sig-3", "P-256", ["sign"], T0 + 20)])
    good = sign(DEVNET, upd, ["alice"])

    case(
        "wrong-signer",
        "update signed by a key that is not a controller",
        pa,
        "unauthorized_signer",
        sign(DEVNET, upd, ["mallory"]),
    )
    case(
        "below-threshold",
        "2-of-3 subject, update signed by one controller",
        pm,
        "below_threshold",
        sign(DEVNET, m.next_update(T0 + 5, metadata="x"), ["ops-2"]),
    )
    case("no-signatures", "update carrying no signature at all", pa, "below_threshold", replace(good, signatures=()))
    tampered = event_to_obj(good)
    tampered["timestamp"] += 1
    case(
        "tampered-field",
        "a signed field changed after signing: the signature recovers another address",
        pa,
        "unauthorized_signer",
        tampered,
    )
    tampered = event_to_obj(good)
    tampered["publish"][0]["purposes"] = ["sign", "encrypt"]
    case(
        "tampered-nested-field", "a purpose added to a published key after signing", pa, "unauthorized_signer", tampered
    )
    case(
        "bad-prev",
        "prev is not the digest of the head",
        pa,
        "chain_broken",
        sign(DEVNET, replace(upd, prev=keccak(b"not the head")), ["alice"]),
    )
    case("gap", "seq skips one", pa, "chain_broken", sign(DEVNET, replace(upd, seq=upd.seq + 1), ["alice"]))
    case(
        "wrong-subject",
        "prev extends this subject's head but the subject field names another",
        pa,
        "chain_broken",
        sign(DEVNET, replace(upd, subject=keccak(b"another subject")), ["alice"]),
    )
    case("replay-head", "the head event re-sent", pa, "stale", pa[-1])
    a2 = LogWriter(DEVNET)
    for s in pa:
        a2.append(s)
    a2.update(T0 + 20, ["alice"], metadata="m")
    case("replay-old", "an older event re-sent after the log moved on", list(a2.events), "stale", pa[1])
    case("replay-inception", "an inception re-sent for a known subject", pa, "stale", pa[0])
    case("unknown-subject", "an update with no inception known", [], "unknown_subject", good)
    case(
        "wrong-chain-id",
        "signed for (and labelled) chainId 1; this registry is 31337",
        pa,
        "wrong_network",
        sign(Domain(1, DEVNET.verifying_contract), upd, ["alice"]),
    )
    case(
        "wrong-contract",
        "signed for another registry contract",
        pa,
        "wrong_network",
        sign(Domain(DEVNET.chain_id, b"\x11" * 20), upd, ["alice"]),
    )
    relabelled = event_to_obj(sign(Domain(1, DEVNET.verifying_contract), upd, ["alice"]))
    relabelled["chainId"] = DEVNET.chain_id
    case(
        "cross-chain-relabelled",
        "signed for chainId 1, envelope relabelled to 31337: the digest differs, "
        "so the signature recovers another address",
        pa,
        "unauthorized_signer",
        relabelled,
    )
    case(
        "commitment-mismatch",
        "rotation reveals a set other than the committed one",
        pa,
        "commitment_mismatch",
        sign(DEVNET, a.next_rotation(T0 + 20, ["mallory"], 1, ["mallory"]), ["mallory"]),
    )
    case(
        "commitment-threshold-mismatch",
        "rotation reveals the committed addresses with another threshold",
        pm,
        "commitment_mismatch",
        sign(DEVNET, m.next_rotation(T0 + 5, ["ops-4", "ops-5", "ops-6"], 1, None), ["ops-4"]),
    )
    c = LogWriter(DEVNET)
    c.incept(T0, ["carol"], 1, None, keys=[key("k1", "Ed25519", ["sign"], T0)])
    case(
        "rotation-without-commitment",
        "the subject committed to no next set (zero), so it cannot rotate",
        list(c.events),
        "commitment_mismatch",
        sign(DEVNET, c.next_rotation(T0 + 5, ["carol"], 1, None), ["carol"]),
    )
    case(
        "rotation-below-threshold",
        "rotation to the committed 2-of-3 set signed by one of the new controllers",
        pm,
        "below_threshold",
        sign(DEVNET, m.next_rotation(T0 + 5, ["ops-4", "ops-5", "ops-6"], 2, None), ["ops-5"]),
    )
    case(
        "rotation-signed-by-old-set",
        "rotation signed by the current controllers, not the revealed ones",
        pm,
        "unauthorized_signer",
        sign(DEVNET, m.next_rotation(T0 + 5, ["ops-4", "ops-5", "ops-6"], 2, None), ["ops-1", "ops-2"]),
    )
    obj = event_to_obj(good)
    obj["comment"] = "hi"
    case("unknown-field", "an envelope field the protocol does not define", pa, "malformed", obj)
    obj = event_to_obj(good)
    obj["publish"][0]["kid"] = "x"
    case("unknown-nested-field", "an unknown field inside a published key", pa, "malformed", obj)
    obj = event_to_obj(good)
    del obj["metadata"]
    case("missing-field", "a required field left out", pa, "malformed", obj)
    text = dumps_canonical(event_to_obj(good)).decode()
    case(
        "duplicate-json-key",
        "the same key twice in one JSON object (parsers disagree on which wins)",
        pa,
        "malformed",
        raw=text[:-1] + ',"timestamp":' + str(T0 + 21) + "}",
    )
    case(
        "uppercase-hex",
        "hex must be lowercase (canonical wire form)",
        pa,
        "malformed",
        raw=text.replace(hx(a.head), "0x" + a.head.hex().upper()),
    )
    case("wrong-type", "seq as a string", pa, "malformed", {**event_to_obj(good), "seq": str(upd.seq)})
    case(
        "oversized-event",
        "more than 65536 bytes on the wire",
        pa,
        "oversized",
        raw=text[:-1] + ',"pad":"' + "x" * 65536 + '"}',
    )
    case(
        "oversized-metadata",
        "metadata over 4096 bytes",
        pa,
        "oversized",
        sign(DEVNET, a.next_update(T0 + 20, metadata="m" * 4097), ["alice"]),
    )
    long_key = replace(key("k9", "Ed25519", ["sign"], T0), public_key=b"\x01" * 33)
    case(
        "bad-key-length",
        "an Ed25519 public key that is not 32 bytes",
        pa,
        "malformed",
        sign(DEVNET, a.next_update(T0 + 20, publish=[long_key]), ["alice"]),
    )
    case(
        "unsupported-algorithm",
        "an algorithm outside Ed25519 / secp256k1 / P-256",
        pa,
        "malformed",
        sign(
            DEVNET, a.next_update(T0 + 20, publish=[replace(key("k9", "Ed25519", ["sign"], T0), alg="RSA")]), ["alice"]
        ),
    )
    for alg, not_a_point in (("P-256", b"\x02" + b"\xff" * 32), ("secp256k1", b"\x02" + b"\x00" * 32)):
        bad_point = replace(key("k9", alg, ["sign"], T0), public_key=not_a_point)
        case(
            f"not-a-curve-point-{alg.lower()}",
            f"a {alg} public key whose bytes are no point of the curve",
            pa,
            "malformed",
            sign(DEVNET, a.next_update(T0 + 20, publish=[bad_point]), ["alice"]),
        )
    case(
        "high-s-signature",
        "the same signature with s replaced by n - s (EIP-2 malleability)",
        pa,
        "bad_signature",
        replace(good, signatures=(_flip_high_s(good.signatures[0]),)),
    )
    case(
        "bad-v",
        "v must be 27 or 28",
        pa,
        "bad_signature",
        replace(good, signatures=(good.signatures[0][:64] + bytes((good.signatures[0][64] - 27,)),)),
    )
    two = sign(DEVNET, m.next_update(T0 + 5, metadata="x"), ["ops-1", "ops-3"])
    case(
        "unsorted-signatures",
        "two valid controller signatures in descending signer order",
        pm,
        "unauthorized_signer",
        replace(two, signatures=tuple(reversed(two.signatures))),
    )
    case(
        "duplicate-signature",
        "one controller's signature twice to reach a threshold of 2",
        pm,
        "unauthorized_signer",
        replace(two, signatures=(two.signatures[0], two.signatures[0])),
    )
    case(
        "retire-unknown-key",
        "retire a key id never published",
        pa,
        "invalid_transition",
        sign(DEVNET, a.next_update(T0 + 20, retire=[("nope", T0 + 100)]), ["alice"]),
    )
    case(
        "retire-retroactive",
        "retirement not-after earlier than the event timestamp",
        pa,
        "invalid_transition",
        sign(DEVNET, a.next_update(T0 + 20, retire=[("sig-1", T0 + 19)]), ["alice"]),
    )
    e = LogWriter(DEVNET)
    e.incept(T0, ["erin"], 1, None, keys=[key("k1", "Ed25519", ["sign"], T0, T0 + 100)])
    case(
        "retire-extends",
        "retirement that would extend a key's not-after",
        list(e.events),
        "invalid_transition",
        sign(DEVNET, e.next_update(T0 + 20, retire=[("k1", T0 + 200)]), ["erin"]),
    )
    case(
        "republished-key-id",
        "publish a key id that was already published (ids are never reused)",
        pa,
        "invalid_transition",
        sign(DEVNET, a.next_update(T0 + 20, publish=[key("sig-1", "P-256", ["sign"], T0)]), ["alice"]),
    )
    case(
        "revoke-unknown-key",
        "revoke a key id never published",
        pa,
        "invalid_transition",
        sign(DEVNET, a.next_revocation(T0 + 20, "nope", T0 + 20), ["alice"]),
    )
    r = LogWriter(DEVNET)
    for s in pa:
        r.append(s)
    r.revoke(T0 + 20, ["alice"], "", T0 + 20, "shut down")
    case(
        "event-after-subject-revocation",
        "any event after a whole-subject revocation",
        list(r.events),
        "invalid_transition",
        sign(DEVNET, r.next_update(T0 + 30, metadata="back"), ["alice"]),
    )
    case(
        "timestamp-backwards",
        "timestamp earlier than the previous event's",
        pa,
        "timestamp",
        sign(DEVNET, a.next_update(T0 + 9, metadata="x"), ["alice"]),
    )
    case(
        "timestamp-future",
        "admission: timestamp more than 300 s ahead of the node's clock",
        pa,
        "timestamp",
        sign(DEVNET, a.next_update(T0 + 1000, metadata="x"), ["alice"]),
        now=T0 + 699,
    )
    case(
        "update-does-nothing",
        "an update that publishes, retires and sets nothing",
        pa,
        "malformed",
        sign(DEVNET, a.next_update(T0 + 20), ["alice"]),
    )
    _operator_cases(case)
    return {
        "format": FORMAT_VERSION,
        "description": "Invalid events. After replaying 'prior' (all valid) under 'domain', decoding the event "
        "('event' encoded canonically, or the exact UTF-8 bytes of 'eventRaw') and applying it with the clock "
        "'now' (null: no admission clock check) MUST fail with error 'code'.",
        "cases": cases,
    }


def _operator_cases(case: Callable[..., None]) -> None:
    """Invalid cases of protocol 2: operator limits, who may sign what, operator set shapes."""
    o = LogWriter(DEVNET)
    o.incept(
        T0,
        ["owner"],
        1,
        ["owner-next"],
        keys=[key("sig-0", "Ed25519", ["sign"], T0, T0 + DAY), key("enc-0", "P-256", ["encrypt"], T0)],
        operators=operators_of(["node-op"], 1, ["sign"], DAY, 2),
    )
    po = list(o.events)
    ts = T0 + 10

    def op_update(**kw: Any) -> SignedEvent:
        return sign(DEVNET, o.next_update(ts, **kw), ["node-op"])

    case("operator-sets-metadata", "an operator-signed update that sets metadata", po, "operator_limit",
         op_update(metadata="x"))  # fmt: skip
    case("operator-purpose-outside-scope", "an operator publishes a key with a purpose outside its purposes", po,
         "operator_limit", op_update(publish=[key("k1", "Ed25519", ["sign", "encrypt"], ts, ts + 60)]))  # fmt: skip
    case("operator-no-expiry", "an operator publishes a key without notAfter", po, "operator_limit",
         op_update(publish=[key("k1", "Ed25519", ["sign"], ts)]))  # fmt: skip
    case("operator-beyond-max-validity", "an operator publishes a key expiring after timestamp + maxValidity", po,
         "operator_limit", op_update(publish=[key("k1", "Ed25519", ["sign"], ts, ts + DAY + 1)]))  # fmt: skip
    case("operator-over-max-keys", "an operator publishes a second and third live in-scope key with maxKeys 2", po,
         "operator_limit", op_update(publish=[key("k1", "Ed25519", ["sign"], ts, ts + 60),
                                              key("k2", "Ed25519", ["sign"], ts, ts + 60)]))  # fmt: skip
    case("operator-retires-out-of-scope-key", "an operator retires the controllers' encryption key", po,
         "operator_limit", op_update(retire=[("enc-0", ts + 60)]))  # fmt: skip
    case("operator-signs-key-revocation", "a key revocation signed by the operator", po, "unauthorized_signer",
         sign(DEVNET, o.next_revocation(ts, "sig-0", ts), ["node-op"]))  # fmt: skip
    case("operator-signs-subject-revocation", "a whole-subject revocation signed by the operator", po,
         "unauthorized_signer", sign(DEVNET, o.next_revocation(ts, "", ts), ["node-op"]))  # fmt: skip
    case("operator-signs-rotation", "the rotation revealing the committed set signed by the operator", po,
         "unauthorized_signer", sign(DEVNET, o.next_rotation(ts, ["owner-next"], 1, None), ["node-op"]))  # fmt: skip
    case("operator-signs-delegation", "a delegation naming another operator, signed by the operator", po,
         "unauthorized_signer",
         sign(DEVNET, o.next_delegation(ts, operators_of(["mallory"], 1, ["sign"], DAY, 2)), ["node-op"]))  # fmt: skip
    case("controller-and-operator-mixed", "an update signed by the controller and the operator together", po,
         "unauthorized_signer", sign(DEVNET, o.next_update(ts, metadata="x"), ["owner", "node-op"]))  # fmt: skip
    q = LogWriter(DEVNET)
    q.incept(T0, ["owner"], 1, None, operators=operators_of(["op-a", "op-b"], 2, ["sign"], DAY, 2))
    case("operator-below-threshold", "a 2-of-2 operator set, update signed by one operator", list(q.events),
         "below_threshold",
         sign(DEVNET, q.next_update(ts, publish=[key("k1", "Ed25519", ["sign"], ts, ts + 60)]), ["op-b"]))  # fmt: skip

    good_ops = operators_of(["op-a", "op-b"], 1, ["sign"], DAY, 2)
    pa = list(LogWriter(DEVNET).events)
    shapes: list[tuple[str, str, OperatorSet, str]] = [
        ("operators-none-with-limits", "no operators but a non-zero threshold",
         replace(NO_OPERATORS, threshold=1), "malformed"),
        ("operators-none-with-purposes", "no operators but purposes", replace(NO_OPERATORS, purposes=("sign",)),
         "malformed"),
        ("operators-unsorted", "operators in descending order",
         replace(good_ops, operators=tuple(reversed(good_ops.operators))), "malformed"),
        ("operators-duplicate", "one operator twice",
         replace(good_ops, operators=(good_ops.operators[0], good_ops.operators[0])), "malformed"),
        ("operators-threshold-zero", "operator threshold 0", replace(good_ops, threshold=0), "malformed"),
        ("operators-threshold-above-n", "operator threshold 3 of 2", replace(good_ops, threshold=3), "malformed"),
        ("operators-no-purposes", "an operator set with no purpose", replace(good_ops, purposes=()), "malformed"),
        ("operators-bad-purpose", "a purpose outside [a-z0-9._:-]", replace(good_ops, purposes=("Sign",)),
         "malformed"),
        ("operators-duplicate-purpose", "the same purpose twice", replace(good_ops, purposes=("sign", "sign")),
         "malformed"),
        ("operators-zero-validity", "maxValidity 0", replace(good_ops, max_validity=0), "malformed"),
        ("operators-zero-max-keys", "maxKeys 0", replace(good_ops, max_keys=0), "malformed"),
        ("operators-max-keys-over-1024", "maxKeys 1025", replace(good_ops, max_keys=1025), "malformed"),
        ("operators-over-16", "17 operators",
         replace(good_ops, operators=tuple(sorted(address(f"op-{i}") for i in range(17)))), "oversized"),
    ]  # fmt: skip
    for name, description, bad, code in shapes:
        inc = builder.inception(T0, [address("owner")], 1, operators=bad)
        case(f"inception-{name}", f"inception: {description}", pa, code, sign(DEVNET, inc, ["owner"]))
    d = LogWriter(DEVNET)
    d.incept(T0, ["owner"], 1, None)
    case("delegation-operators-unsorted", "delegation: operators in descending order", list(d.events), "malformed",
         sign(DEVNET, d.next_delegation(ts, replace(good_ops, operators=tuple(reversed(good_ops.operators)))),
              ["owner"]))  # fmt: skip
    obj = event_to_obj(sign(DEVNET, d.next_delegation(ts, good_ops), ["owner"]))
    obj["operators"]["maxkeys"] = obj["operators"].pop("maxKeys")
    case("operator-set-unknown-field", "an operator set with a misspelt field", list(d.events), "malformed", obj)
    obj = event_to_obj(sign(DEVNET, d.next_delegation(ts, good_ops), ["owner"]))
    del obj["operators"]["purposes"]
    case("operator-set-missing-field", "an operator set without its purposes", list(d.events), "malformed", obj)
    obj = event_to_obj(sign(DEVNET, d.next_delegation(ts, good_ops), ["owner"]))
    obj["operators"]["maxKeys"] = 65536
    case("operator-set-max-keys-not-uint16", "maxKeys past uint16", list(d.events), "malformed", obj)


# ---------------------------------------------------------------------------------------------
# typed_data.json


def typed_data_vectors() -> dict[str, Any]:
    w = LogWriter(DEVNET)
    inc = w.incept(
        T0,
        ["ops-1", "ops-2"],
        2,
        ["ops-3", "ops-4"],
        1,
        keys=[key("sig-a", "Ed25519", ["sign", "jwt"], T0, T0 + 86_400)],
        governor=address("dao-governor"),
        metadata='{"name":"example"}',
    )
    upd = w.update(
        T0 + 60,
        ["ops-1", "ops-2"],
        publish=[key("tls-b", "P-256", ["tls"], T0 + 120), key("sig-b", "secp256k1", ["sign"], T0 + 60)],
        retire=[("sig-a", T0 + 3600)],
        metadata='{"name":"example","v":2}',
    )
    rot = w.rotate(
        T0 + 120,
        ["ops-3"],
        ["ops-3", "ops-4"],
        1,
        ["ops-5"],
        1,
        governor=address("dao-governor-2"),
        operators=operators_of(["node-op-1", "node-op-2"], 1, ["sign", "tls"], 30 * DAY, 8),
    )
    rev = w.revoke(T0 + 180, ["ops-3"], "tls-b", T0 + 150, "misissued")
    dlg = w.delegate(T0 + 240, ["ops-3"], operators_of(["node-op-3"], 1, ["sign"], 7 * DAY, 4))
    op_upd = w.update(
        T0 + 300, ["node-op-3"], publish=[key("sig-c", "Ed25519", ["sign"], T0 + 300, T0 + 300 + 7 * DAY)]
    )
    events = [inc, upd, rot, rev, dlg, op_upd]
    out = []
    for s in events:
        out.append(
            {
                "kind": s.event.kind,
                "typedData": typed_data(DEVNET, s.event),
                "encodeType": encode_type(typed_data(DEVNET, s.event)["primaryType"]),
                "domainSeparator": hx(domain_separator(DEVNET)),
                "hashStruct": hx(hash_struct(s.event)),
                "digest": hx(event_digest(DEVNET, s.event)),
                "signatures": [hx(sig) for sig in s.signatures],
                "wire": event_to_obj(s),
            }
        )
    accepted = replay(events, DEVNET)
    for entry, acc in zip(out, accepted, strict=True):
        entry["authority"] = acc.authority
    return {
        "format": FORMAT_VERSION,
        "description": "One event per kind as eth_signTypedData_v4 JSON with its EIP-712 encodeType, domain "
        "separator, hashStruct and digest = keccak256(0x1901 || domainSeparator || hashStruct). A wallet signing "
        "'typedData' MUST produce a signature that recovers to a signer the event's kind allows ('authority': the "
        "controllers, or the operators for an operator-signed update). The six events form one valid log.",
        "typeHashes": {name: hx(h) for name, h in sorted(TYPE_HASH.items())},
        "events": out,
    }


# ---------------------------------------------------------------------------------------------

FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "valid_logs.json": valid_logs,
    "invalid.json": invalid_cases,
    "typed_data.json": typed_data_vectors,
}


def render(obj: dict[str, Any]) -> str:
    """The exact file text: 1-space indented JSON, ASCII only, trailing newline."""
    return json.dumps(obj, indent=1, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if any file would change; write nothing")
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write (default: next to this script)")
    args = parser.parse_args(argv)
    stale = []
    for name, make in FILES.items():
        text = render(make())
        path = args.out / name
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    if args.check:
        if stale:
            print(f"stale test vectors: {', '.join(stale)} (run: python tests/vectors/generate.py)", file=sys.stderr)
            return 1
        print("test vectors are up to date")
        return 0
    print(f"wrote {', '.join(stale) or 'nothing (already up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
