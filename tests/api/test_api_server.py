"""The lean HTTP/1.1 path (node/api/server.py) over real loopback sockets, and its hand-off to hypercorn."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio
from api_support import NOW, Clock, Subject, obj
from hypercorn.config import Config as HypercornConfig

from node.api.app import ApiContext, create_app
from node.api.server import LeanServer, parse_head
from node.config import ApiConfig, Config
from node.registry import Registry
from node.store.memory import MemoryStore


def _hc(**over: Any) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.keep_alive_timeout = over.get("keep_alive_timeout", 30)
    hc.keep_alive_max_requests = over.get("keep_alive_max_requests", 100_000)
    hc.h11_max_incomplete_size = over.get("h11_max_incomplete_size", 64 * 1024)
    return hc


class Conn:
    """A raw HTTP/1.1 client connection that reads one response at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self.buf += await self.stream.receive_some(65536)
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    async def closed(self) -> bool:
        with trio.move_on_after(5):
            while True:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    return True
                self.buf += chunk
        return False


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: t\r\n{extra}\r\n".encode()


def run(
    test: Callable[[Callable[[], Awaitable[Conn]], LeanServer, Subject, Registry], Awaitable[None]],
    api: dict[str, Any] | None = None,
    **hc: Any,
) -> None:
    config = replace(Config(), api=replace(ApiConfig(), **(api or {"rate_limit_per_s": 0})))
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=Clock())
    s = Subject.make(config)
    assert registry.ingest([json.dumps(obj(s.inception)).encode()], "test")[0].status == "accepted"
    server = LeanServer(create_app(ApiContext(registry, config)), _hc(**hc))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(server.serve)
            host, port = binds[0].removeprefix("http://").rsplit(":", 1)

            conns: list[Conn] = []

            async def connect() -> Conn:
                conns.append(Conn(await trio.open_tcp_stream(host, int(port))))
                return conns[-1]

            try:
                with trio.fail_after(20):
                    await test(connect, server, s, registry)
            finally:
                for c in conns:
                    await trio.aclose_forcefully(c.stream)
                nursery.cancel_scope.cancel()

    trio.run(main)


def test_parse_head() -> None:
    assert parse_head(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*") is not None
    req = parse_head(b"GET / HTTP/1.1\r\nhost: x\r\nConnection: keep-alive, Close")
    assert req is not None
    assert req.close
    for head in (
        b"POST / HTTP/1.1\r\nhost: x",
        b"GET / HTTP/1.0\r\nhost: x",
        b"GET / HTTP/1.1",  # no Host
        b"GET / HTTP/1.1\r\nhost: x\r\nhost: y",
        b"GET http://x/ HTTP/1.1\r\nhost: x",
        b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 3",
        b"GET / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked",
        b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: h2c\r\nconnection: upgrade",
        b"GET / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue",
        b"GET / HTTP/1.1\r\nhost: x\r\n folded",
        b"GET / HTTP/1.1\r\nhost: x\r\nbad name: v",
        b"GET / HTTP/1.1\r\nhost: x\r\nx: a\x00b",
        b"PRI * HTTP/2.0",
    ):
        assert parse_head(head) is None, head
    assert parse_head(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0") is not None


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
        await c.send(get("/nope"))
        status, _, body = await c.response()
        assert status == 404
        assert json.loads(body)["code"] == "not_found"
        assert server.lean_requests == 7
        assert server.handoffs == 0

    run(t)


def test_post_hands_connection_to_hypercorn() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        c = await connect()
        await c.send(get(f"/v1/subjects/{s.id}/keys/k1"))
        assert (await c.response())[0] == 200
        body = json.dumps(obj(s.inception)).encode()
        await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n")
        await c.send(b"content-length: %d\r\n\r\n" % len(body) + body)
        status, headers, answer = await c.response()
        assert status == 200
        assert json.loads(answer)["status"] == "known"
        assert headers["server"].startswith("hypercorn")
        await c.send(get(f"/v1/subjects/{s.id}/keys/k1"))  # the connection stays with hypercorn
        status, headers, answer = await c.response()
        assert status == 200
        assert json.loads(answer)["status"] == "valid"
        assert server.handoffs == 1
        assert server.lean_requests == 1

    run(t)


def test_body_cap_and_chunked_upload_via_hypercorn() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, registry: Registry) -> None:
        c = await connect()
        await c.send(b"POST /v1/events HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(4):
            await c.send(b"400\r\n" + b" " * 1024 + b"\r\n")
        await c.send(b"0\r\n\r\n")
        status, _, answer = await c.response()
        assert status == 413
        assert json.loads(answer)["code"] == "oversized"
        assert registry.counters["accepted"] == 1  # the inception only

    run(t, api={"rate_limit_per_s": 0, "max_body_bytes": 2048})


def test_oversized_or_malformed_heads_get_hypercorns_answer() -> None:
    async def t(connect: Any, server: LeanServer, s: Subject, _: Registry) -> None:
        c = await connect()  # a head past the limit (still incomplete): h11's error answer, closed
        await c.send(b"GET / HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 5000)
        status, _, _ = await c.response()
        assert 400 <= status < 500
        assert await c.closed()
        c = await connect()  # a complete head past the limit: hypercorn serves it like any other
        await c.send(b"GET /v1/health HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 5000 + b"\r\n\r\n")
        assert (await c.response())[0] == 200
        c = await connect()
        await c.send(b"GET /v1/health HTTP/1.1\r\n\r\n")  # no Host: h11 refuses
        assert (await c.response())[0] == 400
        c = await connect()
        await c.send(b"GET /v1/health HTTP/1.0\r\n\r\n")  # HTTP/1.0 works, through hypercorn
        assert (await c.response())[0] == 200
        assert server.lean_requests == 0
        assert server.handoffs == 4

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
