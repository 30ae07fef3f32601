"""A small, strict RLP codec (Ethereum's Recursive Length Prefix), enough for headers and trie proofs.

Decoding is canonical-only: a single byte below 0x80 must be encoded as itself, lengths use the
short form when they fit and carry no leading zero bytes, and the input must be consumed
exactly. Anything else raises :class:`RLPError`, so one value has one encoding and a proof node
cannot be re-encoded into a different byte string with the same meaning.
"""

from __future__ import annotations

from typing import TypeAlias

Item: TypeAlias = "bytes | list[Item]"


class RLPError(ValueError):
    """Input is not canonical RLP."""


# Headers nest lists 1 deep and trie nodes (with embedded short nodes) a few levels; the decoder
# recurses once per level, so a hostile input nested thousands deep must be refused, not overflow.
MAX_DEPTH = 16


def _length(data: bytes, pos: int, size: int) -> int:
    if pos + size > len(data):
        raise RLPError("length field runs past the end of the input")
    raw = data[pos : pos + size]
    if raw[0] == 0:
        raise RLPError("length field has a leading zero byte")
    n = int.from_bytes(raw, "big")
    if n < 56:
        raise RLPError("long form used for a length below 56")
    return n


def _item(data: bytes, pos: int, depth: int = 0) -> tuple[Item, int]:
    """Decode one item starting at ``pos``, ``depth`` lists deep; returns (item, position after it)."""
    if pos >= len(data):
        raise RLPError("unexpected end of input")
    b = data[pos]
    if b < 0x80:
        return data[pos : pos + 1], pos + 1
    if b < 0xB8:
        n = b - 0x80
        start = pos + 1
        if n == 1 and start < len(data) and data[start] < 0x80:
            raise RLPError("single byte below 0x80 must be encoded as itself")
    elif b < 0xC0:
        size = b - 0xB7
        n = _length(data, pos + 1, size)
        start = pos + 1 + size
    else:
        if depth >= MAX_DEPTH:
            raise RLPError(f"lists nested deeper than {MAX_DEPTH} levels")
        if b < 0xF8:
            n = b - 0xC0
            start = pos + 1
        else:
            size = b - 0xF7
            n = _length(data, pos + 1, size)
            start = pos + 1 + size
        end = start + n
        if end > len(data):
            raise RLPError("list runs past the end of the input")
        items: list[Item] = []
        p = start
        while p < end:
            it, p = _item(data, p, depth + 1)
            items.append(it)
        if p != end:
            raise RLPError("list payload length mismatch")
        return items, end
    end = start + n
    if end > len(data):
        raise RLPError("string runs past the end of the input")
    return data[start:end], end


def decode(data: bytes) -> Item:
    """Decode exactly one RLP item that spans all of ``data``."""
    item, end = _item(data, 0)
    if end != len(data):
        raise RLPError(f"{len(data) - end} trailing bytes after the RLP item")
    return item


def _prefix(n: int, short: int, long: int) -> bytes:
    if n < 56:
        return bytes((short + n,))
    size = (n.bit_length() + 7) // 8
    return bytes((long + size,)) + n.to_bytes(size, "big")


def encode(item: Item) -> bytes:
    """Canonical RLP of bytes or (nested) lists of bytes."""
    if isinstance(item, bytes | bytearray):
        if len(item) == 1 and item[0] < 0x80:
            return bytes(item)
        return _prefix(len(item), 0x80, 0xB7) + bytes(item)
    payload = b"".join(encode(x) for x in item)
    return _prefix(len(payload), 0xC0, 0xF7) + payload


def encode_uint(n: int) -> bytes:
    """The minimal big-endian byte string of a non-negative integer (RLP's integer form)."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""


def decode_uint(b: Item, what: str = "integer") -> int:
    """An RLP integer: a byte string without leading zeros."""
    if not isinstance(b, bytes):
        raise RLPError(f"{what} must be a byte string, not a list")
    if b[:1] == b"\x00":
        raise RLPError(f"{what} has a leading zero byte")
    return int.from_bytes(b, "big")
