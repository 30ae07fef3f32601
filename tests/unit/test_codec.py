"""The strict JSON wire form: round trips, canonical bytes, and everything it must refuse."""

from __future__ import annotations

import contextlib
import json
import timeit
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.codec import (
    JSON_DEPTH_CEILING,
    CanonicalEvent,
    canonical_from_obj,
    check_json_depth,
    decode_event,
    dumps_canonical,
    encode_event,
    event_from_obj,
    event_to_obj,
    json_depth,
    loads_strict,
)
from keyreg.core.errors import MalformedEvent, OversizedInput
from keyreg.core.limits import DEFAULT_LIMITS, Limits

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
LOGS = json.loads((VECTORS / "valid_logs.json").read_text())["logs"]
WIRE = [e for log in LOGS for e in log["events"]]
BY_KIND = {e["kind"]: e for e in reversed(WIRE)}


def test_every_kind_is_covered() -> None:
    assert set(BY_KIND) == {"inception", "update", "rotation", "revocation", "delegation"}


@pytest.mark.parametrize("obj", WIRE)
def test_round_trip_is_byte_exact(obj: dict[str, Any]) -> None:
    data = dumps_canonical(obj)
    signed = decode_event(data)
    assert encode_event(signed) == data
    assert event_to_obj(signed) == obj
    assert event_from_obj(obj) == signed


@pytest.mark.parametrize("obj", WIRE)
def test_canonical_from_obj_renders_encode_event(obj: dict[str, Any]) -> None:
    got = canonical_from_obj(obj)
    assert isinstance(got, CanonicalEvent)
    assert got.signed == event_from_obj(obj)
    assert got.wire == encode_event(got.signed) == dumps_canonical(obj)


_TEXT_FIELDS = {"inception": "metadata", "update": "metadata", "revocation": "reason"}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([e for e in WIRE if e["kind"] in _TEXT_FIELDS]),
    st.text(max_size=40),
    st.integers(min_value=-1, max_value=2**70),
    st.booleans(),
)
def test_canonical_from_obj_wire_is_always_encode_event(
    obj: dict[str, Any], text: str, n: int, big_chain: bool
) -> None:
    # Any text (control characters, non-ASCII, lone surrogates) and any integer: whenever the
    # strict decoder accepts the object, the bytes rendered beside it are exactly encode_event's.
    obj = {**obj, _TEXT_FIELDS[obj["kind"]]: text, "timestamp": n}
    if big_chain:
        obj["chainId"] = 2**64 + n
    try:
        got = canonical_from_obj(obj)
    except MalformedEvent:
        with pytest.raises(MalformedEvent):
            event_from_obj(obj)
        return
    if isinstance(got, CanonicalEvent):
        assert got.wire == encode_event(got.signed)
        assert decode_event(got.wire) == got.signed
    else:  # orjson cannot render it (an int over 64 bits, a lone surrogate): the caller encodes
        assert got == event_from_obj(obj)


def test_canonical_bytes_sorted_keys_no_whitespace_utf8() -> None:
    obj = {"b": 1, "a": ["é", {"d": 2, "c": 3}]}
    assert dumps_canonical(obj) == '{"a":["é",{"c":3,"d":2}],"b":1}'.encode()


def test_whitespace_and_key_order_are_accepted_but_reencoded_canonically() -> None:
    obj = BY_KIND["update"]
    pretty = json.dumps(dict(reversed(list(obj.items()))), indent=2).encode()
    assert encode_event(decode_event(pretty)) == dumps_canonical(obj)


def _mutated(which: str, changes: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    obj = json.loads(json.dumps(BY_KIND[which]))
    for k, v in {**(changes or {}), **kw}.items():
        if v is ...:
            del obj[k]
        else:
            obj[k] = v
    return obj


@pytest.mark.parametrize(
    ("kind", "changes", "fragment"),
    [
        ("update", {"extra": 1}, "unknown field 'extra'"),
        ("update", {"metadata": ...}, "missing field 'metadata'"),
        ("update", {"kind": "delete"}, "unknown event kind"),
        ("update", {"seq": "1"}, "'seq' must be an integer"),
        ("update", {"seq": True}, "'seq' must be an integer"),
        ("update", {"seq": 1.0}, "'seq' must be an integer"),
        ("update", {"seq": -1}, "'seq' must be an integer"),
        ("update", {"timestamp": 2**64}, "'timestamp' must be an integer"),
        ("update", {"chainId": 2**256}, "'chainId' must be an integer"),
        ("update", {"setMetadata": 0}, "'setMetadata' must be a boolean"),
        ("update", {"prev": "00" * 32}, "0x-prefixed"),
        ("update", {"prev": "0x" + "00" * 31}, "must be 32 bytes"),
        ("update", {"prev": "0x" + "AB" * 32}, "lowercase hex"),
        ("update", {"prev": "0x" + "0" * 63 + " "}, "hex"),
        ("update", {"prev": "0xzz" + "00" * 31}, "not valid hex"),
        ("update", {"signatures": "0x00"}, "must be a list"),
        ("update", {"signatures": ["0x" + "00" * 64]}, "must be 65 bytes"),
        ("update", {"metadata": 5}, "'metadata' must be a string"),
        ("update", {"publish": [{"keyId": "k"}]}, "missing field"),
        ("update", {"publish": [1]}, "published key must be a JSON object"),
        ("update", {"retire": [{"keyId": "k", "notAfter": 1, "x": 1}]}, "unknown field 'x' in key retirement"),
        ("inception", {"controllers": ["0x" + "00" * 19]}, "must be 20 bytes"),
        ("inception", {"threshold": 256}, "'threshold' must be an integer"),
        ("rotation", {"nextCommitment": "0x"}, "must be 32 bytes"),
        ("revocation", {"effectiveAt": None}, "'effectiveAt' must be an integer"),
    ],
)
def test_malformed_fields_are_rejected(kind: str, changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MalformedEvent, match=fragment.replace("(", r"\(")) as info:
        decode_event(dumps_canonical(_mutated(kind, changes)))
    assert info.value.code == "malformed"


def test_nested_unknown_field_in_published_key() -> None:
    obj = _mutated("update")
    obj["publish"][0]["kid"] = "x"
    with pytest.raises(MalformedEvent, match="unknown field 'kid' in published key"):
        event_from_obj(obj)


def test_purposes_must_be_strings() -> None:
    obj = _mutated("update")
    obj["publish"][0]["purposes"] = ["sign", 1]
    with pytest.raises(MalformedEvent, match="purposes"):
        event_from_obj(obj)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"null",
        b'"x"',
        b"{",
        b"\xff\xfe",
        b'{"kind":"update"} trailing',
        b"NaN",
        b'{"kind":[]}',
        b'{"kind":{}}',
    ],
)
def test_not_an_event_object(data: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode_event(data)


def test_duplicate_keys_are_rejected_at_any_depth() -> None:
    with pytest.raises(MalformedEvent, match="duplicate field 'a'"):
        loads_strict(b'{"a":1,"b":{"c":1},"a":2}')
    with pytest.raises(MalformedEvent, match="duplicate field 'c'"):
        loads_strict(b'{"a":1,"b":{"c":1,"c":1}}')
    text = dumps_canonical(BY_KIND["update"])
    with pytest.raises(MalformedEvent, match="duplicate field 'seq'"):
        decode_event(text[:-1] + b',"seq":1}')


def test_loads_strict_accepts_str_and_surrounding_whitespace() -> None:
    assert loads_strict(' {"a": [1, 2]}\n') == {"a": [1, 2]}
    with pytest.raises(MalformedEvent, match="not valid JSON"):
        loads_strict("{} {}")


def test_size_limits() -> None:
    data = dumps_canonical(BY_KIND["update"])
    with pytest.raises(OversizedInput) as info:
        decode_event(data, Limits(max_event_bytes=len(data) - 1))
    assert info.value.code == "oversized"
    decode_event(data, Limits(max_event_bytes=len(data)))
    obj = _mutated("update", signatures=BY_KIND["update"]["signatures"] * 17)
    with pytest.raises(OversizedInput, match="signatures"):
        event_from_obj(obj)
    obj = _mutated("inception", controllers=["0x" + "11" * 20] * 17)
    with pytest.raises(OversizedInput, match="controllers"):
        event_from_obj(obj)


def test_oversized_is_a_kind_of_malformed() -> None:
    assert issubclass(OversizedInput, MalformedEvent)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
        max_leaves=12,
    )
)
def test_arbitrary_json_never_escapes_the_error_tree(value: Any) -> None:
    """Whatever JSON arrives, decoding either succeeds or raises MalformedEvent (never another exception)."""
    for obj in (value, {**BY_KIND["update"], "publish": value}, {**BY_KIND["inception"], "keys": [value]}):
        with contextlib.suppress(MalformedEvent):
            decode_event(dumps_canonical(obj))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(WIRE), st.text(min_size=1, max_size=12))
def test_any_extra_top_level_field_is_rejected(obj: dict[str, Any], name: str) -> None:
    if name in obj:
        return
    with pytest.raises(MalformedEvent, match="unknown field"):
        event_from_obj({**obj, name: 0})


# ------------------------------------------------- nesting depth and lone surrogates (issue 13)
# py_ecc (imported through web3) raises the recursion limit to 100,000, so the stdlib parser's
# recursion guard no longer fires before the C stack ends: deep JSON must be refused before any
# parser recurses (findings 13 and 9; the end-to-end tests are in tests/fuzz/test_hostile_json.py).


def _nesting(value: Any) -> int:
    """How deep ``value`` nests lists and dicts (iterative: the values here may be deep)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, list | dict):
            deepest = max(deepest, d + 1)
            todo.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


_BRACKETY = st.text(alphabet='[]{}"\\ab:, \n\u00e9\U0001f600', max_size=12)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _BRACKETY,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_BRACKETY, children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES, st.sampled_from([None, 0, 2]), st.booleans())
def test_json_depth_is_the_real_nesting(value: Any, indent: int | None, ascii_only: bool) -> None:
    # Strings full of brackets, quotes and backslashes must not count; whitespace must not matter.
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    assert json_depth(text) == _nesting(value)


def _nested(depth: int, shape: str) -> bytes:
    if shape == "arrays":
        return b"[" * depth + b"]" * depth
    if shape == "objects":
        return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
    # Strings that look like closers (and escaped quotes) between the openers must not hide them.
    return b'["]]]\\"]}",' * depth + b"0" + b"]" * depth


@pytest.mark.parametrize("shape", ["arrays", "objects", "strings"])
def test_nesting_is_refused_past_the_bound_and_accepted_at_it(shape: str) -> None:
    limit = DEFAULT_LIMITS.max_json_depth
    assert json_depth(_nested(limit, shape)) == limit
    check_json_depth(_nested(limit, shape))
    loads_strict(_nested(limit, shape))
    with pytest.raises(MalformedEvent, match="nest deeper than"):
        check_json_depth(_nested(limit + 1, shape))
    with pytest.raises(MalformedEvent, match="nest deeper than"):
        loads_strict(_nested(limit + 1, shape))
    check_json_depth(_nested(limit + 1, shape), limit + 1)  # the bound is a parameter (config: limits)


def test_depth_bound_has_a_ceiling_whatever_the_configuration() -> None:
    with pytest.raises(MalformedEvent, match=f"deeper than {JSON_DEPTH_CEILING}"):
        check_json_depth(_nested(JSON_DEPTH_CEILING + 1, "arrays"), 10**9)


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 100_000,  # never closed
        b"[" * 100_000 + b"]" * 100_000,  # the input of the review
        b'"' + b"[" * 100_000,  # an unclosed string: the parser stops at once; refusing is fine too
        b"\\" + b'"' + b"[" * 100_000,  # a backslash outside a string
        b"[1," * 50_000 + b"]" * 50_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
)
def test_deep_or_broken_texts_are_refused_before_parsing(text: bytes) -> None:
    with pytest.raises(MalformedEvent):
        loads_strict(text)
    with pytest.raises(MalformedEvent):
        decode_event(text, Limits(max_event_bytes=len(text)))


def test_orjson_stops_at_depth_1024_by_itself() -> None:
    # orjson's own bound stops texts that reach it unscanned (p2p's canonical_batch parses
    # before any scan): they rely on this. If an orjson upgrade changes it, they need the scan.
    orjson.loads(b"[" * 1024 + b"]" * 1024)
    with pytest.raises(orjson.JSONDecodeError, match="depth"):
        orjson.loads(b"[" * 1025 + b"]" * 1025)


@pytest.mark.parametrize(
    "text",
    [
        b'{"events":[{"kind":"\\ud800"}]}',  # the review's input (finding 9)
        b'"\\udc00"',
        b'"a\\ud800b"',
        b'"\\ud800\\u0041"',
        b'"\\uDBFF"',
        b'{"\\ud800":1}',
        b'["ok", "\\\\", "\\ud800"]',
    ],
)
def test_lone_surrogate_escapes_are_malformed(text: bytes) -> None:
    with pytest.raises(MalformedEvent, match="surrogate"):
        loads_strict(text)


def test_surrogate_pairs_and_escaped_backslashes_are_text() -> None:
    text = b'["\\ud83d\\ude00","\\\\ud800","\\\\\\ud83d\\ude00"]'
    assert loads_strict(text) == ["\U0001f600", "\\ud800", "\\\U0001f600"]


def test_a_lone_surrogate_is_malformed_on_every_path() -> None:
    with pytest.raises(MalformedEvent, match="surrogate"):
        loads_strict('"\ud800"')  # a str holding one
    with pytest.raises(MalformedEvent, match="surrogate"):
        dumps_canonical({"kind": "\ud800"})  # the API re-encodes posted items with it
    raw = encode_event(event_from_obj(BY_KIND["update"])).replace(b'"metadata":""', b'"metadata":"\\ud800"')
    assert raw != encode_event(event_from_obj(BY_KIND["update"]))
    with pytest.raises(MalformedEvent, match="surrogate"):
        decode_event(raw)
    signed = event_from_obj({**BY_KIND["update"], "metadata": "\ud800"})  # an object built in code
    with pytest.raises(MalformedEvent, match="surrogate"):
        encode_event(signed)


def test_depth_check_is_cheap() -> None:
    # Linear and in C loops: a batch of 1,000 events costs well under a microsecond per event to
    # measure (the commit message has the figures); the review's 200 KB input, a few milliseconds.
    batch = b'{"events":[' + b",".join([dumps_canonical(BY_KIND["update"])] * 1000) + b'],"type":"events"}'
    deep = b"[" * 100_000 + b"]" * 100_000
    per_batch = min(timeit.repeat(lambda: check_json_depth(batch), number=5, repeat=3)) / 5
    per_deep = min(timeit.repeat(lambda: json_depth(deep), number=5, repeat=3)) / 5
    parse = min(timeit.repeat(lambda: json.loads(batch), number=5, repeat=3)) / 5
    assert per_batch < parse  # cheaper than one stdlib parse of the same text, with room for load
    assert per_deep < 0.2
