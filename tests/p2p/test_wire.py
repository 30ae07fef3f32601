"""Wire formats, framing and the persistent peer key: fast, no network."""

from __future__ import annotations

import os
import random
import stat
import zlib

import pytest
import trio

from keyreg.config import Config
from keyreg.core.codec import dumps_canonical, encode_event, loads_strict
from keyreg.core.errors import MalformedEvent, OversizedInput
from keyreg.core.fork import Duplicity
from keyreg.core.limits import DEFAULT_LIMITS
from keyreg.p2p.host import load_or_create_key
from keyreg.p2p.testing import conflicting_update, subject_log
from keyreg.p2p.wire import (
    DUPLICITY,
    EVENTS,
    FrameError,
    FrameReader,
    FrameWriter,
    canonical_batch,
    compress_message,
    decode_message,
    encode_batch,
    encode_duplicity,
    expand_message,
    frame,
    parse_message,
    topic_name,
)

DOMAIN = Config().domain
SECRET = b"\x11" * 32


@pytest.fixture(scope="module")
def log3() -> list:
    return subject_log(DOMAIN, SECRET, 2, 1_700_000_000)


def test_topic_names_the_network() -> None:
    assert topic_name(31337, "0xABCD") == "/keyreg/1/31337/0xabcd/events"


def test_batch_is_canonical_json_and_round_trips(log3: list) -> None:
    raws = [encode_event(s) for s in log3]
    data = encode_batch(raws)
    assert dumps_canonical(loads_strict(data)) == data
    decoded = decode_message(data, 1 << 20, 256, DEFAULT_LIMITS)
    assert decoded.kind == EVENTS
    assert decoded.events == log3
    assert decoded.malformed == 0


def test_duplicity_message_is_deterministic(log3: list) -> None:
    a = conflicting_update(DOMAIN, SECRET, log3[1], "a")
    b = conflicting_update(DOMAIN, SECRET, log3[1], "b")
    ev1 = Duplicity(b"\x01" * 32, 2, a, b"a" * 32, b, b"b" * 32)
    ev2 = Duplicity(b"\x01" * 32, 2, b, b"b" * 32, a, b"a" * 32)
    data = encode_duplicity(ev1)
    assert data == encode_duplicity(ev2)
    assert dumps_canonical(loads_strict(data)) == data
    decoded = decode_message(data, 1 << 20, 256, DEFAULT_LIMITS)
    assert decoded.kind == DUPLICITY
    assert {id(e) for e in decoded.events}
    assert len(decoded.events) == 2


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"type":"events"}',
        b'{"type":"events","events":[]}',
        b'{"type":"other","events":[1]}',
        b'{"type":"events","events":[1],"extra":1}',
        b'{"type":"duplicity","events":[1,2]}',
    ],
)
def test_malformed_messages_are_rejected(data: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode_message(data, 1 << 20, 256, DEFAULT_LIMITS)


def test_limits_on_size_and_count(log3: list) -> None:
    data = encode_batch([encode_event(s) for s in log3])
    with pytest.raises(OversizedInput):
        decode_message(data, len(data) - 1, 256, DEFAULT_LIMITS)
    with pytest.raises(MalformedEvent):
        decode_message(data, 1 << 20, 2, DEFAULT_LIMITS)


def test_bad_events_inside_a_batch_are_counted_not_fatal(log3: list) -> None:
    data = b'{"events":[' + encode_event(log3[0]) + b',{"kind":"nope"}],"type":"events"}'
    decoded = decode_message(data, 1 << 20, 256, DEFAULT_LIMITS)
    assert len(decoded.events) == 1
    assert decoded.malformed == 1


def _with_duplicate(raw: bytes, field: bytes) -> bytes:
    """``raw`` with ``field`` repeated once more right after the opening brace (last one wins)."""
    start = raw.index(b'"' + field + b'":')
    end = raw.index(b",", start)
    return b"{" + raw[start:end] + b"," + raw[1:]


def test_parse_message_agrees_with_the_strict_parser(log3: list) -> None:
    raws = [encode_event(s) for s in log3]
    good = encode_batch(raws)
    assert parse_message(good) == loads_strict(good)
    # Strings holding ':' defeat the colon count: the strict parser decides, with the same result.
    colon = good.replace(b'"type":"events"', b'"type":"events","x":"a:b"')
    with pytest.raises(MalformedEvent):
        decode_message(colon, 1 << 20, 256, DEFAULT_LIMITS)
    assert parse_message(colon) == loads_strict(colon)


def test_raw_items_are_the_canonical_bytes(log3: list) -> None:
    raws = [encode_event(s) for s in log3]
    decoded = decode_message(encode_batch(raws), 1 << 20, 256, DEFAULT_LIMITS, raw=True)
    # Decoded once, with the bytes the registry stores as they are (no re-parse, no re-encoding).
    assert [e.wire for e in decoded.events] == raws  # type: ignore[union-attr]
    assert [e.signed for e in decoded.events] == list(log3)  # type: ignore[union-attr]
    # Objects orjson cannot render canonically (ints over 64 bits) are decoded here instead.
    big = b'{"events":[{"kind":"nope","seq":' + str(2**70).encode() + b'}],"type":"events"}'
    decoded = decode_message(big, 1 << 20, 256, DEFAULT_LIMITS, raw=True)
    assert decoded.events == []
    assert decoded.malformed == 1
    # An integer beyond 64 bits where one may be valid (chainId is a uint256) keeps its value.
    huge = raws[0].replace(b'"chainId":31337', b'"chainId":' + str(2**70).encode())
    decoded = decode_message(encode_batch([huge]), 1 << 20, 256, DEFAULT_LIMITS, raw=True)
    assert [e.domain.chain_id for e in decoded.events] == [2**70]  # type: ignore[union-attr]


@pytest.mark.parametrize("where", ["message", "event", "nested"])
def test_duplicate_keys_anywhere_are_refused(log3: list, where: str) -> None:
    raws = [encode_event(s) for s in log3]
    if where == "message":
        data = b'{"type":"events",' + encode_batch(raws)[1:]
    elif where == "event":
        data = encode_batch([raws[0], _with_duplicate(raws[1], b"seq")])
    else:  # inside a published key, an object nested in an event
        head = log3[-1]
        raw = encode_event(conflicting_update(DOMAIN, b"\x01" * 32, head, "dup"))
        assert raw.count(b'"alg":"Ed25519"') == 1
        data = encode_batch([raws[0], raw.replace(b'"alg":"Ed25519"', b'"alg":"X","alg":"Ed25519"')])
    with pytest.raises(MalformedEvent):
        loads_strict(data)
    with pytest.raises(MalformedEvent):
        parse_message(data)


def _outcome(data: bytes) -> object:
    """decode_message(raw=True) as a comparable value: its events and malformed count, or the error."""
    try:
        d = decode_message(data, 1 << 20, 256, DEFAULT_LIMITS, raw=True)
    except MalformedEvent as exc:
        return (type(exc).__name__, str(exc))
    return (d.kind, [getattr(e, "wire", e) for e in d.events], [getattr(e, "signed", e) for e in d.events], d.malformed)


def _general(data: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as m:
        m.setattr("keyreg.p2p.wire.canonical_batch", lambda *a, **k: None)
        return _outcome(data)


def test_canonical_batch_accepts_exactly_canonical_batches(log3: list, monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [encode_event(s) for s in log3]
    good = encode_batch(raws)
    items = canonical_batch(good, DEFAULT_LIMITS, 256)
    assert items is not None
    assert [i.wire for i in items] == raws
    assert [i.signed for i in items] == list(log3)
    assert _outcome(good) == _general(good, monkeypatch)
    assert canonical_batch(good, DEFAULT_LIMITS, 2) is None  # over the count: the general path refuses
    nested = encode_event(conflicting_update(DOMAIN, b"\x01" * 32, log3[-1], "dup"))
    variants = [
        b'{"type":"events",' + good[1:],  # duplicate key in the message
        encode_batch([raws[0], _with_duplicate(raws[1], b"seq")]),  # ... in an event
        encode_batch([raws[0], nested.replace(b'"alg":"Ed25519"', b'"alg":"X","alg":"Ed25519"')]),  # ... nested
        good.replace(b'{"events":', b'{ "events":'),  # whitespace
        b'{"type":"events","events":' + good[len(b'{"events":') : -len(b',"type":"events"}')] + b"}",  # key order
        encode_batch([raws[0], b'{"kind":"update"}']),  # one malformed event
        encode_batch([raws[0].replace(b'"chainId":31337', b'"chainId":' + str(2**70).encode())]),  # big int
        encode_batch([raws[0].replace(b'"threshold":1', b'"threshold":1.0')]),  # float
        good.replace(b'"events"', b'"events"', 1)[:-1] + b',"x":1}',  # unknown field
    ]
    for data in variants:
        assert data != good
        assert canonical_batch(data, DEFAULT_LIMITS, 256) is None, data[:80]
        assert _outcome(data) == _general(data, monkeypatch)


def test_canonical_batch_agrees_with_the_general_path_on_edits(log3: list, monkeypatch: pytest.MonkeyPatch) -> None:
    good = encode_batch([encode_event(s) for s in log3])
    rng = random.Random(4)
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.choice(b'{}[],:"0123456789abcdefx \\')
        assert _outcome(bytes(data)) == _general(bytes(data), monkeypatch)


def test_compressed_batches_decode_like_the_plain_ones(log3: list) -> None:
    plain = encode_batch([encode_event(s) for s in log3])
    packed = compress_message(plain)
    assert packed[:1] != b"{"
    assert len(packed) < len(plain)
    assert expand_message(packed, 1 << 20) == plain
    assert expand_message(plain, 1 << 20) == plain
    for raw in (False, True):
        a, b = (
            decode_message(packed, 1 << 20, 256, DEFAULT_LIMITS, raw),
            decode_message(plain, 1 << 20, 256, DEFAULT_LIMITS, raw),
        )
        assert (a.kind, a.events, a.malformed) == (b.kind, b.events, b.malformed)


def test_compressed_garbage_is_refused_with_a_reason(log3: list) -> None:
    plain = encode_batch([encode_event(s) for s in log3])
    packed = compress_message(plain)
    bomb = zlib.compress(b"{" + b" " * (8 << 20), 9)  # 8 MiB of text in ~8 KiB
    assert len(bomb) < 16 * 1024
    with pytest.raises(OversizedInput, match="inflates past"):
        decode_message(bomb, 1 << 20, 256, DEFAULT_LIMITS)
    with pytest.raises(OversizedInput, match="inflates past"):
        expand_message(packed, len(plain) - 1)  # the limit applies to the inflated text too
    cases = {
        b"\x00garbage": "neither a JSON object nor a zlib stream",
        packed[:-5]: "truncated",
        packed + b"tail": "bytes after its zlib stream",
        compress_message(packed): "does not hold a JSON object",  # compressed twice
        compress_message(b"[1,2]"): "does not hold a JSON object",
    }
    for data, reason in cases.items():
        with pytest.raises(MalformedEvent, match=reason):
            decode_message(data, 1 << 20, 256, DEFAULT_LIMITS, raw=True)


class _Pipe:
    """A fake stream: writes go to a buffer that reads drain in small pieces."""

    def __init__(self, data: bytes = b"", piece: int = 7) -> None:
        self.data = bytearray(data)
        self.piece = piece

    async def write(self, data: bytes) -> None:
        self.data += data

    async def read(self, n: int) -> bytes:
        out = bytes(self.data[: min(n, self.piece)])
        del self.data[: len(out)]
        return out


def test_frames_round_trip_through_coalesced_writes() -> None:
    async def main() -> None:
        pipe = _Pipe()
        writer = FrameWriter(pipe, chunk=16)
        for i in range(5):
            await writer.send(frame({"type": "x", "i": i}))
        await writer.flush()
        reader = FrameReader(pipe, 1024, 1.0)
        assert [(await reader.read())["i"] for _ in range(5)] == list(range(5))

    trio.run(main)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ((10_000).to_bytes(4, "big") + b"{}", "exceeds"),
        ((10).to_bytes(4, "big") + b"{}", "closed"),
        ((2).to_bytes(4, "big") + b"[]", "type"),
    ],
)
def test_frame_reader_enforces_limits(data: bytes, why: str) -> None:
    async def main() -> None:
        with pytest.raises(FrameError, match=why):
            await FrameReader(_Pipe(data), 1024, 1.0).read()

    trio.run(main)


def test_frame_reader_times_out() -> None:
    class Silent:
        async def read(self, n: int) -> bytes:
            await trio.sleep_forever()
            return b""  # pragma: no cover

    async def main() -> None:
        with pytest.raises(trio.TooSlowError):
            await FrameReader(Silent(), 1024, 0.05).read()

    trio.run(main)


def test_peer_key_is_persistent_and_private(tmp_path: os.PathLike[str]) -> None:
    a = load_or_create_key(tmp_path)  # type: ignore[arg-type]
    b = load_or_create_key(tmp_path)  # type: ignore[arg-type]
    assert a.public_key.to_bytes() == b.public_key.to_bytes()
    mode = stat.S_IMODE(os.stat(os.path.join(tmp_path, "p2p.key")).st_mode)
    assert mode == 0o600
