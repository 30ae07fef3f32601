"""A 2-of-3 subject with a pre-committed next 2-of-3 set, built from deterministic test keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from keyreg.core import builder
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import SECP256K1_N, address_of_private_key
from keyreg.core.log import SubjectState, apply_event
from keyreg.core.records import Domain, PublishedKey, SignedEvent

DOMAIN = Domain(31337, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
NOW = 1_700_000_000
ED_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")  # RFC 8032 test 1


def secret(tag: str) -> bytes:
    return hashlib.sha256(b"keyreg-ceremony-test-" + tag.encode()).digest()


def by_address(secrets: list[bytes]) -> list[bytes]:
    return sorted(secrets, key=address_of_private_key)


def high_s(signature: bytes) -> bytes:
    """The same signature with s replaced by N - s and v flipped: valid math, refused by EIP-2."""
    s = int.from_bytes(signature[32:64], "big")
    v = 55 - signature[64]  # 27 <-> 28
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes((v,))


@dataclass
class Subject:
    current: list[bytes]  # secrets of the controllers in force, ascending by address
    following: list[bytes]  # secrets of the pre-committed next set
    outsiders: list[bytes]
    state: SubjectState
    log: list[SignedEvent]

    @property
    def addresses(self) -> tuple[bytes, ...]:
        return builder.controller_set(self.current)

    @property
    def next_addresses(self) -> tuple[bytes, ...]:
        return builder.controller_set(self.following)

    def apply(self, signed: SignedEvent) -> None:
        self.state = apply_event(self.state, signed, DOMAIN).state
        self.log.append(signed)


def make_subject(tag: str = "a", threshold: int = 2, operators: int = 0) -> Subject:
    """A subject of 3 controllers (``threshold`` of them sign), with ``operators`` operator keys
    (secrets ``secret(f"{tag}-o{i}")``, threshold 1, purpose sig, keys valid at most a day, 4 live)."""
    current = by_address([secret(f"{tag}-c{i}") for i in range(3)])
    following = by_address([secret(f"{tag}-n{i}") for i in range(3)])
    outsiders = [secret(f"{tag}-x{i}") for i in range(3)]
    key = PublishedKey("k1", "Ed25519", ED_KEY, ("sig",), 0, 0)
    ops = [address_of_private_key(secret(f"{tag}-o{i}")) for i in range(operators)]
    operator_set = builder.operator_set(
        ops, 1 if ops else 0, ["sig"] if ops else [], 86400 if ops else 0, 4 if ops else 0
    )
    inc = builder.inception(
        NOW,
        builder.controller_set(current),
        threshold,
        builder.controller_set(following),
        threshold,
        keys=[key],
        operators=operator_set,
    )
    signed = builder.sign_event(DOMAIN, inc, current[:threshold])
    state = apply_event(None, signed, DOMAIN).state
    return Subject(current, following, outsiders, state, [signed])


def digest_of(signed: SignedEvent) -> bytes:
    return event_digest(DOMAIN, signed.event)
