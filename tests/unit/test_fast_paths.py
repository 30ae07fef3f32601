"""The validator's fast paths agree with the reference implementations they short-cut.

The fast paths only ever accept; anything they doubt goes to the reference code, which decides and
raises the precise error. These tests check both halves: every valid vector takes the fast path
(so a silent fall-back cannot hide a slowdown), and on mutated inputs the public function gives
exactly what the reference gives (same record, or same error class and message).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import codec, log
from node.core.errors import KeyregError
from node.core.limits import DEFAULT_LIMITS, Limits

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
LOGS = json.loads((VECTORS / "valid_logs.json").read_text())["logs"]
WIRE = [e for log in LOGS for e in log["events"]]

# Values that are wrong in some way for some field: types JSON can carry, bool-vs-int, hex variants.
ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 255, 256, 2**64 - 1, 2**64, 2**256, 1.0, "", "x", "0x", "0X00", "0x0",
    "0x00", "0xAB", "0x" + "ab" * 20, "0x" + "AB" * 20, "0x" + "ab" * 32, " 0x" + "ab" * 32, "0x" + "ab" * 31 + " a",
    "0x" + "zz" * 32, "0x" + "ab" * 65, [], [1], ["0x" + "ab" * 20], {}, {"keyId": "k"},
]  # fmt: skip


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except KeyregError as exc:
        return type(exc).__name__, str(exc)


def _both(obj: Any, limits: Limits = DEFAULT_LIMITS) -> None:
    got = _outcome(codec.event_from_obj, copy.deepcopy(obj), limits)
    want = _outcome(codec._reference_event_from_obj, copy.deepcopy(obj), limits)
    assert got == want


@pytest.mark.parametrize("obj", WIRE)
def test_every_valid_vector_takes_the_fast_path(obj: dict[str, Any]) -> None:
    assert codec._fast_event(obj, DEFAULT_LIMITS) == codec._reference_event_from_obj(obj, DEFAULT_LIMITS)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON object (dict keys and list indexes)."""
    out: list[tuple[Any, ...]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    obj = copy.deepcopy(obj)
    target = obj
    for k in path[:-1]:
        target = target[k]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


# One event of each shape: inception, update (publish / retire / metadata), rotation, revocation.
SHAPES = list({(e["kind"], bool(e.get("publish")), bool(e.get("retire"))): e for e in WIRE}.values())


@pytest.mark.parametrize("obj", SHAPES)
def test_decoders_agree_on_every_single_field_change(obj: dict[str, Any]) -> None:
    for path in _paths(obj):
        for value in [..., *ODD_VALUES]:
            _both(_set(obj, path, value))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(WIRE), st.data())
def test_decoders_agree_on_random_strings(obj: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_paths(obj)))
    _both(_set(obj, path, data.draw(st.text(max_size=6))))


@pytest.mark.parametrize("obj", WIRE[:6])
def test_decoders_agree_on_extra_fields_and_limits(obj: dict[str, Any]) -> None:
    for path in _paths(obj):
        parent = path[:-1]
        target = obj
        for k in parent:
            target = target[k]
        if isinstance(target, dict):
            _both(_set(obj, (*parent, "extra"), 1))
    _both(obj, Limits(max_controllers=0))
    _both(obj, Limits(max_keys_per_event=0))
    _both(obj, Limits(max_purposes=1))


# ---------------------------------------------------------------------------------------------
# check_shape: _shape_ok accepts only what the reference rules accept, and every rejection is the
# reference's own error.

SIGNED = [codec.event_from_obj(e) for e in WIRE]
EVENTS = list({(type(s.event).__name__, len(getattr(s.event, "publish", ()))): s.event for s in SIGNED}.values())
LIMITS = [
    DEFAULT_LIMITS,
    Limits(max_controllers=1, max_keys_per_event=1, max_purposes=1, max_key_id_chars=3, max_purpose_chars=3),
    Limits(max_metadata_bytes=4, max_reason_bytes=4),
]
A, B = b"\x11" * 20, b"\x22" * 20
KEY_VARIANTS: list[dict[str, Any]] = [
    {"key_id": ""}, {"key_id": "bad id"}, {"key_id": "k" * 65}, {"key_id": "ok:key-1.x"}, {"key_id": "ü"},
    {"alg": "RSA"}, {"alg": "secp256k1"}, {"alg": "P-256", "public_key": b"\x04" + b"\x01" * 32},
    {"alg": "Ed25519", "public_key": b"\x01" * 33}, {"public_key": b""},
    {"purposes": ()}, {"purposes": ("sign", "sign")}, {"purposes": ("Sign",)}, {"purposes": ("",)},
    {"purposes": ("a" * 33,)}, {"purposes": ("abcd", "x")}, {"purposes": tuple(f"p{i}" for i in range(17))},
    {"not_after": 1, "not_before": 1}, {"not_after": 1, "not_before": 2}, {"not_after": 3, "not_before": 2},
]  # fmt: skip
EVENT_VARIANTS: list[dict[str, Any]] = [
    {"seq": 0}, {"metadata": "x" * 4097}, {"metadata": "é" * 2049}, {"metadata": "abcd"}, {"metadata": "ab\u00e9"},
    {"set_metadata": False}, {"set_metadata": False, "metadata": ""}, {"publish": (), "retire": ()},
    {"controllers": ()}, {"controllers": (B, A)}, {"controllers": (A, A)}, {"controllers": (A, B)},
    {"controllers": (A,) * 17}, {"threshold": 0}, {"threshold": 2}, {"reason": "x" * 1025}, {"reason": "abcde"},
    {"key_id": ""}, {"key_id": "bad id"}, {"key_id": "k" * 100},
]  # fmt: skip


def _shape_outcome(fn: Any, event: Any, limits: Limits) -> tuple[str, Any]:
    try:
        fn(event, limits)
    except KeyregError as exc:
        return type(exc).__name__, str(exc)
    return "ok", None


def _variants() -> list[Any]:
    out: list[Any] = list(EVENTS)
    for event in EVENTS:
        fields = {f for f in event.__dataclass_fields__ if f != "kind"}
        out += [replace(event, **v) for v in EVENT_VARIANTS if set(v) <= fields]
        for name in ("keys", "publish"):
            keys = getattr(event, name, ())
            if keys:
                out += [replace(event, **{name: (replace(keys[0], **v),)}) for v in KEY_VARIANTS]
                out.append(replace(event, **{name: (keys[0], keys[0])}))
                out.append(replace(event, **{name: (keys[0], replace(keys[0], key_id="other"))}))
        retire = getattr(event, "retire", ())
        if retire:
            out.append(replace(event, retire=(retire[0], retire[0])))
            out.append(replace(event, retire=(retire[0], replace(retire[0], key_id="other"))))
    return out


@pytest.mark.parametrize("limits", LIMITS)
def test_shape_fast_path_agrees_with_the_reference_rules(limits: Limits) -> None:
    variants = _variants()
    assert len(variants) > 80
    for event in variants:
        for _ in range(2):  # the second round runs on remembered key ids and purpose lists
            assert _shape_outcome(log.check_shape, event, limits) == _shape_outcome(
                log._reference_check_shape, event, limits
            ), event


def test_every_valid_vector_passes_the_shape_fast_path() -> None:
    assert all(log._shape_ok(s.event, DEFAULT_LIMITS) for s in SIGNED)
