"""The validator's fast paths agree with the reference implementations they short-cut.

The fast paths only ever accept; anything they doubt goes to the reference code, which decides and
raises the precise error. These tests check both halves: every valid vector takes the fast path
(so a silent fall-back cannot hide a slowdown), and on mutated inputs the public function gives
exactly what the reference gives (same record, or same error class and message).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import codec, log
from node.core.errors import KeyregError, WrongNetwork
from node.core.limits import DEFAULT_LIMITS, Limits
from node.core.records import Domain, SignedEvent
from tests.unit.event_objects import SHAPES, WIRE, json_paths, with_value

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


@pytest.mark.parametrize("obj", SHAPES)
def test_decoders_agree_on_every_single_field_change(obj: dict[str, Any]) -> None:
    for path in json_paths(obj):
        for value in [..., *ODD_VALUES]:
            _both(with_value(obj, path, value))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(WIRE), st.data())
def test_decoders_agree_on_random_strings(obj: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(json_paths(obj)))
    _both(with_value(obj, path, data.draw(st.text(max_size=6))))


def _parent(obj: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    """The path of the container holding the value at ``path``, and that container."""
    target = obj
    for k in path[:-1]:
        target = target[k]
    return path[:-1], target


@pytest.mark.parametrize("obj", WIRE[:6])
def test_decoders_agree_on_extra_fields_and_limits(obj: dict[str, Any]) -> None:
    for path in json_paths(obj):
        parent, target = _parent(obj, path)
        if isinstance(target, dict):
            _both(with_value(obj, (*parent, "extra"), 1))
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


# ---------------------------------------------------------------------------------------------
# decode_event: the orjson fast path agrees with the strict stdlib parser and the reference decoder
# on wire bytes, including where orjson's grammar differs from json's.


def _reference_decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SignedEvent:
    return codec._reference_event_from_obj(codec.loads_strict(data), limits)


def _both_bytes(data: bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    assert _outcome(codec.decode_event, data, limits) == _outcome(_reference_decode, data, limits), data


CANONICAL = [codec.dumps_canonical(obj) for obj in WIRE]


@pytest.mark.parametrize("data", CANONICAL)
def test_every_valid_vector_takes_the_fast_decode_path(data: bytes) -> None:
    assert codec._fast_decode(data, DEFAULT_LIMITS) == _reference_decode(data)


def test_fast_decode_with_colons_inside_strings() -> None:
    # Key ids and metadata may hold ':' (more ':' than keys): the '":' count still proves the keys.
    obj = copy.deepcopy(next(e for e in WIRE if e["kind"] == "update" and e["publish"]))
    obj["publish"][0]["keyId"] = "did:key:1"
    data = codec.dumps_canonical(obj)
    assert codec._fast_decode(data, DEFAULT_LIMITS) == _reference_decode(data)


@pytest.mark.parametrize("field", ["chainId", "timestamp", "seq"])
@pytest.mark.parametrize("value", [2**64 - 1, 2**64, 2**255, 2**256 - 1, 2**256, -(2**63), -(2**63) - 1])
def test_integers_beyond_64_bits_decode_on_the_reference_path(field: str, value: int) -> None:
    # orjson turns these into floats, which the fast path refuses; chainId may be any uint256.
    obj = copy.deepcopy(next(e for e in WIRE if e["kind"] == "update"))
    obj[field] = value
    _both_bytes(codec.dumps_canonical(obj))
    if field == "chainId" and 0 <= value < 2**256:
        assert codec.decode_event(codec.dumps_canonical(obj)).domain.chain_id == value


def _text_variants(data: bytes) -> list[bytes]:
    """Byte-level changes to a canonical event that the JSON grammars treat differently."""
    text = data.decode()
    out = [
        b" " + data, data + b"\n", data.replace(b'":', b'" :', 1), data.replace(b'":', b'":\t', 1),
        data.replace(b",", b",\r\n", 2), data.replace(b"{", b"{ ", 1), data[:-1] + b',"kind":"update"}',
        b'{"kind":"update",' + data[1:], data.replace(b'"kind"', b'"\\u006bind"'),
        data.replace(b'"timestamp":', b'"timestamp":-0,"x":', 1), data.replace(b"\xef\xbb\xbf", b""),
        b"\xef\xbb\xbf" + data, data + b"\x00", data.replace(b"}", b",}", 1), data.replace(b"]", b",]", 1),
    ]  # fmt: skip
    for name in ("timestamp", "seq", "threshold", "chainId", "notBefore", "notAfter", "effectiveAt"):
        i = text.find(f'"{name}":')
        if i < 0:
            continue
        j = i + len(name) + 3
        k = j
        while k < len(text) and text[k] in "-0123456789":
            k += 1
        for value in ("1.0", "-0", "-0.0", "1e0", "1E2", "0.5e1", "NaN", "Infinity", "-Infinity", "1e400", "00",
                      str(2**64), str(2**256 - 1), "-1", "true", '"1"'):  # fmt: skip
            out.append((text[:j] + value + text[k:]).encode())
    for name in ("metadata", "reason", "keyId"):
        i = text.find(f'"{name}":"')
        if i < 0:
            continue
        j = i + len(name) + 4
        for insert in ("\\ud800", "\\udc00", "\\ud83d\\ude00", "\\ud800\\u0041", "\\u0000", "\\/", "\\\"", "\\\\",
                       "é", "\\u00e9", "\x7f", "\x1f", "\\x41", "\u2028", "a:b", '\\":'):  # fmt: skip
            out.append((text[:j] + insert + text[j:]).encode())
        out.append(text[:j].encode() + b"\xed\xa0\x80" + text[j:].encode())  # a UTF-8-encoded surrogate
        out.append(text[:j].encode() + b"\xc0\x80" + text[j:].encode())  # an overlong NUL
        out.append(text[:j].encode() + b"\xf4\x90\x80\x80" + text[j:].encode())  # beyond U+10FFFF
        out.append(text[:j].encode() + b"\xef\xbf\xbe" + text[j:].encode())  # U+FFFE, a noncharacter
    return out


@pytest.mark.parametrize("data", [CANONICAL[i] for i in {id(s): i for i, s in enumerate(SHAPES)}.values()])
def test_decoders_agree_on_grammar_differences(data: bytes) -> None:
    for variant in _text_variants(data):
        _both_bytes(variant)


@pytest.mark.parametrize("obj", SHAPES)
def test_decoders_agree_when_any_field_is_renamed(obj: dict[str, Any]) -> None:
    # The fast path checks field sets by size and reads every field: a renamed field must not pass.
    for path in json_paths(obj):
        parent, target = _parent(obj, path)
        if isinstance(target, dict):
            renamed = with_value(with_value(obj, (*parent, "renamed"), target[path[-1]]), path, ...)
            _both(renamed)
            _both_bytes(codec.dumps_canonical(renamed))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CANONICAL), st.data())
def test_decoders_agree_on_random_byte_edits(data: bytes, draw: st.DataObject) -> None:
    pieces = [b" ", b"\n", b":", b'"', b",", b"\\", b"{", b"}", b"[", b"]", b"0", b"-", b"e", b".", b"\\u0000",
              b'"x":1,', b'":', b"\xff", b"\xc3\xa9"]  # fmt: skip
    chunk = draw.draw(st.sampled_from(pieces) | st.binary(max_size=4))
    i = draw.draw(st.integers(0, len(data)))
    j = draw.draw(st.integers(i, min(len(data), i + 3)))
    _both_bytes(data[:i] + chunk + data[j:])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SHAPES), st.data())
def test_decoders_agree_on_duplicate_keys_anywhere(obj: dict[str, Any], draw: st.DataObject) -> None:
    # Re-send one key of some object with another value, before or after the original.
    text = codec.dumps_canonical(obj).decode()
    starts = [i for i in range(len(text)) if text.startswith('":', i)]
    i = draw.draw(st.sampled_from(starts))
    k = text.rfind('"', 0, i) + 1
    name = text[k:i]
    value = draw.draw(st.sampled_from(["1", '"x"', "[]", "{}", "null", text[i + 2 : i + 8]]))
    j = text.rfind("{", 0, k) + 1
    _both_bytes((text[:j] + f'"{name}":{value},' + text[j:]).encode())


def test_remembered_equal_domains_never_admit_another_network() -> None:
    # apply_event remembers the (event domain, registry domain) pair it found equal last.
    first = next(e for e in WIRE if e["kind"] == "inception")
    signed = codec.decode_event(codec.dumps_canonical(first))
    same = Domain(signed.domain.chain_id, signed.domain.verifying_contract)  # equal, another object
    other = Domain(signed.domain.chain_id + 1, signed.domain.verifying_contract)
    for _ in range(2):
        assert log.apply_event(None, signed, same).subject
        with pytest.raises(WrongNetwork):
            log.apply_event(None, signed, other)
    relabelled = {**first, "chainId": first["chainId"] + 1}
    foreign = codec.decode_event(codec.dumps_canonical(relabelled))
    with pytest.raises(WrongNetwork):
        log.apply_event(None, foreign, same)
