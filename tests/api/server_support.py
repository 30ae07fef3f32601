"""A real LeanServer on a loopback socket, and a raw HTTP/1.1 client connection to it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio
from api_support import Clock, Subject, obj
from hypercorn.config import Config as HypercornConfig

from keyreg.api.app import ApiContext, create_app
from keyreg.api.server import LeanServer
from keyreg.config import ApiConfig, Config
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore


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

    async def response_to_head(self) -> tuple[int, dict[str, str], bytes]:
        """A response to HEAD: its content-length describes a body that is not sent."""
        while b"\r\n\r\n" not in self.buf:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        return int(lines[0].split(" ")[1]), headers, b""

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
    api_config = config.api
    server = LeanServer(
        create_app(ApiContext(registry, config)),
        _hc(**hc),
        max_body=api_config.max_body_bytes,
        body_timeout=api_config.body_timeout_s,
        max_connections=api_config.max_connections,
        max_connections_per_client=api_config.max_connections_per_client,
    )

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
