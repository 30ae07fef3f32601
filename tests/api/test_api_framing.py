"""Issue 13 findings 15 and 16 against a real server on a loopback socket, with raw HTTP bytes.

15: a request with both Content-Length and Transfer-Encoding is refused by the front end and the
connection closed: the request pipelined behind it is never served (RFC 9112 6.1).
16: a body the client abandons costs no traceback and no 5xx; a body that trickles in is cut off
at api.body_timeout_s (408) whatever the pace; disconnects are counted as such.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest
import trio
from api_support import Subject, make_api, obj
from prometheus_client import generate_latest
from server_support import Conn, _hc, get, run

from keyreg.api.server import LeanServer, serve_api
from keyreg.registry import Registry

SMUGGLED = b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx-smuggled: 1\r\n\r\n"


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("framing", "status", "code"),
    [
        (b"content-length: 44\r\ntransfer-encoding: chunked\r\n", 400, "bad_request"),  # CL.TE
        (b"transfer-encoding: chunked\r\ncontent-length: 5\r\n", 400, "bad_request"),  # TE.CL
        # h11 refuses any coding but chunked first (501, RFC 9112 6.1), CL or not
        (b"content-length: 5\r\ntransfer-encoding: identity\r\n", 501, "not_implemented"),
    ],
)
def test_content_length_with_transfer_encoding_closes_the_connection(framing: bytes, status: int, code: str) -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        for warm_up in (False, True):  # first on the connection, or after a served keep-alive POST
            c = await connect()
            if warm_up:
                body = json.dumps(obj(s.inception)).encode()
                await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
                assert (await c.response())[0] == 200
            served = server.counters["requests"]
            # One write: the ambiguous request, a chunked body that ends early, then a pipelined GET
            # that a front end disagreeing with the back end about the body's end would serve.
            await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\n" + framing + b"\r\n0\r\n\r\n" + SMUGGLED)
            got, headers, answer = await c.response()
            assert (got, json.loads(answer)["code"]) == (status, code)
            assert headers["connection"] == "close"
            assert await c.closed()
            assert c.buf == b""  # nothing after the refusal: the pipelined GET got no answer
            assert server.counters["requests"] == served

    run(t)


def test_abandoned_body_is_a_counted_disconnect_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        for framing, part in (
            (b"content-length: 1000\r\n", b'{"kind":'),
            (b"transfer-encoding: chunked\r\n", b"10\r\n0123456789"),
            (b"content-length: 1000\r\n", b""),
        ):
            c = await connect()
            await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\n" + framing + b"\r\n" + part)
            await c.stream.aclose()
        c = await connect()
        await c.send(b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx-partial: ")  # a head abandoned too
        await c.stream.aclose()
        c = await connect()
        with trio.fail_after(10):  # the server counts them as the connections end
            while server.counters["client_disconnects"] < 4:
                await trio.sleep(0.01)
        await c.send(get("/metrics"))
        status, _, text = await c.response()
        assert status == 200
        assert b'status="5' not in text
        assert server.counters["requests"] == 1  # the app saw only /metrics, never half a body
        assert server.counters["client_disconnects"] == 4

    with caplog.at_level(logging.INFO):
        run(t)
    assert _errors(caplog) == []


def test_slow_body_times_out_whatever_the_pace(caplog: pytest.LogCaptureFixture) -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        c = await connect()
        await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 100000\r\n\r\n")
        start = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def trickle() -> None:  # one byte every 50 ms: each read is quick, the body is not
                try:
                    for _ in range(1000):
                        await c.send(b" ")
                        await trio.sleep(0.05)
                except trio.BrokenResourceError:
                    pass  # the server closed the connection

            nursery.start_soon(trickle)
            status, headers, answer = await c.response()
            nursery.cancel_scope.cancel()
        took = trio.current_time() - start
        assert (status, json.loads(answer)["code"], headers["connection"]) == (408, "body_timeout", "close")
        assert 0.4 <= took < 5, took
        assert await c.closed()
        assert server.counters["body_timeouts"] == 1
        assert server.counters["requests"] == 0
        c = await connect()  # chunked too
        await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab")
        status, _, answer = await c.response()
        assert (status, json.loads(answer)["code"]) == (408, "body_timeout")
        assert server.counters["body_timeouts"] == 2

    with caplog.at_level(logging.INFO):
        run(t, api={"rate_limit_per_s": 0, "body_timeout_s": 0.5})
    assert _errors(caplog) == []


def test_connection_caps_per_client_and_in_all() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        held = [await connect() for _ in range(2)]
        for c in held:  # both admitted and served
            await c.send(get("/v1/health"))
            assert (await c.response())[0] == 200
        extra = await connect()
        status, headers, answer = await extra.response()
        assert (status, json.loads(answer)["code"], headers["connection"]) == (503, "busy", "close")
        assert await extra.closed()
        await held[0].stream.aclose()
        with trio.fail_after(10):
            while server.open > 1:
                await trio.sleep(0.01)
        again = await connect()
        await again.send(get("/v1/health"))
        assert (await again.response())[0] == 200
        assert server.counters["busy"] == 1

    run(t, api={"rate_limit_per_s": 0, "max_connections_per_client": 2})


def test_plain_hypercorn_counts_an_abandoned_body_as_499(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KEYREG_API_SERVER=hypercorn: the app's own read_body answers a disconnect as 499, no 500."""
    monkeypatch.setenv("KEYREG_API_SERVER", "hypercorn")
    client, _, _, _ = make_api(rate_limit_per_s=0)
    app = client.app

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve_api, app, _hc())
            host, port = binds[0].removeprefix("http://").rsplit(":", 1)
            c = Conn(await trio.open_tcp_stream(host, int(port)))
            await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\nexpect: 100-continue\r\n\r\n")
            assert (await c.response())[0] == 100  # hypercorn says so when the app starts reading
            await c.send(b'{"kind":')
            await c.stream.aclose()
            metrics = app.state.metrics  # type: ignore[attr-defined]
            with trio.fail_after(10):
                while b'status="499"' not in generate_latest(metrics):
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    assert os.environ["KEYREG_API_SERVER"] == "hypercorn"
    with caplog.at_level(logging.INFO):
        trio.run(main)
    assert b'status="500"' not in generate_latest(app.state.metrics)  # type: ignore[attr-defined]
    assert _errors(caplog) == []


def test_serve_api_wires_the_limits_and_counters_into_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """What node.app starts: serve_api(app, hypercorn config, config.api) with the app's metrics."""
    monkeypatch.delenv("KEYREG_API_SERVER", raising=False)
    client, _, _, config = make_api(rate_limit_per_s=0, body_timeout_s=0.2)
    app = client.app

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve_api, app, _hc(), config.api)
            host, port = binds[0].removeprefix("http://").rsplit(":", 1)
            c = Conn(await trio.open_tcp_stream(host, int(port)))
            await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 9\r\n\r\n{")
            status, _, body = await c.response()
            assert (status, json.loads(body)["code"]) == (408, "body_timeout")  # config.api.body_timeout_s
            await c.stream.aclose()
            c = Conn(await trio.open_tcp_stream(host, int(port)))
            await c.send(get("/metrics"))
            _, _, text = await c.response()
            await c.stream.aclose()
            assert b'keyreg_http_connection_events_total{event="body_timeouts"} 1.0' in text
            nursery.cancel_scope.cancel()

    trio.run(main)
