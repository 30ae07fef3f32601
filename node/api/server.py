"""Serving the public API: an HTTP/1.1 front end that owns request framing, then the ASGI app.

Why a server of our own (docs/adr/0006-api-serving.md): under hypercorn every request costs
~1.5 ms of CPU on the 2-core dev box, which caps the key-verdict endpoint at ~600 requests/s per
core. Why it frames every request itself (docs/adr/0018-http-front-end.md): one parser decides
where each request ends, so a request cannot mean one thing here and another further on
(smuggling), and one place bounds what a client can hold: head size and time, body size and
time, connections per client and in all.

Per connection, :class:`LeanServer` reads a request head and parses it with
:func:`node.api.http1.parse_head`; reads its body (``Content-Length`` or chunked, answering
``Expect: 100-continue``) in full, within ``max_body`` bytes and ``body_timeout`` seconds; then
calls the ASGI app (the same Starlette app, middleware, rate limiter and metrics as under
hypercorn) in the connection's own task with the whole body, and sends the response head and
body in one ``send_all``. Keep-alive and pipelining are HTTP/1.1's; HTTP/1.0 connections close
after one response.

What it refuses, it answers itself with ``{"code", "message"}`` and then closes the connection
(after a framing error nothing that follows on it can be trusted): malformed heads (400
``bad_request``), both ``Content-Length`` and ``Transfer-Encoding`` (400, RFC 9112 6.1), codings
other than chunked (501), other expectations (417), heads past ``h11_max_incomplete_size`` (431
``oversized``), bodies past ``max_body`` (413 ``oversized``, read no further), bodies slower
than ``body_timeout`` (408 ``body_timeout``), and connections past ``max_connections`` in all or
``max_connections_per_client`` per address (503 ``busy``). A client that goes away mid-request
is counted (``client_disconnects``), not logged: the app never sees half a body.

Only HTTP/2 with prior knowledge (``PRI * HTTP/2.0``), when ``http2`` is on (``api.http2``, off
by default: 505 ``http_version`` and close), is handed with the bytes already read to hypercorn's
own per-connection server; the body timeout does not apply there. ``Upgrade`` headers are ignored
(RFC 9110 7.8 allows it): every HTTP/1.x request on every connection goes through the parser above.

Limits kept from the hypercorn config: ``keep_alive_timeout`` (idle time allowed before a request
head is complete, and the longest a response may take to be accepted by the client),
``keep_alive_max_requests`` (then ``connection: close``), ``h11_max_incomplete_size`` (head
size, and the chunked trailer section).

``KEYREG_API_SERVER=hypercorn`` serves with plain ``hypercorn.trio.serve`` instead (without these
body limits: the app still caps body sizes and answers a client that leaves mid-body with 499).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
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
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily

from ..config import ApiConfig
from .http1 import ChunkedDecoder, Refusal, Request, parse_head
from .middleware import client_key, json_bytes

__all__ = ["LeanServer", "Request", "parse_head", "serve_api"]

log = logging.getLogger("keyreg.api.server")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

MAX_RECV = 65536
_ASGI = {"version": "3.0", "spec_version": "2.1"}  # as hypercorn declares for HTTP
_DISCONNECT = {"type": "http.disconnect"}
_NO_BODY_STATUS = {204, 304}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# What the front end counts (keyreg_http_connection_events_total{event}).
EVENTS = (
    "requests",  # requests handed to the app
    "refused",  # requests the front end answered itself (4xx/5xx above) and closed
    "client_disconnects",  # the client closed before its request was complete
    "body_timeouts",  # 408: a body slower than body_timeout
    "send_timeouts",  # a response the client did not take within keep_alive_timeout
    "busy",  # connections refused over max_connections(_per_client)
    "handoffs",  # HTTP/2 prior-knowledge connections handed to hypercorn (api.http2)
)


class _ClientGone(Exception):
    """The client closed its side before the request was complete."""


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


class ServerCollector:
    """Prometheus view of a front end's counters."""

    def __init__(self, server: LeanServer) -> None:
        self.server = server

    def collect(self) -> Iterator[CounterMetricFamily]:
        c = CounterMetricFamily(
            "keyreg_http_connection_events", "HTTP front-end events (docs/operations.md)", labels=["event"]
        )
        for name, n in self.server.counters.items():
            c.add_metric([name], n)
        yield c


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

    def __init__(
        self,
        app: ASGIApp,
        config: HypercornConfig,
        *,
        max_body: int = ApiConfig.max_body_bytes,
        body_timeout: float = ApiConfig.body_timeout_s,
        max_connections: int = ApiConfig.max_connections,
        max_connections_per_client: int = ApiConfig.max_connections_per_client,
        http2: bool = ApiConfig.http2,
    ) -> None:
        self.app = app
        self.config = config
        self.max_head = int(config.h11_max_incomplete_size)
        self.idle = float(config.keep_alive_timeout)
        self.max_requests = int(config.keep_alive_max_requests)
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.max_connections = max_connections
        self.max_per_client = max_connections_per_client
        self.http2 = http2
        self._wrapped = ASGIWrapper(cast(Any, app))
        self._context = WorkerContext(None)
        self._date = _Date()
        self.counters = dict.fromkeys(EVENTS, 0)
        # Open connections, in all and per client address. Invariant: an address is a key only
        # while it has an open connection, so the table is bounded by max_connections.
        self.open = 0
        self._per_client: dict[str, int] = {}

    @property
    def lean_requests(self) -> int:
        return self.counters["requests"]

    @property
    def handoffs(self) -> int:
        return self.counters["handoffs"]

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
        address = "?"
        admitted = False
        try:
            sock = stream.socket
            client = parse_socket_addr(sock.family, sock.getpeername())
            address = client_key({"client": client})  # an IPv4 address or an IPv6 /64
            if self.open >= self.max_connections or self._per_client.get(address, 0) >= self.max_per_client:
                self.counters["busy"] += 1
                await self._refuse(stream, Refusal(503, "busy", "too many connections; retry later"))
                return
            admitted = True
            self.open += 1
            self._per_client[address] = self._per_client.get(address, 0) + 1
            await self._serve(stream, client, parse_socket_addr(sock.family, sock.getsockname()))
        except (_ClientGone, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.counters["client_disconnects"] += 1
        except trio.TooSlowError:
            self.counters["send_timeouts"] += 1
        except Exception:  # a bug here must cost one connection, never the node
            log.exception("HTTP connection failed")
        finally:
            if admitted:
                self.open -= 1
                left = self._per_client[address] - 1
                if left:
                    self._per_client[address] = left
                else:
                    del self._per_client[address]
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.SocketStream, client: Any, server: Any) -> None:
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
                            if buf:
                                raise _ClientGone
                            return  # a clean close between requests
                        searched = max(0, len(buf) - 3)
                        buf += data
                        end = buf.find(b"\r\n\r\n", searched)
                if end < 0:
                    if len(buf) > max_head:
                        await self._refuse(stream, Refusal(431, "oversized", f"request head over {max_head} bytes"))
                    return  # idle, or a head too slow to arrive: close
            try:
                if end > max_head:
                    raise Refusal(431, "oversized", f"request head over {max_head} bytes")
                req = parse_head(buf[:end])
                if req is None:  # HTTP/2 prior knowledge: hypercorn's, when enabled
                    if not self.http2:
                        raise Refusal(505, "http_version", "HTTP/2 is off on this server (api.http2)")
                    self.counters["handoffs"] += 1
                    await self._handoff(stream, buf)
                    return
                buf = buf[end + 4 :]
                body = b""
                if req.has_body:
                    body, buf = await self._read_body(stream, req, buf)
            except Refusal as refusal:
                await self._refuse(stream, refusal)
                return
            served += 1
            close = req.close or served >= self.max_requests
            target = req.target
            path, _, query = target.partition(b"?")
            method = req.method.decode("ascii")
            scope = {
                "type": "http",
                "asgi": _ASGI,
                "http_version": "1.0" if req.http10 else "1.1",
                "method": method,
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
            response = _Response(body)
            try:
                await app(scope, response.receive, response.send)
            except Exception:
                # Starlette's server-error layer has usually answered 500 already, then re-raised.
                log.exception("ASGI app raised on %s %s", method[:16], target[:200].decode("ascii"))
                close = True
            self.counters["requests"] += 1
            if not response.done:  # nothing (or half a response) from the app: 500, close
                if response.start is None:
                    await self._send(stream, self._simple(500, b"Internal Server Error"))
                return
            await self._send(stream, response.render(date(), close, method == "HEAD"))
            if close or response.close:
                with trio.move_on_after(1):
                    await stream.send_eof()
                return

    async def _read_body(self, stream: trio.SocketStream, req: Request, buf: bytes) -> tuple[bytes, bytes]:
        """The request's whole body and the bytes after it, within max_body and body_timeout."""
        if req.length > self.max_body:  # refused before a byte of it is read
            raise Refusal(413, "oversized", f"request body is {req.length} bytes, limit {self.max_body}")
        if req.expect_continue and not buf:
            await self._send(stream, _CONTINUE)
        deadline = trio.current_time() + self.body_timeout
        if not req.chunked:
            need = req.length
            parts, have = [buf], len(buf)
            while have < need:
                data = await self._receive(stream, deadline)
                parts.append(data)
                have += len(data)
            whole = b"".join(parts)
            return whole[:need], whole[need:]
        decoder = ChunkedDecoder(self.max_body, self.max_head)
        while True:
            used = decoder.feed(buf)
            buf = buf[used:]
            if decoder.done:
                return decoder.body(), buf
            buf += await self._receive(stream, deadline)

    async def _receive(self, stream: trio.SocketStream, deadline: float) -> bytes:
        with trio.move_on_at(deadline):
            data = await stream.receive_some(MAX_RECV)
            if not data:
                raise _ClientGone
            return bytes(data)
        self.counters["body_timeouts"] += 1
        raise Refusal(408, "body_timeout", f"the request body did not arrive within {self.body_timeout:g} s")

    async def _send(self, stream: trio.SocketStream, data: bytes) -> None:
        with trio.fail_after(self.idle):  # a client that does not read holds nothing for long
            await stream.send_all(data)

    async def _refuse(self, stream: trio.SocketStream, refusal: Refusal) -> None:
        """Answer a refusal, close our side, and drain what the client still sends for a moment
        (closing a socket with unread input resets it, which can destroy the answer in flight)."""
        self.counters["refused"] += 1
        body = json_bytes({"code": refusal.code, "message": refusal.message})
        head = (
            (_STATUS_LINES.get(refusal.status) or _status_line(refusal.status))
            + b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
            + self._date()
            + b"server: keyreg\r\nconnection: close\r\n\r\n"
        )
        with trio.move_on_after(1):
            await stream.send_all(head + body)
            await stream.send_eof()
            drained = 0
            while drained < 1 << 20:
                data = await stream.receive_some(MAX_RECV)
                if not data:
                    break
                drained += len(data)

    def _simple(self, status: int, body: bytes) -> bytes:
        return (
            _STATUS_LINES[status]
            + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body)
            + self._date()
            + b"server: keyreg\r\nconnection: close\r\n\r\n"
            + body
        )

    async def _handoff(self, stream: trio.SocketStream, pending: bytes) -> None:
        replay = _Replay(stream, pending)
        await TCPServer(self._wrapped, self.config, self._context, ConnectionState({}), cast(Any, replay)).run()


class _Response:
    """Hands the app its request body, then collects one ASGI response (start + body messages)."""

    __slots__ = ("body", "chunks", "close", "done", "received", "start")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []
        self.done = False
        self.received = False
        self.close = False

    async def receive(self) -> dict[str, Any]:
        if not self.received:
            self.received = True
            return {"type": "http.request", "body": self.body, "more_body": False}
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

    def render(self, date: bytes, close: bool, head_request: bool = False) -> bytes:
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
        if head_request:  # the length of the body a GET would get, and no body
            body = b""
        out.append(date)
        out.append(b"server: keyreg\r\nconnection: close\r\n\r\n" if close or self.close else b"server: keyreg\r\n\r\n")
        out.append(body)
        return b"".join(out)


async def serve_api(
    app: ASGIApp,
    config: HypercornConfig,
    api: ApiConfig | None = None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the public API: the lean front end (with the limits of ``api``), or plain hypercorn
    when ``KEYREG_API_SERVER=hypercorn`` or TLS is configured. The front end's counters join the
    app's metrics registry (``app.state.metrics``, set by create_app) when it has one."""
    import os

    if os.environ.get("KEYREG_API_SERVER", "lean") == "hypercorn" or config.ssl_enabled:
        await hypercorn_serve(cast(Any, app), config, task_status=task_status)
        return
    api = api or ApiConfig()
    server = LeanServer(
        app,
        config,
        max_body=api.max_body_bytes,
        body_timeout=api.body_timeout_s,
        max_connections=api.max_connections,
        max_connections_per_client=api.max_connections_per_client,
        http2=api.http2,
    )
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    if isinstance(metrics, CollectorRegistry):
        metrics.register(ServerCollector(server))
    await server.serve(task_status=task_status)
