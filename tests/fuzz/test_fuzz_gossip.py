"""Fuzz gossip message decoding: any message is decoded or refused with a KeyregError.

Targets: ``decode_message`` on both paths (``raw``: canonical_batch, then the strict parse, as the
gossip validator calls it; and fully decoded), plain and zlib-compressed, and ``parse_message``
against ``loads_strict`` (it must accept exactly the texts the strict parser accepts).
"""

from __future__ import annotations

import zlib
from typing import Any

from fuzzing import JSON_VALUES, examples, mutated_bytes, mutated_object
from hypothesis import given
from hypothesis import strategies as st

from keyreg.config import Config
from keyreg.core.codec import CanonicalEvent, encode_event, loads_strict
from keyreg.core.errors import KeyregError
from keyreg.core.fork import Duplicity
from keyreg.core.limits import DEFAULT_LIMITS
from keyreg.p2p.testing import conflicting_update, subject_log
from keyreg.p2p.wire import Decoded, compress_message, decode_message, encode_batch, encode_duplicity, parse_message

DOMAIN = Config().domain
_LOG = subject_log(DOMAIN, b"\x21" * 32, 3, 1_700_000_000)
_A = conflicting_update(DOMAIN, b"\x21" * 32, _LOG[1], "a")
_B = conflicting_update(DOMAIN, b"\x21" * 32, _LOG[1], "b")
SEEDS = [
    encode_batch([encode_event(e) for e in _LOG]),
    encode_batch([encode_event(_LOG[0])]),
    encode_duplicity(Duplicity(b"\x01" * 32, 2, _A, b"a" * 32, _B, b"b" * 32)),
]
SEED_OBJECTS = [loads_strict(s) for s in SEEDS]
MAX_BYTES, MAX_EVENTS = 1 << 20, 64

MESSAGES = (
    st.binary(max_size=256)
    | mutated_bytes(SEEDS)
    | mutated_object(SEED_OBJECTS).map(lambda o: _text(o))
    | JSON_VALUES.map(lambda o: _text({"events": [o], "type": "events"}))
)


def _text(obj: Any) -> bytes:
    import json

    return json.dumps(obj, separators=(",", ":")).encode()


def _decode(data: bytes, raw: bool) -> Decoded | None:
    try:
        return decode_message(data, MAX_BYTES, MAX_EVENTS, DEFAULT_LIMITS, raw=raw)
    except KeyregError:
        return None


@examples(400)
@given(MESSAGES)
def test_decode_message_both_paths_agree(data: bytes) -> None:
    plain, raw = _decode(data, False), _decode(data, True)
    assert (plain is None) == (raw is None)
    if plain is None or raw is None:
        return
    assert (plain.kind, len(plain.events), plain.malformed) == (raw.kind, len(raw.events), raw.malformed)
    for full, item in zip(plain.events, raw.events, strict=True):
        assert full == (item.signed if isinstance(item, CanonicalEvent) else item)


@examples(150)
@given(MESSAGES)
def test_compressed_messages_decode_as_their_text(data: bytes) -> None:
    if data[:1] != b"{":
        return  # not a JSON object's text: it would be read as a zlib stream itself
    plain = _decode(data, True)
    packed = _decode(compress_message(data), True)
    assert (plain is None) == (packed is None)
    if plain is not None and packed is not None:
        assert (plain.kind, len(plain.events), plain.malformed) == (packed.kind, len(packed.events), packed.malformed)


@examples(150)
@given(st.binary(max_size=256) | mutated_bytes([zlib.compress(s) for s in SEEDS]))
def test_anything_that_is_not_json_is_a_zlib_stream_or_refused(data: bytes) -> None:
    _decode(data, True)
    _decode(data, False)


def _floats(v: Any) -> bool:
    todo = [v]
    while todo:
        x = todo.pop()
        if isinstance(x, float):
            return True
        if isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, list):
            todo.extend(x)
    return False


@examples(400)
@given(MESSAGES)
def test_parse_message_accepts_what_loads_strict_accepts(data: bytes) -> None:
    results = []
    for parse in (loads_strict, parse_message):
        try:
            results.append(parse(data))
        except KeyregError:
            results.append(KeyregError)
    strict, fast = results
    assert (strict is KeyregError) == (fast is KeyregError), (strict, fast)
    if strict is not KeyregError and not _floats(strict) and not _floats(fast):
        assert strict == fast  # orjson reads integers past 64 bits as floats: compared only without them
