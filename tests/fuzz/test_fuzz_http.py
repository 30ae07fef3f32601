"""Fuzzing the HTTP/1.1 front end (h11 + node/api/http1.py, and node/api/server.py) with hypothesis.

CI runs a small budget; ``KEYREG_FUZZ_EXAMPLES=20000`` (the convention of every fuzzer in
tests/fuzz) scales it for a longer run by hand. A failure here is a bug: keep its input as a
regression test in tests/api.

Properties:
- any bytes as a request head, through h11 and ``check_head`` as the server does: a Head or a
  refusal (h11's RemoteProtocolError or our Refusal) with one of the statuses the front end
  answers, nothing else; what is accepted is well-formed (origin-form target, token names, one
  framing, no control characters);
- a well-formed head, rendered by hand, parses back to what was rendered, and adding a second
  framing header (CL+TE) is always refused;
- a chunked body, encoded with any chunk sizes and delivered in any split, is read whole by
  ``read_body`` and leaves what follows untouched; any bytes as a chunked body end in the body
  within the cap, a 413, or h11's refusal, and never buffer more than the incomplete-event limit;
- any bytes sent to a real server get a well-formed HTTP/1.1 answer or a close, never an ERROR
  log, and the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import replace

import h11
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyreg.api.app import ApiContext, create_app
from keyreg.api.http1 import Head, Refusal, check_head, read_body, refusal_for
from keyreg.api.server import LeanServer
from keyreg.config import ApiConfig, Config
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

EXAMPLES = int(os.environ.get("KEYREG_FUZZ_EXAMPLES", "200"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A real server per example costs a few ms: a tenth of the budget.
SOCKET = settings(
    max_examples=max(10, EXAMPLES // 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(TCHARS, min_size=1, max_size=12).map(str.encode)
values = st.binary(max_size=24).map(lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7F))
targets = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30).map(lambda t: b"/" + t.encode())
HEAD_PIECES = [
    b"GET / HTTP/1.1",
    b"POST /v1/events HTTP/1.1",
    b"PRI * HTTP/2.0",
    b"\r\n",
    b"host: t",
    b"content-length: 5",
    b"content-length: 0",
    b"transfer-encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"expect: 100-continue",
    b"connection: close",
    b" ",
    b"\t",
    b":",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff",
    b"HTTP/1.0",
]
hostile_heads = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(HEAD_PIECES), max_size=20).map(b"".join),
    st.lists(st.one_of(st.sampled_from(HEAD_PIECES), st.binary(max_size=8)), max_size=20).map(b"".join),
)


MAX_HEAD = 4096
CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def parse(raw: bytes) -> Head:
    """A complete head through h11 and check_head, as the server reads it; Refusal otherwise."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(raw + b"\r\n\r\n")
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise refusal_for(exc, MAX_HEAD) from None
    if not isinstance(event, h11.Request):  # a head h11 is still waiting for: nothing served
        raise Refusal(0, "incomplete", repr(event))
    return check_head(event, MAX_HEAD)


def _accepted_is_well_formed(req: Head) -> None:
    assert TOKEN.fullmatch(req.method)
    assert req.target.startswith(b"/")
    assert all(0x21 <= c <= 0x7E for c in req.target)
    assert not (req.chunked and req.length)
    assert req.length >= 0
    names = [n for n, _ in req.headers]
    assert all(TOKEN.fullmatch(n) and n == n.lower() for n in names)
    assert names.count(b"content-length") <= 1
    assert names.count(b"transfer-encoding") <= 1
    assert not (b"content-length" in names and b"transfer-encoding" in names)
    if not req.http10:
        assert names.count(b"host") == 1
    for _, v in req.headers:
        assert CTL.search(v) is None


@FAST
@given(hostile_heads)
def test_any_head_parses_or_is_refused(raw: bytes) -> None:
    status, message = 0, ""
    try:
        req: Head | None = parse(raw)
    except Refusal as refusal:
        status, message, req = refusal.status, refusal.message, None
    assert status in (0, 400, 417, 431, 501, 505)
    assert "b'" not in message  # the client's bytes are not echoed
    if req is not None:
        _accepted_is_well_formed(req)


@FAST
@given(
    tokens,
    targets,
    st.lists(st.tuples(tokens, values), max_size=8),
    st.one_of(st.none(), st.integers(0, 10**18 - 1)),
    st.booleans(),
)
def test_well_formed_heads_round_trip_and_two_framings_are_refused(
    method: bytes, target: bytes, extra: list[tuple[bytes, bytes]], length: int | None, chunked: bool
) -> None:
    special = {b"host", b"content-length", b"transfer-encoding", b"expect", b"connection"}
    extra = [(n, v) for n, v in extra if n.lower() not in special]
    headers = [(b"host", b"example"), *extra]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    elif chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    head = b"\r\n".join([method + b" " + target + b" HTTP/1.1"] + [n + b": " + v for n, v in headers])
    req = parse(head)
    assert (req.method, req.target) == (method, target)
    assert req.headers == [(n.lower(), v) for n, v in headers]
    assert req.length == (length or 0)
    assert req.chunked == (length is None and chunked)
    # RFC 9112 6.1: both framings, in either order, are refused whatever the values
    if length is not None or chunked:
        both = head + b"\r\n" + (b"transfer-encoding: chunked" if length is not None else b"content-length: 3")
        with pytest.raises(Refusal) as info:
            parse(both)
        assert info.value.status == 400


def _encode_chunked(body: bytes, sizes: list[int], ext: bool) -> bytes:
    out, pos, i = [], 0, 0
    while pos < len(body):
        n = max(1, sizes[i % len(sizes)]) if sizes else len(body)
        piece = body[pos : pos + n]
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), b";a=b" if ext else b"", piece))
        pos += len(piece)
        i += 1
    out.append(b"0\r\nx-t: 1\r\n\r\n" if ext else b"0\r\n\r\n")
    return b"".join(out)


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"


def _chunked_conn(max_line: int) -> h11.Connection:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_line)
    conn.receive_data(CHUNKED_HEAD)
    assert isinstance(conn.next_event(), h11.Request)
    return conn


def _feed_split(conn: h11.Connection, body: bytearray, cap: int, wire: bytes, cuts: list[int]) -> bytes:
    """Feed ``wire`` in pieces as the server does; the bytes after the body."""
    points = sorted({c % (len(wire) + 1) for c in cuts} | {len(wire)})
    start = 0
    for p in points:
        if p > start:  # h11 takes b"" for the end of the stream; the server never feeds it
            conn.receive_data(wire[start:p])
        start = p
        if read_body(conn, body, cap):
            return conn.trailing_data[0] + wire[start:]
    raise AssertionError("the body did not end")


@FAST
@given(
    st.binary(max_size=3000),
    st.lists(st.integers(1, 700), max_size=6),
    st.booleans(),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.binary(max_size=40),
)
def test_chunked_bodies_decode_whatever_the_split(
    body: bytes, sizes: list[int], ext: bool, cuts: list[int], after: bytes
) -> None:
    wire = _encode_chunked(body, sizes, ext)
    got = bytearray()
    rest = _feed_split(_chunked_conn(64), got, len(body), wire + after, cuts)
    assert got == body
    assert rest == after
    if body:  # one byte less of cap is refused, before the body is all read
        conn = _chunked_conn(64)
        conn.receive_data(wire)
        with pytest.raises(Refusal) as info:
            read_body(conn, bytearray(), len(body) - 1)
        assert info.value.status == 413


@FAST
@given(
    st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b"\r\n", b"0\r\n\r\n", b"5\r\n", b";x"])), max_size=30)
)
def test_any_bytes_as_a_chunked_body(pieces: list[bytes]) -> None:
    conn = _chunked_conn(32)
    body = bytearray()
    status = 0
    try:
        for piece in filter(None, pieces):
            conn.receive_data(piece)
            if read_body(conn, body, 100):
                break
            assert len(body) <= 100
            assert len(conn.trailing_data[0]) <= 32  # never more than one incomplete line is held
    except Refusal as refusal:
        status = refusal.status
    except h11.RemoteProtocolError as exc:
        status = refusal_for(exc, 32).status
    assert status in (0, 400, 413, 431)


# ------------------------------------------------------------------ against a real server

STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] [^\r\n]*\r\n")


async def _exchange(host: str, port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream(host, port)
    got = b""
    try:
        await stream.send_all(data)
        with trio.move_on_after(0.3):  # an incomplete request waits for more: the answer is silence
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                got += chunk
    except trio.BrokenResourceError:
        pass  # refused and reset while we were still sending
    finally:
        await trio.aclose_forcefully(stream)
    return got


@SOCKET
@given(
    st.lists(
        st.one_of(hostile_heads, st.sampled_from([b"\r\n\r\n", b"GET /v1/health HTTP/1.1\r\nhost: t\r\n\r\n"])),
        min_size=1,
        max_size=6,
    )
)
def test_any_bytes_to_a_real_server(caplog: pytest.LogCaptureFixture, pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    config = replace(Config(), api=replace(ApiConfig(), rate_limit_per_s=0))
    registry = Registry(config.domain, MemoryStore(), config.limits)
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.keep_alive_timeout = 5
    hc.h11_max_incomplete_size = MAX_HEAD
    server = LeanServer(create_app(ApiContext(registry, config)), hc, max_body=4096, body_timeout=0.3)
    answers: list[bytes] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(server.serve)
            host, port = binds[0].removeprefix("http://").rsplit(":", 1)
            answers.append(await _exchange(host, int(port), data))
            # the server is still fine
            answers.append(await _exchange(host, int(port), b"GET /v1/health HTTP/1.1\r\nhost: t\r\n\r\n"))
            nursery.cancel_scope.cancel()

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        trio.run(main)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    first, health = answers
    if first:
        assert STATUS_LINE.match(first), first[:200]
        assert b"HTTP/1.1 500" not in first
    assert health.startswith(b"HTTP/1.1 200 "), health[:200]
