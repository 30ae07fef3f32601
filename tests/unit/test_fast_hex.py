"""The fast decoder's hex fields: whatever a2b_hex takes that bytes.fromhex would not (or the
reverse), the fast path accepts only the canonical form and the reference decoder decides the rest."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from node.core import codec
from node.core.errors import KeyregError
from node.core.limits import DEFAULT_LIMITS
from tests.unit.event_objects import SHAPES, with_value


def _hex_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(path, value) of every 0x-string inside a JSON object."""
    out: list[tuple[tuple[Any, ...], str]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        if isinstance(v, str) and v.startswith("0x"):
            out.append(((*prefix, k), v))
        out.extend(_hex_paths(v, (*prefix, k)))
    return out


def _variants(path: tuple[Any, ...], v: str) -> list[Any]:
    """Non-canonical spellings of ``v`` (and wrong lengths, unless the field has any length)."""
    digits = v[2:]
    lengths = [] if path[-1] == "publicKey" else ["0x" + digits[:-2], "0x" + digits + "00", "0x"]
    variants = [
        *lengths,
        v.encode(),  # bytes: a2b_hex parses them, fromhex does not
        bytearray(v.encode()),
        "0x" + digits.upper(),
        "0X" + digits,
        "1x" + digits,
        "0x" + digits[:-1],  # odd length
        "0x" + digits[:-2] + " " + digits[-2:],  # whitespace fromhex skips
        "0x" + digits[:-2] + "\n" + digits[-2:],
        "0x" + digits[:-2] + "\u0661\u0662",  # non-ASCII digits
        "0x" + digits[:-2] + "é1",
        "0x" + digits[:-2] + "gg",
        "0x" + digits[:-1] + "\x00",
        digits,
        v + " ",
        " " + v,
        memoryview(v.encode()),
    ]
    return [x for x in variants if type(x) is not str or x != v]  # "0x00".upper() is itself


def _outcome(fn: Any, obj: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(copy.deepcopy(obj) if not _has_view(obj) else obj, DEFAULT_LIMITS)
    except KeyregError as exc:
        return type(exc).__name__, str(exc)


def _has_view(obj: Any) -> bool:
    if isinstance(obj, memoryview):
        return True
    if isinstance(obj, dict):
        return any(_has_view(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_view(v) for v in obj)
    return False


@pytest.mark.parametrize("obj", SHAPES)
def test_fast_and_reference_decoders_agree_on_hex_variants(obj: dict[str, Any]) -> None:
    paths = _hex_paths(obj)
    assert paths
    for path, v in paths:
        for value in _variants(path, v):
            changed = with_value(obj, path, value)
            got = _outcome(codec.event_from_obj, changed)
            assert got == _outcome(codec._reference_event_from_obj, changed), (path, value)
            assert got[0] != "ok" or value == v


@pytest.mark.parametrize("obj", SHAPES)
def test_fast_path_refuses_every_hex_variant(obj: dict[str, Any]) -> None:
    for path, v in _hex_paths(obj):
        if path == ("verifyingContract",):
            continue  # a known (chainId, contract) pair may be answered from the domain cache
        for value in _variants(path, v):
            with pytest.raises(Exception):  # noqa: B017, PT011  any exception is the fast path's doubt
                codec._fast_event(with_value(obj, path, value), DEFAULT_LIMITS)
