"""The HTTP/1.1 front end (node/api/server.py) over real loopback sockets: framing, keep-alive, limits."""

from __future__ import annotations

import json
from typing import Any

import h11
import pytest
import trio
from api_support import NOW, Subject, make_api, obj
from server_support import _hc, get, run

from keyreg.api.app import ApiContext, create_app
from keyreg.api.http1 import Head, Refusal, check_head, refusal_for
from keyreg.api.server import LeanServer, serve_api
from keyreg.config import Config
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore


def head(raw: bytes, max_head: int = 65536) -> Head:
    """A head through h11 and our checks, as the server does; a Refusal for either's refusal."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
    conn.receive_data(raw + b"\r\n\r\n")
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise refusal_for(exc, max_head) from None
    assert isinstance(event, h11.Request), event
    return check_head(event, max_head)


def test_head_checks() -> None:
    req = head(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*")
    assert (req.method, req.target, req.has_body) == (b"GET", b"/a?b=1", False)
    assert req.headers == [(b"host", b"x"), (b"accept", b"*/*")]
    req = head(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 12\r\nexpect: 100-Continue")
    assert (req.length, req.chunked) == (12, False)
    req = head(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: Chunked")
    assert req.chunked
    req = head(b"GET / HTTP/1.0")  # HTTP/1.0: no Host needed
    assert req.http10
    head(b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: h2c\r\nconnection: upgrade")  # ignored (RFC 9110 7.8)
    # what RFC 9112 allows and h11 does: bare LF line ends (2.2), obs-fold as a space (5.2), a
    # repeated identical Content-Length (RFC 9110 8.6). One parser decides: no two readings.
    assert head(b"GET / HTTP/1.1\nhost: x").headers == [(b"host", b"x")]
    assert head(b"GET / HTTP/1.1\r\nhost: x\r\n folded").headers == [(b"host", b"x folded")]
    assert head(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 3").length == 3
    assert head(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 3, 3").length == 3
    for raw, status in (
        (b"GET / HTTP/1.1", 400),  # no Host
        (b"GET / HTTP/1.1\r\nhost: x\r\nhost: y", 400),
        (b"GET http://x/ HTTP/1.1\r\nhost: x", 400),  # not origin-form
        (b"OPTIONS * HTTP/1.1\r\nhost: x", 400),
        (b"GET / HTTP/2.0\r\nhost: x", 505),
        (b"PRI * HTTP/2.0", 505),  # HTTP/2 prior knowledge
        (b"GET / HTTP/1.2\r\nhost: x", 505),
        (b"GET  / HTTP/1.1\r\nhost: x", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 0", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 4", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: +3", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: " + b"9" * 21, 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked", 501),
        (b"GET / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked", 501),
        (b"GET / HTTP/1.0\r\ntransfer-encoding: chunked", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\nexpect: 200-ok", 417),
        (b"GET / HTTP/1.1\r\nhost: x\r\nbad name: v", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length : 3", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\nx: a\x00b", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\nx: a\x01b", 400),  # h11 takes it; check_head does not
        (b"GET / HTTP/1.1\r\nhost: x\r\nx: a\rb", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\nx: a\nb", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\nx: " + b"a" * 5000, 431),  # complete, but over the limit
    ):
        with pytest.raises(Refusal) as info:
            head(raw, max_head=4096)
        assert info.value.status == status, raw
        assert "b'" not in info.value.message  # the offending bytes are not echoed
    assert not head(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0").has_body


def test_keep_alive_gets_and_pipelining() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, _: Registry) -> None:
        c = await connect()
        for _ in range(3):
            await c.send(get(f"/v1/subjects/{s.id}/keys/k1?at={NOW}"))
            status, headers, body = await c.response()
            assert status == 200
            assert headers["content-type"] == "application/json"
            assert json.loads(body)["status"] == "valid"
            assert "date" in headers
        # pipelined: three requests in one write, answered in order
        await c.send(get(f"/v1/subjects/{s.id}/keys/k1") + get("/v1/health") + get(f"/v1/subjects/{s.id}/keys/zz"))
        assert json.loads((await c.response())[2])["status"] == "valid"
        assert json.loads((await c.response())[2])["ok"] is True
        assert json.loads((await c.response())[2])["status"] == "unknown-key"
        # a head split across writes, pipelined behind a complete request
        await c.send(get("/v1/health") + b"GET /v1/hea")
        assert json.loads((await c.response())[2])["ok"] is True
        await c.send(b"lth HTTP/1.1\r\nhost: t\r\n\r\n")
        assert json.loads((await c.response())[2])["ok"] is True
        await c.send(get("/nope"))
        status, _, body = await c.response()
        assert status == 404
        assert json.loads(body)["code"] == "not_found"
        assert server.counters["requests"] == 9

    run(t)


def test_posts_are_framed_by_the_front_end() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        c = await connect()
        await c.send(get(f"/v1/subjects/{s.id}/keys/k1"))
        assert (await c.response())[0] == 200
        body = json.dumps(obj(s.inception)).encode()
        await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n")
        await c.send(b"content-length: %d\r\n\r\n" % len(body) + body[:10])
        await c.send(body[10:] + get(f"/v1/subjects/{s.id}/keys/k1"))  # a GET pipelined after the body
        status, headers, answer = await c.response()
        assert status == 200
        assert json.loads(answer)["status"] == "known"
        assert headers["server"] == "keyreg"
        status, headers, answer = await c.response()
        assert json.loads(answer)["status"] == "valid"
        # chunked, with Expect: 100-continue, a chunk extension and a trailer
        await c.send(
            b"POST /v1/events HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n"
        )
        status, _, _ = await c.response()
        assert status == 100
        await c.send(b"%x;ext=1\r\n" % 10 + body[:10] + b"\r\n")
        await c.send(b"%X\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\nx-trailer: 1\r\n\r\n")
        status, _, answer = await c.response()
        assert (status, json.loads(answer)["status"]) == (200, "known")
        await c.send(b"HEAD /v1/health HTTP/1.1\r\nhost: t\r\n\r\n" + get("/v1/health"))
        status, headers, answer = await c.response_to_head()
        assert (status, answer) == (200, b"")
        assert int(headers["content-length"]) > 0
        assert json.loads((await c.response())[2])["ok"] is True
        assert server.counters["requests"] == 6

    run(t)


def test_body_cap_on_chunked_and_declared_bodies() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        c = await connect()
        await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(4):
            await c.send(b"400\r\n" + b" " * 1024 + b"\r\n")
        await c.send(b"0\r\n\r\n")
        status, _, answer = await c.response()
        assert status == 413
        assert json.loads(answer)["code"] == "oversized"
        assert await c.closed()
        c = await connect()  # a declared length over the cap: refused before a byte is read
        await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-length: 2049\r\nexpect: 100-continue\r\n\r\n")
        status, _, answer = await c.response()
        assert (status, json.loads(answer)["code"]) == (413, "oversized")
        assert await c.closed()
        assert registry.counters["accepted"] == 1  # the inception only
        assert server.counters["refused"] == 2

    run(t, api={"rate_limit_per_s": 0, "max_body_bytes": 2048})


def test_oversized_or_malformed_heads_are_refused_and_closed() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, _: Registry) -> None:
        for raw, status in (
            (b"GET / HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 5000, 431),  # incomplete, past the limit
            (b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 5000 + b"\r\n\r\n", 431),
            (b"GET /v1/health HTTP/1.1\r\n\r\n", 400),  # no Host
            (b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx: \x01\r\n\r\n", 400),
        ):
            c = await connect()
            complete = raw.endswith(b"\r\n\r\n")  # then a request pipelined behind it is never served
            await c.send(raw + get("/v1/health") if complete else raw)
            got, headers, body = await c.response()
            assert got == status
            assert headers["connection"] == "close"
            assert set(json.loads(body)) == {"code", "message"}
            assert await c.closed()
        c = await connect()
        await c.send(b"GET /v1/health HTTP/1.0\r\n\r\n")  # HTTP/1.0 works, then closes
        status, headers, _ = await c.response()
        assert (status, headers["connection"]) == (200, "close")
        assert await c.closed()
        assert server.counters["requests"] == 1

    run(t, h11_max_incomplete_size=4096)


def test_connection_close_max_requests_and_idle_timeout() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, _: Registry) -> None:
        c = await connect()
        await c.send(get("/v1/health", "connection: close\r\n"))
        status, headers, _ = await c.response()
        assert status == 200
        assert headers["connection"] == "close"
        assert await c.closed()
        c = await connect()
        for i in range(3):  # keep_alive_max_requests=3: the third answer closes
            await c.send(get("/v1/health"))
            _, headers, _ = await c.response()
            assert ("connection" in headers) == (i == 2)
        assert await c.closed()
        c = await connect()  # idle past keep_alive_timeout: closed by the server
        with trio.fail_after(3):
            assert await c.closed()
        c = await connect()  # a head that never completes is cut off too
        await c.send(b"GET /v1/health HTTP/1.1\r\nhost: t\r\n")
        with trio.fail_after(3):
            assert await c.closed()

    run(t, keep_alive_max_requests=3, keep_alive_timeout=0.5)


def test_rate_limit_by_client_address() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, _: Registry) -> None:
        c = await connect()
        codes = []
        for _ in range(4):
            await c.send(get(f"/v1/subjects/{s.id}/keys/k1"))
            status, headers, body = await c.response()
            codes.append(status)
        assert codes == [200, 200, 429, 429]
        assert json.loads(body)["code"] == "rate_limited"
        assert int(headers["retry-after"]) >= 1

    run(t, api={"rate_limit_per_s": 0.001, "rate_burst": 2})


def test_app_error_is_500_and_closes() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        def boom(*a: Any, **k: Any) -> Any:
            raise RuntimeError("boom")

        registry.verdict = boom  # type: ignore[method-assign]
        c = await connect()
        await c.send(get(f"/v1/subjects/{s.id}/keys/k1"))
        status, _, _ = await c.response()
        assert status == 500
        assert await c.closed()
        c = await connect()  # the server itself is fine
        await c.send(get("/v1/health"))
        assert (await c.response())[0] == 200

    run(t)


def test_http2_prior_knowledge_is_505_unless_enabled() -> None:
    """The front end serves HTTP/1.x only; api.http2 serves everything with hypercorn's public
    serve() instead (h2 prior knowledge included, without the front end's limits)."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    async def off(connect: Any, server: LeanServer, s: Subject, _: Registry) -> None:
        c = await connect()
        await c.send(preface)
        status, headers, body = await c.response()
        assert (status, json.loads(body)["code"], headers["connection"]) == (505, "http_version", "close")
        assert await c.closed()
        assert server.counters["requests"] == 0

    run(off)

    client, _, _, config = make_api(rate_limit_per_s=0, http2=True)

    async def on() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serve_api, client.app, _hc(), config.api)
            host, port = binds[0].removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(preface + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # an empty SETTINGS frame
            with trio.fail_after(10):
                data = await stream.receive_some(65536)
            assert data[3] == 0x04  # hypercorn's h2 answers with its SETTINGS frame
            await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(on)


def test_key_verdict_path_is_routed_once() -> None:
    """HotRoutes alone routes /v1/subjects/{subject}/keys/{kid}: GET, HEAD (same headers, no body),
    405 with Allow for other methods (labelled OTHER in the metrics when not standard)."""

    async def t(connect: Any, server: LeanServer, s: Subject, _: Registry) -> None:
        path = f"/v1/subjects/{s.id}/keys/k1?at={NOW}"
        c = await connect()
        await c.send(get(path))
        status, headers, body = await c.response()
        assert (status, json.loads(body)["status"]) == (200, "valid")
        await c.send(f"HEAD {path} HTTP/1.1\r\nhost: t\r\n\r\n".encode() + get("/v1/health"))
        status, head_headers, _ = await c.response_to_head()
        assert status == 200
        assert head_headers["content-length"] == headers["content-length"]
        assert json.loads((await c.response())[2])["ok"] is True  # the HEAD sent no body
        for method in ("POST", "DELETE", "X" * 300):
            await c.send(f"{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n".encode())
            status, headers, body = await c.response()
            assert (status, json.loads(body)["code"], headers["allow"]) == (405, "method_not_allowed", "GET, HEAD")
        await c.send(get("/metrics"))
        text = (await c.response())[2]
        assert b'method="OTHER",route="/v1/subjects/{subject}/keys/{kid}",status="405"' in text
        assert b"XXXX" not in text

    run(t)
    config = Config()
    app = create_app(ApiContext(Registry(config.domain, MemoryStore(), config.limits), config))
    assert all(getattr(r, "path", "") != "/v1/subjects/{subject}/keys/{kid}" for r in app.routes)
