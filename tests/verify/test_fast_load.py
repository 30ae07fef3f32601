"""Loading decides strictly (one JSON parser, one subject decoder) and restores the paused collector."""

from __future__ import annotations

import copy
import gc
import json
from typing import Any

import pytest
from conftest import NOW, Scenario
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tamper import CASES, Obj

from keyreg.core.codec import dumps_canonical
from keyreg.verify import BundleFormatError, BundleRefused, Verifier
from keyreg.verify.bundle import _hex, _hex_list, decode_subject, parse_json


def _canonical(obj: Obj) -> bytes:
    return dumps_canonical(obj)


def test_canonical_bundle_parses_as_the_stdlib_reads_it(scenario: Scenario) -> None:
    data = _canonical(scenario.obj)
    assert parse_json(data) == json.loads(data)
    Verifier.from_bundle(data, scenario.block_hash, now=NOW)


def test_any_json_form_parses_exactly() -> None:
    assert parse_json(b'{"a": 1}') == {"a": 1}
    assert parse_json(b'{"a":"\\u0041"}') == {"a": "A"}
    # orjson reads integers past 64 bits as floats: the strict parser keeps them exact
    assert parse_json(b'{"n":123456789012345678901234567890}') == {"n": 123456789012345678901234567890}


@pytest.mark.parametrize(
    "text",
    [b'{"a":1,"a":1}', b'{"a":[{"b":{"c":1,"c":1}}]}', b'{"a":1,"a":2}', b'[{},{"x":null,"x":null}]'],
)
def test_duplicate_keys_are_refused(text: bytes) -> None:
    with pytest.raises(BundleFormatError, match="duplicate field"):
        parse_json(text)


def _duplicate_first(data: bytes, pair: bytes) -> bytes:
    """``pair`` (a canonical '"key":value') written twice at its first occurrence."""
    assert pair in data
    return data.replace(pair, pair + b"," + pair, 1)


@pytest.mark.parametrize(
    "where",
    [
        "top level",
        "subject",
        "event",
        "published key",
        "batch anchor",
        "governance record",
    ],
)
def test_duplicate_key_deep_in_a_canonical_bundle_is_refused(scenario: Scenario, where: str) -> None:
    # The same value twice: a parser that keeps the last would verify this bundle happily.
    obj = scenario.copy()
    alice = scenario.subject_obj(obj, "alice")
    carol = scenario.subject_obj(obj, "carol")
    pair = {
        "top level": b'"generator":' + json.dumps(obj["generator"]).encode(),
        "subject": b'"subject":"' + alice["subject"].encode() + b'"',
        "event": b'"timestamp":' + str(alice["events"][1]["timestamp"]).encode(),
        "published key": b'"notAfter":' + str(alice["events"][0]["keys"][0]["notAfter"]).encode(),
        "batch anchor": b'"root":"' + alice["batch"]["root"].encode() + b'"',
        "governance record": b'"logIndex":' + str(carol["governance"][0]["logIndex"]).encode(),
    }[where]
    data = _duplicate_first(_canonical(obj), pair)
    with pytest.raises(BundleFormatError, match="duplicate field") as exc:
        Verifier.from_bundle(data, scenario.block_hash, now=NOW)
    assert exc.value.details["part"] == "file"


@pytest.mark.parametrize(("name", "mutate", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_tampered_canonical_bundle_is_refused(
    scenario: Scenario, name: str, mutate: object, error: type[BundleRefused], words: str
) -> None:
    """The tamper cases of test_tamper once more, as canonical text (the fast parser's input)."""
    obj = scenario.copy()
    mutate(scenario, obj)  # type: ignore[operator]
    data = _canonical(obj)
    with pytest.raises(error) as exc:
        Verifier.from_bundle(data, scenario.block_hash, now=NOW)
    assert type(exc.value) is error, f"{name}: got {type(exc.value).__name__}: {exc.value.message}"
    assert words in exc.value.message, exc.value.message


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_restores_the_collector(scenario: Scenario, enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW)
        assert gc.isenabled() is enabled
        with pytest.raises(BundleFormatError):
            Verifier.from_bundle(b"{", scenario.block_hash, now=NOW)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


_ODD_VALUES = st.sampled_from(
    [
        None,
        True,
        0,
        -1,
        1 << 64,
        (1 << 64) - 1,
        1.0,
        "",
        "0x",
        "0X" + "ab" * 32,
        "0x" + "AB" * 32,
        "0x" + "ab" * 31,
        "0x" + "ab" * 33,
        "0x" + "ab" * 31 + "a b",
        "0x0x" + "ab" * 31,
        "ab" * 33,
        [],
        {},
        ["0x" + "ab" * 32],
    ]
)


def _paths(v: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, (*at, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, (*at, i))
    return out


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_subject_decoder_accepts_or_names_the_fault(scenario: Scenario, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["alice", "carol", "dave"]))
    obj = copy.deepcopy(scenario.subject_obj(scenario.obj, name))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(obj)[1:]
        shallow = [p for p in paths if len(p) <= 2 or p[:2] == ("batch", "siblings")]
        path = data.draw(st.sampled_from(shallow) | st.sampled_from(paths))
        parent = obj
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = data.draw(_ODD_VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent["extra"] = 1
        else:
            parent.append(data.draw(_ODD_VALUES))
    refused: BundleFormatError | None = None
    try:
        decode_subject(obj, 3)
    except BundleFormatError as exc:  # any other exception fails the test
        refused = exc
    if refused is not None:
        assert refused.message.startswith("subjects[3]"), refused.message
        assert refused.details["part"] == "subjects"


_H = "0x" + "ab" * 32


@pytest.mark.parametrize(
    "items",
    [
        [],
        [_H],
        [_H, "0x" + "01" * 32],
        [_H.upper().replace("0X", "0x")],
        [_H[:-2]],
        [_H + "ab"],
        [_H[:-1] + " "],
        ["0x" + "ab" * 32 + "0x", "ab" * 32],  # lengths 68 + 64: the prefixes line up, the items do not
        ["0x0x" + "ab" * 31, _H],
        ["00" + "ab" * 32],
        [_H, 7],
        [_H, ["0x"]],
        ["0x" + "ab" * 31 + "zz"],
    ],
)
def test_hex_list_accepts_exactly_what_hex_does(items: list[Any]) -> None:
    try:
        expected: object = tuple(_hex(x, "w", 32) for x in items)
    except BundleFormatError:
        expected = None
    try:
        got: object = _hex_list(items, "w", 32)
    except BundleFormatError:
        got = None
    assert got == expected
