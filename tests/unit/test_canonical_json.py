"""canonical_json is the documented canonical form: json.dumps(sort_keys, compact, ensure_ascii=False)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.canonical_json import MAX_DEPTH, canonical_json
from keyreg.core.errors import MalformedEvent


def reference(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# Text without lone surrogates (which have no UTF-8 form), control characters, U+2028/9 and
# astral characters included; ints on both sides of orjson's 64-bit range.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-(2**64), 2**64) | text
values = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=6), inner, max_size=5)
    ),
    max_leaves=24,
)


@settings(max_examples=500, deadline=None)
@given(values)
def test_canonical_json_is_the_reference_form(value: Any) -> None:
    assert canonical_json(value) == reference(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(text, text, max_size=8))
def test_members_are_sorted_by_code_point(value: dict[str, str]) -> None:
    out = json.loads(canonical_json(value))
    assert list(out) == sorted(value)


def test_escapes_are_the_minimal_json_ones() -> None:
    s = '\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f"\\/\u2028\u2029\u00e9\U0001f511'
    assert canonical_json(s) == reference(s)
    assert canonical_json(s) == b'"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\x7f\\"\\\\/' + (
        "\u2028\u2029\u00e9\U0001f511".encode() + b'"'
    )


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        float("nan"),
        float("inf"),
        {"n": 0.5},
        [1, [2, [3.0]]],
        "\ud800",
        {"k": "a\udfffb"},
        {1: "x"},
        {("a",): 1},
        b"bytes",
        {1, 2},
        object(),
        {"x": frozenset()},
    ],
)
def test_values_without_a_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(MalformedEvent):
        canonical_json(value)


def test_subclasses_are_refused() -> None:
    class Text(str):
        pass

    class Number(int):
        pass

    for value in (Text("a"), Number(1), {"k": Text("a")}, {Text("k"): 1}):
        with pytest.raises(MalformedEvent):
            canonical_json(value)


def test_depth_is_bounded_and_cycles_refused() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert canonical_json(deep) == reference(deep)
    with pytest.raises(MalformedEvent, match="deeper"):
        canonical_json([deep])
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(MalformedEvent, match="deeper"):
        canonical_json(cycle)


def test_big_integers_are_exact() -> None:
    for n in (2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**256 - 1):
        assert canonical_json({"n": n}) == b'{"n":%d}' % n
