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


Kind = Literal["inception", "update", "rotation", "revocation", "delegation"]
KINDS: tuple[Kind, ...] = ("inception", "update", "rotation", "revocation", "delegation")
# Kind numbers (docs/protocol.md section 3): what the contract and the bundles call each kind.
KIND_NUMBER: dict[str, int] = {"inception": 0, "update": 1, "rotation": 2, "revocation": 3, "delegation": 4}

# Who signed an accepted event (docs/protocol.md 6.2): the controllers in force (any kind), or the
# operators in force (updates only, within the operator limits).
Authority = Literal["controllers", "operators"]
PROTOCOL_VERSION = "2"


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain: which network and registry contract an event belongs to."""

    chain_id: int
    verifying_contract: bytes  # 20 bytes
    name: str = "keyreg"
    version: str = PROTOCOL_VERSION


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
class OperatorSet:
    """Who may sign updates of service keys besides the controllers, and within what limits.

    The empty set (every field zero or empty, :data:`NO_OPERATORS`) is the one encoding of "no
    operators". Otherwise ``operators`` are 1-16 distinct addresses in ascending order, of which
    ``threshold`` must sign; operator-signed updates may publish and retire only keys whose every
    purpose is in ``purposes``, publish only keys that expire within ``max_validity`` seconds of
    the update's timestamp, and leave at most ``max_keys`` live keys in that scope
    (docs/protocol.md 5.7 and 6.8).
    """

    operators: tuple[bytes, ...] = ()  # 20-byte addresses, ascending
    threshold: int = 0
    purposes: tuple[str, ...] = ()
    max_validity: int = 0  # seconds
    max_keys: int = 0

    def __bool__(self) -> bool:
        """True when an operator set is in force (not the empty encoding)."""
        return bool(self.operators)


NO_OPERATORS = OperatorSet()


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
    # Last in the record (so positional construction of the other fields keeps working); in the
    # EIP-712 type and on the wire it comes after ``governor``.
    operators: OperatorSet = NO_OPERATORS

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
    """Reveals the pre-committed controller set, commits the next one, and restates the governor
    and the operator set (a rotation may change or drop either: ZERO20 / NO_OPERATORS = none)."""

    subject: bytes
    seq: int
    prev: bytes
    timestamp: int
    controllers: tuple[bytes, ...]
    threshold: int
    next_commitment: bytes
    governor: bytes = ZERO20
    operators: OperatorSet = NO_OPERATORS

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


@dataclass(frozen=True, slots=True)
class Delegation:
    """Replaces the operator set in force (NO_OPERATORS drops it); signed by the controllers.

    It establishes authority but not controllers: the controllers, the next commitment and the
    governor stay as they are.
    """

    subject: bytes
    seq: int
    prev: bytes
    timestamp: int
    operators: OperatorSet

    kind: Literal["delegation"] = "delegation"


Event = Inception | Update | Rotation | Revocation | Delegation


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """An event with its signatures (65-byte r||s||v each, ascending by signer): the controllers',
    or for an update possibly the operators'."""

    event: Event
    signatures: tuple[bytes, ...]
    domain: Domain


@dataclass(frozen=True, slots=True)
class GovernanceRevocation:
    """A revocation executed on-chain by a governor the subject named in an establishment event.

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
