"""Fuzz both sides of sync (``/keyreg/sync/1``): hostile frames get a protocol error, nothing else.

Server side: request frames (raw bytes, and hostile hello/nodes/leaves/events requests) go through
the real ``FrameReader`` and ``SyncProtocol._answer`` against a registry holding a few subjects;
each either answers or raises the protocol's own errors (``SyncError``, ``FrameError``, a
``KeyregError``). The whole session (``handle``) never raises and never ends in its catch-all.
Puller side: a scripted server answers ``pull`` with hostile frames (bad hellos, node and leaf
pages, events frames raw, mutated or zlib, end and error frames); the pull never raises and never
fails with anything but the protocol's errors (its catch-all is for dial and stream failures,
which the scripted stream never has).
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any

import trio
from fuzzing import JSON_VALUES, examples, mutated_bytes
from hypothesis import given
from hypothesis import strategies as st

from keyreg.config import Config, P2PConfig
from keyreg.core.codec import encode_event
from keyreg.core.errors import KeyregError
from keyreg.p2p.sync import SyncError, SyncProtocol, SyncRefused
from keyreg.p2p.testing import subject_log
from keyreg.p2p.wire import FrameError, FrameReader, FrameWriter, encode_batch, frame, frame_raw
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

DOMAIN = Config().domain
NOW = 1_700_000_000
LOGS = [subject_log(DOMAIN, bytes([0x30 + i]) * 32, 2, NOW - 100) for i in range(3)]
RAWS = [encode_event(e) for log_ in LOGS for e in log_]
BATCH = encode_batch(RAWS)
PROTOCOL_ERRORS = (SyncError, SyncRefused, FrameError, KeyregError, trio.TooSlowError)


def _registry(with_events: bool) -> Registry:
    registry = Registry(DOMAIN, MemoryStore(), clock=lambda: NOW)
    if with_events:
        registry.ingest(RAWS[: len(RAWS) // 2])
    return registry


_HOLDER = _registry(True)
HELD = ["0x" + s.hex() for s in sorted(_HOLDER.states)]
HEX32 = st.sampled_from([*HELD, "0x" + "00" * 32, "0x" + "ff" * 32, "0x" + "AB" * 32, "", "0x", 5]) | st.text(
    max_size=70
)
NODE = st.tuples(
    st.integers(-2, 260) | JSON_VALUES,
    st.sampled_from(["0x0", "0x1", "0xf", "0x" + "f" * 64, "0x" + "1" * 70, "1", "0x-1"]) | st.text(max_size=8),
).map(list)
REQUESTS = st.one_of(
    st.just({"type": "hello"}),
    st.builds(lambda n: {"type": "nodes", "nodes": n}, st.lists(NODE, max_size=20) | JSON_VALUES),
    st.builds(
        lambda p, a: {"type": "leaves", "prefixes": p, "after": a},
        st.lists(NODE, max_size=8) | JSON_VALUES,
        HEX32 | JSON_VALUES,
    ),
    st.builds(
        lambda w, c: {"type": "events", "wants": w, "compress": c},
        st.lists(st.tuples(HEX32, st.integers(-1, 2**64) | JSON_VALUES).map(list), max_size=8) | JSON_VALUES,
        st.sampled_from(["zlib", None, 1]),
    ),
    st.builds(lambda t, extra: {"type": t, "x": extra}, st.text(max_size=8), JSON_VALUES),
    st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3),
)


class ScriptedStream:
    """An in-memory stream: reads ``data`` in pieces, then end of stream; writes are kept."""

    class _Conn:
        peer_id = "fuzz-peer"

    muxed_conn = _Conn()

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.written = bytearray()

    async def read(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        await trio.lowlevel.checkpoint()
        return out

    async def write(self, data: bytes) -> None:
        self.written += data
        await trio.lowlevel.checkpoint()

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        pass


class ScriptedHost:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def new_stream(self, peer: Any, protocols: Any) -> ScriptedStream:
        return ScriptedStream(self.data)


def _as_frame(item: Any) -> bytes:
    if isinstance(item, bytes):
        return frame_raw(item)
    return len(json.dumps(item).encode()).to_bytes(4, "big") + json.dumps(item).encode()


class _Catchall(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "failed:" in msg:
            self.failures.append(msg)


def _watch() -> _Catchall:
    handler = _Catchall()
    logger = logging.getLogger("keyreg.p2p.sync")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


def _unwatch(handler: _Catchall) -> None:
    logging.getLogger("keyreg.p2p.sync").removeHandler(handler)


@examples(200)
@given(
    st.lists(
        REQUESTS.map(_as_frame)
        | mutated_bytes([frame({"type": "hello"}), _as_frame({"type": "nodes", "nodes": [[4, "0x1"]]})]),
        min_size=1,
        max_size=4,
    )
)
def test_server_answers_or_refuses_every_request(frames: list[bytes]) -> None:
    proto = SyncProtocol(None, _HOLDER, P2PConfig())  # type: ignore[arg-type]  # the server side needs no host

    async def main() -> None:
        stream = ScriptedStream(b"".join(frames))
        reader, writer = FrameReader(stream, 256 * 1024, 5.0), FrameWriter(stream)
        for _ in frames:
            try:
                req = await reader.read()
                await proto._answer(req, writer)
                await writer.flush()
            except PROTOCOL_ERRORS:
                return

    trio.run(main)


@examples(80)
@given(st.lists(REQUESTS.map(_as_frame), min_size=1, max_size=4))
def test_a_whole_server_session_ends_cleanly(frames: list[bytes]) -> None:
    proto = SyncProtocol(None, _HOLDER, P2PConfig())  # type: ignore[arg-type]
    handler = _watch()
    try:
        trio.run(proto.handle, ScriptedStream(b"".join(frames)))
    finally:
        _unwatch(handler)
    assert not handler.failures, handler.failures


def _hello(root: Any, count: Any) -> dict[str, Any]:
    return {"type": "hello", "root": root, "count": count}


EVENTS_FRAMES = st.one_of(
    st.just(BATCH),
    st.just(zlib.compress(BATCH)),
    mutated_bytes([BATCH, encode_batch(RAWS[:1])]),
    mutated_bytes([zlib.compress(BATCH)]),
    st.binary(max_size=64),
)
ANSWERS = st.one_of(
    st.builds(_hello, HEX32, st.integers(-1, 10**6) | JSON_VALUES),
    st.builds(
        lambda n: {"type": "nodes", "nodes": n},
        st.lists(st.tuples(HEX32, st.integers(-1, 99)).map(list), max_size=20) | JSON_VALUES,
    ),
    st.builds(
        lambda leaves, more: {"type": "leaves", "leaves": leaves, "more": more},
        st.lists(st.tuples(HEX32, st.integers(-1, 2**64) | JSON_VALUES, HEX32).map(list), max_size=6) | JSON_VALUES,
        JSON_VALUES,
    ),
    st.builds(lambda c: {"count": c, "type": "end"}, st.integers(-1, 10**6) | JSON_VALUES),
    st.builds(
        lambda c, m, r: {"code": c, "message": m, "retry_after_ms": r, "type": "error"},
        JSON_VALUES,
        JSON_VALUES,
        JSON_VALUES,
    ),
    EVENTS_FRAMES,
    st.binary(max_size=32).map(lambda b: b'{"count":' + b),
    st.binary(max_size=32).map(lambda b: b'{"code":' + b),
    REQUESTS,
)


@examples(200)
@given(
    st.lists(ANSWERS.map(_as_frame), min_size=0, max_size=6),
    st.booleans(),
    st.sampled_from([None, [0], [0, 1, 2]]),
    st.binary(max_size=6),
)
def test_puller_survives_any_server(
    answers: list[bytes], local_events: bool, subjects: list[int] | None, tail: bytes
) -> None:
    registry = _registry(local_events)
    want = None if subjects is None else [bytes.fromhex(HELD[i % len(HELD)][2:]) for i in subjects]
    proto = SyncProtocol(ScriptedHost(b"".join(answers) + tail), registry, P2PConfig())  # type: ignore[arg-type]
    result = trio.run(proto.pull, "fuzz-peer", want)
    assert result.ok or result.error.split(":")[0] in (
        "SyncError",
        "FrameError",
        "refused",
        "TooSlowError",
        "the peer asked us to retry later",
    ), result.error


def test_a_broken_end_frame_is_a_protocol_error_and_a_strike() -> None:
    # Found by test_puller_survives_any_server: an events answer ending in a frame that starts like
    # an end (or error) frame but is not JSON escaped the pull as an ExceptionGroup of
    # MalformedEvent, through the catch-all for stream failures, and the server got no strike.
    for bad in (b'{"count":', b'{"code":', b'{"count":1,"count":2,"type":"end"}'):
        proto = SyncProtocol(ScriptedHost(frame_raw(bad)), _registry(False), P2PConfig())  # type: ignore[arg-type]
        result = trio.run(proto.pull, "fuzz-peer", [bytes.fromhex(HELD[0][2:])])  # straight to the events
        assert result.error.startswith("SyncError: bad end or error frame"), result.error
        assert proto.violations == 1
