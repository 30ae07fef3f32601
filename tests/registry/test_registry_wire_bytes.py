"""The registry stores canonical wire bytes, whatever form the caller sent."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.codec import decode_event, dumps_canonical, encode_event, event_to_obj
from keyreg.registry import Registry, wire_bytes
from keyreg.store.memory import MemoryStore
from tests.store.streams import DOMAIN, interleaved

STREAM = interleaved(7, 3, 6)

json_leaf = st.none() | st.booleans() | st.integers(0, 2**64 - 1) | st.text()  # any unicode, controls too
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_orjson_sorted_compact_output_is_the_canonical_encoding(value: object) -> None:
    """encode_event relies on this: for JSON of str/int/bool/null/list/dict, orjson == dumps_canonical."""
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == dumps_canonical(value)


def test_canonical_input_is_stored_as_its_encoding() -> None:
    for e in STREAM:
        raw = encode_event(e.signed)
        assert wire_bytes(raw, decode_event(raw)) == raw == dumps_canonical(event_to_obj(e.signed))


def test_non_canonical_input_is_re_encoded() -> None:
    signed = STREAM[1].signed
    canonical = encode_event(signed)
    obj = event_to_obj(signed)
    variants = [
        json.dumps(obj, sort_keys=True, indent=1).encode(),  # whitespace
        json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":"), ensure_ascii=False).encode(),  # order
        json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode().replace(b"k", b"\\u006b"),
    ]
    for raw in variants:
        assert raw != canonical
        signed_again = decode_event(raw)
        assert wire_bytes(raw, signed_again) == canonical
    assert wire_bytes(signed, signed) == canonical  # a decoded event: always encoded


def test_registry_stores_canonical_bytes_whatever_the_input_form() -> None:
    registry = Registry(DOMAIN, MemoryStore())
    pretty = [json.dumps(event_to_obj(e.signed), indent=2).encode() for e in STREAM]
    results = registry.ingest(pretty)
    assert [r.status for r in results] == ["accepted"] * len(STREAM)
    for e in STREAM:
        assert registry.events(e.subject, e.seq, 1) == [encode_event(e.signed)]
