"""canonical_from_obj agrees with event_from_obj + encode_event on every input, valid or not."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import orjson
import pytest

from node.core.canonical import CanonicalEvent, canonical_from_obj
from node.core.codec import _reference_event_from_obj, encode_event, event_from_obj
from node.core.errors import KeyregError
from node.core.limits import DEFAULT_LIMITS, Limits
from tests.unit.event_objects import SHAPES, WIRE, json_paths, with_value

ODD_VALUES: list[Any] = [None, True, 0, -1, 2**64, 2**256, 1.0, "", "0x", "0xAB", "0x" + "ab" * 32, [], {}, "\ud800"]


def _outcome(fn: Any, obj: Any, limits: Limits) -> tuple[str, Any]:
    try:
        return "ok", fn(copy.deepcopy(obj), limits)
    except KeyregError as exc:
        return type(exc).__name__, str(exc)


def _expected(obj: Any, limits: Limits) -> Any:
    """The plain composition canonical_from_obj short-cuts: decode, then render with orjson."""
    signed = event_from_obj(obj, limits)
    try:
        wire = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an int over 64 bits, a lone surrogate: the caller encodes
        return signed
    assert wire == encode_event(signed)
    return CanonicalEvent(signed, wire)


def _agree(obj: Any, limits: Limits = DEFAULT_LIMITS) -> None:
    got = _outcome(canonical_from_obj, obj, limits)
    assert got == _outcome(_expected, obj, limits), obj
    assert type(got[1]) is not tuple or type(got[1]) is CanonicalEvent  # exactly the class, no subclass


@pytest.mark.parametrize("obj", WIRE)
def test_every_valid_vector_is_a_canonical_event(obj: dict[str, Any]) -> None:
    got = canonical_from_obj(obj)
    assert type(got) is CanonicalEvent
    assert got == CanonicalEvent(event_from_obj(obj), encode_event(event_from_obj(obj)))
    assert got.signed is got[0]
    assert got.wire is got[1]


@pytest.mark.parametrize("obj", SHAPES)
def test_canonical_from_obj_agrees_on_every_single_field_change(obj: dict[str, Any]) -> None:
    for path in json_paths(obj):
        for value in [..., *ODD_VALUES]:
            _agree(with_value(obj, path, value))
    _agree(obj, Limits(max_controllers=0))
    _agree(obj, Limits(max_keys_per_event=0))
    _agree([obj])


@pytest.mark.parametrize("obj", WIRE)
def test_fast_records_have_every_slot_and_the_exact_class(obj: dict[str, Any]) -> None:
    # _fast_event builds updates and signed events inline (records.builder_class): a slot left out
    # would only show when read.
    item = canonical_from_obj(obj)
    assert isinstance(item, CanonicalEvent)
    got = item.signed
    want = _reference_event_from_obj(obj, DEFAULT_LIMITS)
    for record, reference in ((got, want), (got.event, want.event), (got.domain, want.domain)):
        assert type(record) is type(reference)
        for f in dataclasses.fields(record):
            assert getattr(record, f.name) == getattr(reference, f.name)
