"""Deterministic streams of valid signed events, for the store tests, the crash test and the bench.

Every subject has one controller and pre-commits the next one, so streams can include rotations.
Events of many subjects are interleaved round-robin by seq (each batch then touches many
subjects, the realistic and the harder case for the store). Same arguments, same bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from keyreg.core.builder import commitment_for, controller_set, sign_event
from keyreg.core.codec import encode_event
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import keccak
from keyreg.core.records import (
    ZERO20,
    Domain,
    Event,
    Inception,
    PublishedKey,
    Revocation,
    Rotation,
    SignedEvent,
    Update,
)

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
BASE_TIME = 1_700_000_000


@dataclass(frozen=True, slots=True)
class StreamEvent:
    signed: SignedEvent
    subject: bytes
    seq: int
    digest: bytes


def secret(seed: int, *parts: int) -> bytes:
    """A deterministic secp256k1 secret (keccak output is below the curve order in practice)."""
    return keccak(b"keyreg-test" + b"".join(p.to_bytes(8, "big") for p in (seed, *parts)))


def _key(seed: int, subject_index: int, n: int, t0: int) -> PublishedKey:
    return PublishedKey(
        key_id=f"k{n}",
        alg="Ed25519",
        public_key=secret(seed, subject_index, 1000 + n),
        purposes=("sig",),
        not_before=t0,
        not_after=0,
    )


def subject_events(seed: int, index: int, count: int, domain: Domain = DOMAIN) -> list[StreamEvent]:
    """``count`` valid events of one subject: inception, then updates, a rotation every 5th seq."""
    generation = 0
    current = [secret(seed, index, generation)]
    nxt = [secret(seed, index, generation + 1)]
    t = BASE_TIME + index
    ev: Event = Inception(
        t, controller_set(current), 1, commitment_for(nxt, 1), ZERO20, (_key(seed, index, 0, t),), f"subject {index}"
    )
    out: list[StreamEvent] = []
    signed = sign_event(domain, ev, current)
    digest = event_digest(domain, ev)
    subject = digest
    out.append(StreamEvent(signed, subject, 0, digest))
    for seq in range(1, count):
        t += 10
        if seq % 5 == 0:
            generation += 1
            current, nxt = nxt, [secret(seed, index, generation + 1)]
            ev = Rotation(subject, seq, digest, t, controller_set(current), 1, commitment_for(nxt, 1))
        elif seq % 7 == 0:
            ev = Revocation(subject, seq, digest, t, f"k{seq - 1 if (seq - 1) % 5 else seq - 2}", t, "test")
        else:
            ev = Update(subject, seq, digest, t, (_key(seed, index, seq, t),), (), False, "")
        signed = sign_event(domain, ev, current)
        digest = event_digest(domain, ev)
        out.append(StreamEvent(signed, subject, seq, digest))
    return out


def interleaved(seed: int, subjects: int, per_subject: int, domain: Domain = DOMAIN) -> list[StreamEvent]:
    """Events of ``subjects`` subjects, round-robin by seq (every log stays in order)."""
    logs = [subject_events(seed, i, per_subject, domain) for i in range(subjects)]
    return [log[seq] for seq in range(per_subject) for log in logs]


def mixed_items(seed: int, subjects: int, per_subject: int) -> list[bytes]:
    """Wire items for a batch ingest with every outcome: valid events interleaved across subjects,
    each 17th first signed by someone else and then with an unusable signature, some garbage, and
    some replays (already known)."""
    items: list[bytes] = []
    for i, s in enumerate(e.signed for e in interleaved(seed, subjects, per_subject)):
        raw = encode_event(s)
        if i % 17 == 3:
            sig = s.signatures[0]
            for forged in (bytes([sig[0] ^ 1]) + sig[1:], sig[:64] + b"\x1d"):
                items.append(encode_event(dataclasses.replace(s, signatures=(forged,))))
        items.append(raw)
        if i % 29 == 5:
            items.append(b"{not json")
        if i % 31 == 7:
            items.append(raw)
    return items
