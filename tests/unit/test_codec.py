"""The strict JSON wire form: round trips, canonical bytes, and everything it must refuse."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.canonical import CanonicalEvent, canonical_from_obj
from node.core.codec import (
    decode_event,
    dumps_canonical,
    encode_event,
    event_from_obj,
    event_to_obj,
    loads_strict,
)
from node.core.errors import MalformedEvent, OversizedInput
from node.core.limits import Limits

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
LOGS = json.loads((VECTORS / "valid_logs.json").read_text())["logs"]
WIRE = [e for log in LOGS for e in log["events"]]
BY_KIND = {e["kind"]: e for e in reversed(WIRE)}


def test_every_kind_is_covered() -> None:
    assert set(BY_KIND) == {"inception", "update", "rotation", "revocation"}


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
