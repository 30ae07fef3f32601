"""Serving the public API: a lean HTTP/1.1 keep-alive path in front of hypercorn's trio worker.

Why (docs/adr/0006-api-serving.md): under hypercorn every request costs ~1.5 ms of CPU on the
2-core dev box (h11 events, a task and a queue per request, a locked and shielded ``send_all``
per h11 event), which caps the key-verdict endpoint at ~600 requests/s per core. Almost all
verifier traffic is the simplest HTTP there is: ``GET`` on a keep-alive HTTP/1.1 connection, no
body. This module answers exactly that case itself and hands everything else to hypercorn.

Per connection, :class:`LeanServer` reads request heads. A head it accepts (all of):

- request line ``GET <origin-form target of visible ASCII> HTTP/1.1``;
- well-formed header lines (token name, visible-ASCII/obs-text value, no folding), a ``Host``;
- no request body and nothing to negotiate: no ``Transfer-Encoding``, ``Content-Length`` other
  than 0, ``Upgrade`` or ``Expect``;
- the whole head within ``h11_max_incomplete_size`` bytes;

is served in the connection's own task: the ASGI app (the same Starlette app, middleware, rate
limiter and metrics as under hypercorn) is called in-process and the response head and body go
out in one ``send_all``. On the first request it does not accept, the connection (with the bytes
already read, from that request's first byte on) is handed to hypercorn's own per-connection
server for the rest of its life: POST bodies, chunked uploads, ``Expect: 100-continue``, h2c
upgrades and HTTP/2 prior knowledge, HTTP/1.0, malformed or oversized heads (hypercorn answers
those with its usual 4xx) all behave exactly as under plain hypercorn.

Limits kept from the hypercorn config: ``keep_alive_timeout`` (idle time allowed before a request
head is complete, then the connection is closed), ``keep_alive_max_requests`` (then
``connection: close``), ``h11_max_incomplete_size`` (head size). Body limits are the app's
(``max_body_bytes``) and only apply to requests hypercorn serves: the lean path takes no body.

``KEYREG_API_SERVER=hypercorn`` serves with plain ``hypercorn.trio.serve`` instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote
from wsgiref.handlers import format_date_time

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr, repr_socket_addr

log = logging.getLogger("keyreg.api.server")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

MAX_RECV = 65536
_REQUEST_LINE = re.compile(rb"GET (/[\x21-\x7e]*) HTTP/1\.1")
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[\x21-\x7e\x80-\xff][\x20-\x7e\x80-\xff\t]*)?)")
# Headers that mean a body, a protocol switch or an interim response: hypercorn's job.
_HANDOFF = {b"transfer-encoding", b"upgrade", b"expect", b"te"}
_ASGI = {"version": "3.0", "spec_version": "2.1"}  # as hypercorn declares for HTTP
_FIRST_BODY = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT = {"type": "http.disconnect"}
_NO_BODY_STATUS = {204, 304}


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS_LINES = {s.value: _status_line(s.value) for s in HTTPStatus}


class _Date:
    """The ``date`` header line, formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = b"date: " + format_date_time(now).encode("ascii") + b"\r\n"
        return self.line


class Request:
    """A parsed request head the lean path serves."""

    __slots__ = ("close", "headers", "target")

    def __init__(self, target: bytes, headers: list[tuple[bytes, bytes]], close: bool) -> None:
        self.target, self.headers, self.close = target, headers, close


def parse_head(head: bytes) -> Request | None:
    """A simple GET head (without its final CRLFCRLF), or None: the request is hypercorn's."""
    lines = head.split(b"\r\n")
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        return None
    headers: list[tuple[bytes, bytes]] = []
    close = host = False
    for line in lines[1:]:
        h = _HEADER_LINE.fullmatch(line)
        if h is None:
            return None
        name = h.group(1).lower()
        value = h.group(2).rstrip(b" \t")
        if name in _HANDOFF or (name == b"content-length" and value != b"0"):
            return None
        if name == b"host":
            if host:
                return None  # two Host headers: h11 decides (400)
            host = True
        elif name == b"connection" and b"close" in [t.strip() for t in value.lower().split(b",")]:
            close = True
        headers.append((name, value))
    if not host:
        return None
    return Request(m.group(1), headers, close)


class _Replay(trio.abc.HalfCloseableStream):
    """A socket stream that first returns bytes already read: what hypercorn takes over.

    No ``do_handshake``: hypercorn's TCPServer takes that to mean "not TLS" and uses ``.socket``.
    """

    def __init__(self, stream: trio.SocketStream, pending: bytes) -> None:
        self.stream = stream
        self.socket = stream.socket
        self.pending = pending

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.pending:
            n = len(self.pending) if max_bytes is None else max_bytes
            data, self.pending = self.pending[:n], self.pending[n:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self.stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(bytes(data) if isinstance(data, bytearray) else data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


class LeanServer:
    """Serve ``app`` on the hypercorn config's (plain TCP) binds; see the module docstring."""

    def __init__(self, app: ASGIApp, config: HypercornConfig) -> None:
        self.app = app
        self.config = config
        self.max_head = int(config.h11_max_incomplete_size)
        self.idle = float(config.keep_alive_timeout)
        self.max_requests = int(config.keep_alive_max_requests)
        self._wrapped = ASGIWrapper(cast(Any, app))
        self._context = WorkerContext(None)
        self._date = _Date()
        self.lean_requests = 0  # served here (tests and the bench read these)
        self.handoffs = 0  # connections handed to hypercorn

    async def serve(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        sockets = self.config.create_sockets()
        listeners, binds = [], []
        for sock in sockets.insecure_sockets:
            sock.listen(self.config.backlog)
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
            binds.append("http://" + repr_socket_addr(sock.family, sock.getsockname()))
        task_status.started(binds)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away
        except Exception:  # a bug here must cost one connection, never the node
            log.exception("HTTP connection failed")
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        sock = stream.socket
        client = parse_socket_addr(sock.family, sock.getpeername())
        server = parse_socket_addr(sock.family, sock.getsockname())
        app, date, max_head = self.app, self._date, self.max_head
        root_path = self.config.root_path
        buf = b""
        served = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                with trio.move_on_after(self.idle):
                    while end < 0 and len(buf) <= max_head:
                        data = await stream.receive_some(MAX_RECV)
                        if not data:
                            return
                        searched = max(0, len(buf) - 3)
                        buf += data
                        end = buf.find(b"\r\n\r\n", searched)
                if end < 0:
                    if len(buf) > max_head:  # hypercorn (h11) answers the oversized head
                        await self._handoff(stream, buf)
                    return  # idle or a head too slow to arrive: close, as hypercorn does
            if end > max_head or (req := parse_head(buf[:end])) is None:
                await self._handoff(stream, buf)
                return
            buf = buf[end + 4 :]
            served += 1
            close = req.close or served >= self.max_requests
            target = req.target
            path, _, query = target.partition(b"?")
            scope = {
                "type": "http",
                "asgi": _ASGI,
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": unquote(path.decode("ascii")),
                "raw_path": path,
                "query_string": query,
                "root_path": root_path,
                "headers": req.headers,
                "client": client,
                "server": server,
                "state": {},
                "extensions": {},
            }
            response = _Response()
            try:
                await app(scope, response.receive, response.send)
            except Exception:
                # Starlette's server-error layer has usually answered 500 already, then re-raised.
                log.exception("ASGI app raised on GET %s", target.decode("ascii"))
                close = True
            self.lean_requests += 1
            if not response.done:  # nothing (or half a response) from the app: 500, close
                if response.start is None:
                    await stream.send_all(self._simple(500, b"Internal Server Error"))
                return
            await stream.send_all(response.render(date(), close))
            if close or response.close:
                with trio.move_on_after(1):
                    await stream.send_eof()
                return

    def _simple(self, status: int, body: bytes) -> bytes:
        return (
            _STATUS_LINES[status]
            + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body)
            + self._date()
            + b"server: keyreg\r\nconnection: close\r\n\r\n"
            + body
        )

    async def _handoff(self, stream: trio.SocketStream, pending: bytes) -> None:
        self.handoffs += 1
        replay = _Replay(stream, pending)
        await TCPServer(self._wrapped, self.config, self._context, ConnectionState({}), cast(Any, replay)).run()


class _Response:
    """Collects one ASGI response (start + body messages)."""

    __slots__ = ("chunks", "close", "done", "received", "start")

    def __init__(self) -> None:
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []
        self.done = False
        self.received = False
        self.close = False

    async def receive(self) -> dict[str, Any]:
        if not self.received:
            self.received = True
            return _FIRST_BODY
        return _DISCONNECT

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.start is not None:
                raise RuntimeError("http.response.start sent twice")
            self.start = message
        elif kind == "http.response.body":
            if self.start is None or self.done:
                raise RuntimeError("http.response.body out of order")
            body = message.get("body", b"")
            if body:
                self.chunks.append(body)
            if not message.get("more_body", False):
                self.done = True

    def render(self, date: bytes, close: bool) -> bytes:
        assert self.start is not None
        status = int(self.start["status"])
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        out = [_STATUS_LINES.get(status) or _status_line(status)]
        has_length = False
        for name, value in self.start.get("headers", ()):
            lname = bytes(name).lower()
            if lname == b"content-length":
                has_length = True
            elif lname == b"connection":
                if b"close" in bytes(value).lower():
                    self.close = True
                continue  # ours below
            out.append(bytes(name) + b": " + bytes(value) + b"\r\n")
        if status in _NO_BODY_STATUS or status < 200:
            body = b""
        elif not has_length:
            out.append(b"content-length: %d\r\n" % len(body))
        out.append(date)
        out.append(b"server: keyreg\r\nconnection: close\r\n\r\n" if close or self.close else b"server: keyreg\r\n\r\n")
        out.append(body)
        return b"".join(out)


async def serve_api(
    app: ASGIApp, config: HypercornConfig, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the public API: the lean path with hypercorn behind it, or plain hypercorn when
    ``KEYREG_API_SERVER=hypercorn`` or TLS is configured."""
    import os

    if os.environ.get("KEYREG_API_SERVER", "lean") == "hypercorn" or config.ssl_enabled:
        await hypercorn_serve(cast(Any, app), config, task_status=task_status)
        return
    await LeanServer(app, config).serve(task_status=task_status)
