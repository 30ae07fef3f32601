"""The one event decoder against the vectors, an independent strict parser, and hypothesis.

Two properties hold it:
- on parsed objects, :func:`event_from_obj` either returns a record whose JSON object is the input
  (an accepted object holds exactly the canonical values) or refuses with MalformedEvent /
  OversizedInput, never another exception, whatever single field is changed to whatever value;
- on wire bytes, :func:`decode_event` (orjson underneath) gives what the standard library's
  parser with duplicate keys, NaN/Infinity and lone surrogates refused gives, including at every
  place where the two grammars could differ (whitespace, escapes, numbers past 64 bits, UTF-8).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.codec import (
    CanonicalEvent,
    canonical_from_obj,
    decode_event,
    dumps_canonical,
    encode_event,
    event_from_obj,
    event_to_obj,
    loads_strict,
)
from keyreg.core.errors import KeyregError, MalformedEvent, OversizedInput
from keyreg.core.limits import DEFAULT_LIMITS, Limits
from keyreg.core.records import Domain
from tests.unit.event_objects import SHAPES, WIRE, json_paths, with_value

# Values that are wrong in some way for some field: types JSON can carry, bool-vs-int, hex variants.
ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 255, 256, 2**64 - 1, 2**64, 2**256, 1.0, "", "x", "0x", "0X00", "0x0",
    "0x00", "0xAB", "0x" + "ab" * 20, "0x" + "AB" * 20, "0x" + "ab" * 32, " 0x" + "ab" * 32, "0x" + "ab" * 31 + " a",
    "0x" + "zz" * 32, "0x" + "ab" * 65, [], [1], ["0x" + "ab" * 20], {}, {"keyId": "k"}, "\ud800",
]  # fmt: skip


def _accepted_or_refused(obj: Any, limits: Limits = DEFAULT_LIMITS) -> None:
    try:
        signed = event_from_obj(copy.deepcopy(obj), limits)
    except (MalformedEvent, OversizedInput):
        return
    assert event_to_obj(signed) == obj
    got = canonical_from_obj(copy.deepcopy(obj), limits)
    if isinstance(got, CanonicalEvent):  # rendered beside the decode: exactly encode_event's bytes
        assert got == CanonicalEvent(signed, encode_event(signed))
    else:
        assert got == signed


@pytest.mark.parametrize("obj", WIRE)
def test_every_valid_vector_decodes_and_renders_canonically(obj: dict[str, Any]) -> None:
    data = dumps_canonical(obj)
    signed = decode_event(data)
    assert event_to_obj(signed) == obj
    assert encode_event(signed) == data
    assert canonical_from_obj(obj) == CanonicalEvent(signed, data)


@pytest.mark.parametrize("obj", SHAPES)
def test_every_single_field_change_is_accepted_exactly_or_refused(obj: dict[str, Any]) -> None:
    for path in json_paths(obj):
        for value in [..., *ODD_VALUES]:
            _accepted_or_refused(with_value(obj, path, value))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(WIRE), st.data())
def test_random_strings_anywhere_are_accepted_exactly_or_refused(obj: dict[str, Any], data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(json_paths(obj)))
    _accepted_or_refused(with_value(obj, path, data.draw(st.text(max_size=6) | st.integers())))


def _parent(obj: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    target = obj
    for k in path[:-1]:
        target = target[k]
    return path[:-1], target


@pytest.mark.parametrize("obj", SHAPES)
def test_extra_and_renamed_fields_are_refused_in_every_object(obj: dict[str, Any]) -> None:
    for path in json_paths(obj):
        parent, target = _parent(obj, path)
        if isinstance(target, dict):
            with pytest.raises(MalformedEvent, match="unknown field"):
                event_from_obj(with_value(obj, (*parent, "extra"), 1))
            renamed = with_value(with_value(obj, (*parent, "renamed"), target[path[-1]]), path, ...)
            with pytest.raises(MalformedEvent, match=r"unknown field 'renamed'|unknown event kind"):
                decode_event(dumps_canonical(renamed))


def test_limits_are_applied() -> None:
    obj = next(e for e in WIRE if e["kind"] == "inception")
    with pytest.raises(OversizedInput):
        event_from_obj(obj, Limits(max_controllers=0))
    with pytest.raises(OversizedInput):
        event_from_obj(obj, Limits(max_keys_per_event=0))
    with pytest.raises(OversizedInput):
        decode_event(dumps_canonical(obj), Limits(max_event_bytes=10))


def test_a_known_domain_is_shared_and_any_other_is_decoded() -> None:
    obj = next(e for e in WIRE if e["kind"] == "update")
    ours = Domain(obj["chainId"], bytes.fromhex(obj["verifyingContract"][2:]))
    assert decode_event(dumps_canonical(obj), domain=ours).domain is ours
    assert decode_event(dumps_canonical(obj)).domain == ours
    other = Domain(ours.chain_id + 1, ours.verifying_contract)
    assert decode_event(dumps_canonical(obj), domain=other).domain == ours
    renamed = Domain(ours.chain_id, ours.verifying_contract, name="other")
    got = decode_event(dumps_canonical(obj), domain=renamed).domain
    assert got == ours
    assert got is not renamed


# ---------------------------------------------------------------------------------------------
# Wire bytes: decode_event against the standard library's parser, made as strict by hand.


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _stdlib_strict(data: bytes) -> Any:
    value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate has no UTF-8 form
    return value


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except KeyregError as exc:
        return "refused", type(exc).__name__
    except ValueError:  # the reference parser (UnicodeError is a ValueError)
        return "refused", "MalformedEvent"


def _reference(data: bytes) -> Any:
    if len(data) > DEFAULT_LIMITS.max_event_bytes:
        raise OversizedInput("too large")
    return event_from_obj(_stdlib_strict(data))


def _agree(data: bytes) -> None:
    assert _outcome(decode_event, data) == _outcome(_reference, data), data


CANONICAL = [dumps_canonical(obj) for obj in WIRE]
CANONICAL_SHAPES = [dumps_canonical(obj) for obj in SHAPES]


def test_colons_and_escaped_quotes_inside_strings_are_not_keys() -> None:
    obj = copy.deepcopy(next(e for e in WIRE if e["kind"] == "update" and e["publish"]))
    obj["publish"][0]["keyId"] = "did:key:1"
    obj["metadata"] = 'a":"b\\":{"c":1}'
    assert decode_event(dumps_canonical(obj)) == event_from_obj(obj)


@pytest.mark.parametrize("field", ["chainId", "timestamp", "seq"])
@pytest.mark.parametrize("value", [2**64 - 1, 2**64, 2**255, 2**256 - 1, 2**256, -(2**63), -(2**63) - 1])
def test_integers_beyond_64_bits_are_read_exactly(field: str, value: int) -> None:
    # orjson reads these as floats; chainId may be any uint256, so the exact parser reads them.
    obj = copy.deepcopy(next(e for e in WIRE if e["kind"] == "update"))
    obj[field] = value
    _agree(dumps_canonical(obj))
    if field == "chainId" and 0 <= value < 2**256:
        assert decode_event(dumps_canonical(obj)).domain.chain_id == value


def _text_variants(data: bytes) -> list[bytes]:
    """Byte-level changes to a canonical event that JSON grammars could treat differently."""
    text = data.decode()
    out = [
        b" " + data, data + b"\n", data.replace(b'":', b'" :', 1), data.replace(b'":', b'":\t', 1),
        data.replace(b",", b",\r\n", 2), data.replace(b"{", b"{ ", 1), data[:-1] + b',"kind":"update"}',
        b'{"kind":"update",' + data[1:], data.replace(b'"kind"', b'"\\u006bind"'),
        data.replace(b'"timestamp":', b'"timestamp":-0,"x":', 1), b"\xef\xbb\xbf" + data, data + b"\x00",
        data.replace(b"}", b",}", 1), data.replace(b"]", b",]", 1),
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
        for insert in ("\\ud800", "\\udc00", "\\ud83d\\ude00", "\\ud800\\u0041", "\\u0000", "\\/", '\\"', "\\\\",
                       "é", "\\u00e9", "\x7f", "\x1f", "\\x41", "\u2028", "a:b", '\\":'):  # fmt: skip
            out.append((text[:j] + insert + text[j:]).encode())
        out.append(text[:j].encode() + b"\xed\xa0\x80" + text[j:].encode())  # a UTF-8-encoded surrogate
        out.append(text[:j].encode() + b"\xc0\x80" + text[j:].encode())  # an overlong NUL
        out.append(text[:j].encode() + b"\xf4\x90\x80\x80" + text[j:].encode())  # beyond U+10FFFF
        out.append(text[:j].encode() + b"\xef\xbf\xbe" + text[j:].encode())  # U+FFFE, a noncharacter
    return out


@pytest.mark.parametrize("data", CANONICAL_SHAPES)
def test_grammar_corners_agree_with_the_stdlib(data: bytes) -> None:
    for variant in _text_variants(data):
        _agree(variant)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CANONICAL), st.data())
def test_random_byte_edits_agree_with_the_stdlib(data: bytes, draw: st.DataObject) -> None:
    pieces = [b" ", b"\n", b":", b'"', b",", b"\\", b"{", b"}", b"[", b"]", b"0", b"-", b"e", b".", b"\\u0000",
              b'"x":1,', b'":', b"\xff", b"\xc3\xa9"]  # fmt: skip
    chunk = draw.draw(st.sampled_from(pieces) | st.binary(max_size=4))
    i = draw.draw(st.integers(0, len(data)))
    j = draw.draw(st.integers(i, min(len(data), i + 3)))
    _agree(data[:i] + chunk + data[j:])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CANONICAL_SHAPES), st.data())
def test_a_duplicate_key_in_any_object_is_refused_by_name(data: bytes, draw: st.DataObject) -> None:
    # Send one key of some object twice: another value first, then the original.
    text = data.decode()
    starts = [i for i in range(len(text)) if text.startswith('":', i) and text[i - 1] != "\\"]  # not in a string
    i = draw.draw(st.sampled_from(starts))
    k = text.rfind('"', 0, i) + 1
    name = text[k:i]
    value = draw.draw(st.sampled_from(["1", '"x"', "[]", "{}", "null", "1.5", str(2**70)]))
    with pytest.raises(MalformedEvent, match=f"duplicate field '{name}'"):
        decode_event((text[: i + 2] + f'{value},"{name}":' + text[i + 2 :]).encode())


# loads_strict on any JSON: equal to the strict stdlib parse, and duplicates refused at any depth.
_KEYS = st.text(alphabet='ab:"\\{}[] \u00e9', max_size=4)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _KEYS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.sampled_from([None, 1]), st.booleans())
def test_loads_strict_reads_any_json_as_the_stdlib_does(value: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode()
    if max(text.count(b"["), text.count(b"{")) > DEFAULT_LIMITS.max_json_depth:
        return
    assert loads_strict(text) == _stdlib_strict(text)


@settings(max_examples=200, deadline=None)
@given(_JSON, _KEYS, st.integers(0, 20), st.booleans())
def test_loads_strict_refuses_a_repeated_key_at_any_depth(value: Any, key: str, depth: int, spaced: bool) -> None:
    member = json.dumps({key: value})[1:-1]  # '"key": value'
    repeated = "{" + member + ("  ,\n " if spaced else ",") + member + "}"
    text = ("[" * depth + json.dumps(value) + "," + repeated + "]" * depth).encode()
    if depth == 0:
        text = repeated.encode()
    with pytest.raises(ValueError, match="duplicate key"):
        _stdlib_strict(text)
    with pytest.raises(MalformedEvent, match="duplicate field"):
        loads_strict(text)
