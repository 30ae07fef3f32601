"""Canonical JSON: the one renderer of the JSON text keyreg hashes, signs or stores.

The canonical form of a value is, byte for byte::

    json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

for values built from ``None``, ``bool``, ``int``, ``str``, ``list``/``tuple`` and ``dict`` with
``str`` keys (exact types, no subclasses). Object members are sorted by code point, there is no
whitespace, text is UTF-8 with only the escapes JSON requires.

Refused, with :class:`~keyreg.core.errors.MalformedEvent` (the same error the wire decoders raise):

- floats, NaN and infinities: every number keyreg hashes is an integer, and two implementations
  need not agree on the text of a float;
- text holding a lone surrogate: it has no UTF-8 form;
- dict keys that are not ``str`` (``json.dumps`` would silently turn ``1`` into ``"1"``), any
  other type, and nesting deeper than :data:`MAX_DEPTH` (which also refuses cycles).

orjson renders it: with ``OPT_SORT_KEYS`` its output equals the form above for these values
(sorting by UTF-8 bytes is sorting by code point; the escapes are the same), which
tests/unit/test_canonical_json.py checks with hypothesis against ``json.dumps``. Integers past
64 bits, which orjson does not render, go through ``json.dumps`` itself.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from .errors import MalformedEvent

# Nesting refused past this many levels of arrays and objects (a cycle is infinitely deep).
MAX_DEPTH = 128

_SCALARS = frozenset({str, int, bool, type(None)})


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value`` (see the module docstring); MalformedEvent if it has none."""
    _check_values(value, 0)
    try:
        # orjson refuses keys that are not exactly str itself; the values were checked above.
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        pass  # a key that is not a str, an int past 64 bits, or text with a lone surrogate
    _check_keys(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise MalformedEvent("text holds a lone surrogate, which has no UTF-8 form") from None


def canonical_text(value: Any) -> str:
    """:func:`canonical_json` as ``str`` (for text columns)."""
    return canonical_json(value).decode()


def _check_values(value: Any, depth: int) -> None:
    """Refuse values without a canonical form: floats, other types, deep nesting (keys: see below)."""
    t = type(value)
    if t is dict:
        items: Any = value.values()
    elif t is list or t is tuple:
        items = value
    elif t in _SCALARS:
        return
    elif t is float:
        raise MalformedEvent("canonical JSON has integers only, not floats")
    else:
        raise MalformedEvent(f"canonical JSON has no form for {t.__name__}")
    if depth >= MAX_DEPTH:
        raise MalformedEvent(f"JSON nested deeper than {MAX_DEPTH} levels")
    for item in items:
        if type(item) not in _SCALARS:
            _check_values(item, depth + 1)


def _check_keys(value: Any) -> None:
    """Refuse object keys that are not str (``json.dumps`` would turn ``1`` into ``"1"``)."""
    t = type(value)
    if t is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise MalformedEvent(f"JSON object keys must be strings, not {type(key).__name__}")
            _check_keys(item)
    elif t is list or t is tuple:
        for item in value:
            _check_keys(item)
