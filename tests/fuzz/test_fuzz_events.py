"""Fuzz the event decoders: any input is a decoded event or a KeyregError, never anything else.

Targets: ``decode_event`` (wire bytes: orjson fast path, strict fallback), ``event_from_obj`` and
``canonical_from_obj`` (parsed objects, as gossip and sync hand them over), and ``Registry.ingest``
(which decodes, checks shape and judges). Accepted events must re-encode and decode to themselves.
"""

from __future__ import annotations

from typing import Any

import pytest
from fuzzing import JSON_VALUES, VALID_EVENT_BYTES, VALID_EVENTS, examples, json_text, mutated_bytes, mutated_object
from hypothesis import given
from hypothesis import strategies as st

from keyreg.core.codec import CanonicalEvent, canonical_from_obj, decode_event, encode_event, event_from_obj
from keyreg.core.errors import KeyregError
from keyreg.core.records import Domain, SignedEvent
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

ANY_BYTES = st.binary(max_size=512) | mutated_bytes(VALID_EVENT_BYTES)
ANY_OBJECT = JSON_VALUES | mutated_object(VALID_EVENTS)


def _decodes_or_refuses(data: bytes) -> SignedEvent | None:
    try:
        signed = decode_event(data)
    except KeyregError:
        return None
    wire = encode_event(signed)  # an accepted event always has a canonical form ...
    assert decode_event(wire) == signed  # ... that decodes to itself
    return signed


@examples(400)
@given(ANY_BYTES)
def test_decode_event_bytes(data: bytes) -> None:
    _decodes_or_refuses(data)


@examples(400)
@given(ANY_OBJECT)
def test_event_from_obj_and_canonical_from_obj_agree(obj: Any) -> None:
    try:
        signed = event_from_obj(obj)
    except KeyregError as exc:
        code = exc.code
    else:
        code = ""
    if code:
        with pytest.raises(KeyregError) as refused:
            canonical_from_obj(obj)
        assert refused.value.code == code
        return
    got = canonical_from_obj(obj)
    if isinstance(got, CanonicalEvent):
        assert got.signed == signed
        assert got.wire == encode_event(signed)
    else:
        assert got == signed
    _decodes_or_refuses(json_text(obj))


_DOMAIN = Domain(VALID_EVENTS[0]["chainId"], bytes.fromhex(VALID_EVENTS[0]["verifyingContract"][2:]))


@examples(100)
@given(st.lists(ANY_BYTES | ANY_OBJECT.map(json_text), min_size=1, max_size=4))
def test_registry_ingest_judges_every_input(items: list[bytes]) -> None:
    registry = Registry(_DOMAIN, MemoryStore(), clock=lambda: 2_000_000_000)
    results = registry.ingest([*VALID_EVENT_BYTES[:2], *items])
    assert len(results) == len(items) + 2
    for r in results:
        assert r.status in ("accepted", "known", "duplicity", "rejected")
        assert (r.error is not None) == (r.status == "rejected")
