"""Where the registry contract keeps what a verifier proves (contracts/src/KeyRegistry.sol v2,
docs/contracts.md "storage layout"). The layout is part of the contract's interface::

    slot 0  mapping(bytes32 subject => Subject)      base = keccak(subject . 0)
              base+0: seq (bits 0..63) | timestamp (64..127) | kind (128..135) | revoked (136..143)
                      | byOperators (144..151): the head is an operator-signed update
              base+1: head digest (0 = never anchored directly)
              base+2: commitment to the controllers in force
              base+3: nextCommitment
              base+4: governor in force
              base+5: commitment to the operator set in force (0 = none)
    slot 1  mapping(bytes32 root => Batch)           one word: blockNumber (bits 0..47) | timestamp | submitter
    slot 3  mapping(bytes32 subject => mapping(bytes32 keccak(keyId) => uint64 effectiveAt))

Solidity places ``mapping[k]`` at keccak(pad32(k) . pad32(slot)).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..core.hashing import keccak
from ..core.records import ZERO20, Inception, Rotation, SignedEvent, Update

SUBJECTS_SLOT = 0
BATCHES_SLOT = 1
GOVERNANCE_SLOT = 3
_U64 = (1 << 64) - 1
_U48 = (1 << 48) - 1
_U8 = 0xFF
GOVERNOR_OFFSET = 4
OPERATORS_OFFSET = 5


def _mapping_slot(key: bytes, slot: int) -> int:
    return int.from_bytes(keccak(key + slot.to_bytes(32, "big")), "big")


def subject_base_slot(subject: bytes) -> int:
    """Slot of a subject's packed (seq, timestamp, kind, revoked) word."""
    return _mapping_slot(subject, SUBJECTS_SLOT)


def head_slots(subject: bytes) -> tuple[int, int, int]:
    """(packed seq word, head digest, governor) slots of a subject."""
    base = subject_base_slot(subject)
    return base, base + 1, base + GOVERNOR_OFFSET


def operators_slot(subject: bytes) -> int:
    """Slot of the commitment to a subject's operator set in force (0 = none)."""
    return subject_base_slot(subject) + OPERATORS_OFFSET


def unpack_seq(word: int) -> int:
    """The seq in a subject's packed word."""
    return word & _U64


def unpack_kind(word: int) -> int:
    """The kind number of the anchored head in a subject's packed word."""
    return (word >> 128) & _U8


def unpack_revoked(word: int) -> bool:
    """Whether the subject is revoked as a whole, from its packed word."""
    return bool((word >> 136) & _U8)


def unpack_by_operators(word: int) -> bool:
    """Whether the anchored head is an operator-signed update, from a subject's packed word."""
    return bool((word >> 144) & _U8)


def batch_slot(root: bytes) -> int:
    """Slot of a batch root's record (non-zero iff the root was anchored)."""
    return _mapping_slot(root, BATCHES_SLOT)


def unpack_batch_block(word: int) -> int:
    """The block number a batch root was first anchored in."""
    return word & _U48


def governance_slot(subject: bytes, key_id: str) -> int:
    """Slot of governanceRevokedAt[subject][keccak(keyId)] ("" = the whole subject)."""
    return _mapping_slot(keccak(key_id.encode()), _mapping_slot(subject, GOVERNANCE_SLOT))


def unpack_effective_at(word: int) -> int:
    """The effective time of a governance revocation (0 = none)."""
    return word & _U64


def governance_key_ids(events: Iterable[SignedEvent], record_key_ids: Iterable[str] = ()) -> list[str]:
    """Key ids whose governance slot a bundle proves: the whole subject (""), every key id any of
    the subject's events (log and evidence) publishes, and every key id a record names. Exporter
    and verifier both use this, so the proven set is the same on both sides."""
    ids = {"", *record_key_ids}
    for signed in events:
        e = signed.event
        if isinstance(e, Inception):
            ids.update(k.key_id for k in e.keys)
        elif isinstance(e, Update):
            ids.update(k.key_id for k in e.publish)
    return sorted(ids)


def names_governor(events: Iterable[SignedEvent]) -> bool:
    """True if an establishment event of the log (inception or rotation) names a governor: only
    then can governance revoke (a governor named by any of them counts, ADR 0028 section 8)."""
    for signed in events:
        e = signed.event
        if isinstance(e, Inception | Rotation) and e.governor != ZERO20:
            return True
    return False
