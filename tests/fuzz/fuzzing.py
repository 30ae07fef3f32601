"""Shared pieces of the fuzzers: the budget, seed inputs and mutation strategies.

Budget: each fuzzer runs ``examples(n)`` Hypothesis examples, a small ``n`` in CI (all fuzzers
together add well under a minute to the suite). ``KEYREG_FUZZ_EXAMPLES=<N>`` runs N examples per
fuzzer instead, for longer runs by hand (tests/fuzz/README.md). A failure is a bug: keep its
input as a regression test next to the fuzzer.

Inputs come in two kinds: raw bytes (anything at all), and structured ones, i.e. valid inputs
from tests/vectors mutated at the byte level (flips, cuts, splices of JSON-significant tokens)
or at the object level (a value replaced by any JSON value, a field dropped or added), so the
fuzzers get past the first checks into the decoders' deeper paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
VALID_EVENTS: list[dict[str, Any]] = [
    e for log in json.loads((VECTORS / "valid_logs.json").read_text())["logs"] for e in log["events"]
]


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


VALID_EVENT_BYTES = [canonical(e) for e in VALID_EVENTS]


def examples(default: int) -> settings:
    """Hypothesis settings for one fuzzer: ``default`` examples, or KEYREG_FUZZ_EXAMPLES."""
    n = int(os.environ.get("KEYREG_FUZZ_EXAMPLES", "0") or 0) or default
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# Tokens that take parsers and decoders down their rare paths.
TOKENS = [
    b"[",
    b"]",
    b"{",
    b"}",
    b'"',
    b"\\",
    b":",
    b",",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\\ud83d\\ude00",
    b'"\\ud800"',
    b"\xed\xa0\x80",  # a surrogate encoded as UTF-8 (not UTF-8)
    b"\xff",
    b"\x00",
    b"NaN",
    b"Infinity",
    b"-0",
    b"1e999",
    b"0.5",
    b"18446744073709551616",  # 2**64
    b"115792089237316195423570985008687907853269984665640564039457584007913129639936",  # 2**256
    b"true",
    b"null",
    b" ",
    b"[" * 70,
    b"{" * 70,
    b"0x",
    b'"0x"',
    b'"kind":"update"',
    b'"seq":1',
]

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**260)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["0x", "0x" + "00" * 20, "0x" + "ab" * 32, "0x" + "11" * 65, "\ud800", "update", ""])
)
# Values at the edges of what decoders check: boundaries, wrong types that compare equal, text
# that has no UTF-8 form. Mutations draw from these often, not only when random data hits them.
NASTY = st.sampled_from(
    [
        -1,
        0,
        1,
        255,
        256,
        2**63,
        2**64 - 1,
        2**64,
        2**256,
        True,
        False,
        1.0,
        "\ud800",
        "a\udfff",
        "0x",
        "0X" + "ab" * 20,
        "0x" + "AB" * 32,
        "0x" + "0" * 63,
        " 0x" + "ab" * 20,
        "0x" + "ab" * 20,
        "0x" + "ab" * 32,
        "0x" + "ab" * 65,
        "1" * 100,
        "\x00",
        "x" * 5000,
        [],
        {},
        None,
    ]
)
JSON_VALUES = st.recursive(
    JSON_LEAVES | NASTY,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=16,
)


@st.composite
def mutated_bytes(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "token", "duplicate", "truncate"]))
        i = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            j = min(i, len(data) - 1)
            data[j] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif op == "token":
            data[i:i] = draw(st.sampled_from(TOKENS))
        elif op == "duplicate":
            j = draw(st.integers(i, min(len(data), i + 64)))
            data[j:j] = data[i:j]
        else:
            del data[i:]
    return bytes(data)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_object(draw: st.DrawFn, seeds: list[Any]) -> Any:
    """A deep copy of a seed with one to three object-level mutations."""
    obj = json.loads(json.dumps(draw(st.sampled_from(seeds))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(obj)))
        if not path:
            return draw(JSON_VALUES)
        parent = obj
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = draw(st.sampled_from(["replace", "replace", "drop", "add", "wrap"]))
        if op == "replace":
            parent[last] = draw(NASTY | JSON_VALUES)
        elif op == "drop":
            del parent[last]
        elif op == "wrap":
            parent[last] = [parent[last]] if draw(st.booleans()) else {"x": parent[last]}
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        else:
            parent.insert(last, draw(JSON_VALUES))
    return obj


def json_text(obj: Any) -> bytes:
    """Some JSON text of ``obj`` (lone surrogates escaped, as any client could send them)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
