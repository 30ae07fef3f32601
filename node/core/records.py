"""Frozen records of the protocol: events, published keys, governance revocations.

Records hold decoded values only (ints, bytes, str, tuples). They never encode themselves:
the bytes that are hashed and signed are produced in ``eip712.py`` alone, the wire form in
``codec.py`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ZERO32 = b"\x00" * 32
ZERO20 = b"\x00" * 20

ALGORITHMS = ("Ed25519", "secp256k1", "P-256")
# Raw public key lengths per algorithm: Ed25519 raw 32 bytes; secp256k1 and P-256 compressed SEC1.
PUBLIC_KEY_LENGTHS = {"Ed25519": 32, "secp256k1": 33, "P-256": 33}


Kind = Literal["inception", "update", "rotation", "revocation"]
KINDS: tuple[Kind, ...] = ("inception", "update", "rotation", "revocation")


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain: which network and registry contract an event belongs to."""

    chain_id: int
    verifying_contract: bytes  # 20 bytes
    name: str = "keyreg"
    version: str = "1"


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A service key a subject publishes for verifiers."""

    key_id: str
    alg: str
    public_key: bytes
    purposes: tuple[str, ...]
    not_before: int
    not_after: int  # 0 = no expiry


@dataclass(frozen=True, slots=True)
class KeyRetirement:
    """Sets the not-after of an existing key (it can only shorten validity)."""

    key_id: str
    not_after: int


@dataclass(frozen=True, slots=True)
class Inception:
    """seq 0 of a subject; the subject id is this event's digest."""

    timestamp: int
    controllers: tuple[bytes, ...]  # sorted ascending, distinct 20-byte addresses
    threshold: int
    next_commitment: bytes  # 32 bytes; ZERO32 = no further rotation possible
    governor: bytes  # 20 bytes; ZERO20 = no DAO may revoke
    keys: tuple[PublishedKey, ...]
    metadata: str

    kind: Literal["inception"] = "inception"
    seq: int = 0
    prev: bytes = ZERO32


@dataclass(frozen=True, slots=True)
class Update:
    """Publish keys, retire keys, or change metadata."""

    subject: bytes
    seq: int
    prev: bytes
    timestamp: int
    publish: tuple[PublishedKey, ...]
    retire: tuple[KeyRetirement, ...]
    set_metadata: bool
    metadata: str

    kind: Literal["update"] = "update"


@dataclass(frozen=True, slots=True)
class Rotation:
    """Reveals the pre-committed controller set and commits the next one."""

    subject: bytes
    seq: int
    prev: bytes
    timestamp: int
    controllers: tuple[bytes, ...]
    threshold: int
    next_commitment: bytes

    kind: Literal["rotation"] = "rotation"


@dataclass(frozen=True, slots=True)
class Revocation:
    """Revokes one key (key_id) or the whole subject (key_id == "") from effective_at."""

    subject: bytes
    seq: int
    prev: bytes
    timestamp: int
    key_id: str
    effective_at: int
    reason: str

    kind: Literal["revocation"] = "revocation"


Event = Inception | Update | Rotation | Revocation


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """An event with its controller signatures (65-byte r||s||v each, ascending by signer)."""

    event: Event
    signatures: tuple[bytes, ...]
    domain: Domain


@dataclass(frozen=True, slots=True)
class GovernanceRevocation:
    """A revocation executed on-chain by the governor a subject named at inception.

    Not controller-signed and not part of the hash chain: it comes from the registry contract's
    ``GovernanceRevoked`` event and is applied to key state from ``effective_at``.
    """

    subject: bytes
    key_id: str  # "" = whole subject
    effective_at: int
    reason_hash: bytes  # 32 bytes
    proposal_id: int
    governor: bytes  # 20 bytes
    block_number: int = 0
    tx_hash: bytes = b""


def subject_of(event: Event, digest: bytes) -> bytes:
    """The subject an event belongs to (an inception's subject is its own digest)."""
    return digest if isinstance(event, Inception) else event.subject
