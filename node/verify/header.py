"""Block headers: the pinned checkpoint a bundle's proofs are checked against.

A header is carried as its RLP; its keccak must equal the block hash the verifier pinned. Only
three fields matter here (the state root, the number and the timestamp) and their positions are
the same in every Ethereum fork since Frontier; later forks only append fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.hashing import keccak
from . import rlp

_STATE_ROOT, _NUMBER, _TIMESTAMP = 3, 8, 11
_MIN_FIELDS = 15  # Frontier's header; London and later append base fee, withdrawals, blobs, ...


class HeaderError(ValueError):
    """The header bytes are not a block header."""


@dataclass(frozen=True, slots=True)
class Header:
    """The fields of a block header a verifier needs, with the block hash it was checked against."""

    hash: bytes
    number: int
    timestamp: int
    state_root: bytes
    raw: bytes


def decode_header(raw: bytes) -> Header:
    """Decode a header's RLP; its hash is keccak(raw)."""
    try:
        item = rlp.decode(raw)
    except rlp.RLPError as exc:
        raise HeaderError(f"header is not canonical RLP: {exc}") from None
    if not isinstance(item, list) or len(item) < _MIN_FIELDS or any(not isinstance(x, bytes) for x in item):
        raise HeaderError("header is not a list of at least 15 byte strings")
    state_root = item[_STATE_ROOT]
    assert isinstance(state_root, bytes)
    if len(state_root) != 32:
        raise HeaderError("header state root is not 32 bytes")
    try:
        number = rlp.decode_uint(item[_NUMBER], "block number")
        timestamp = rlp.decode_uint(item[_TIMESTAMP], "timestamp")
    except rlp.RLPError as exc:
        raise HeaderError(str(exc)) from None
    return Header(keccak(raw), number, timestamp, state_root, raw)
