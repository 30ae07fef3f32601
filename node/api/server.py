"""Serving the public API: h11 frames every HTTP/1.x request, then the ASGI app gets it whole.

Why a server of our own rather than hypercorn's (docs/adr/0021-h11-front-end.md, which
supersedes 0006 and 0018): the key-verdict endpoint must answer keep-alive GETs cheaply (under
hypercorn each request costs several sends, locks and task starts), and one place must decide
where each request ends and bound what a client can hold: head size and time, body size and
time, connections per client and in all.

Per connection, :class:`LeanServer` feeds the bytes it reads to an :class:`h11.Connection`
(h11 parses the request line, headers and body framing, and keeps the keep-alive state), checks
the head with :func:`keyreg.api.http1.check_head` (our rules on top of h11's), reads the body in
full within ``max_body`` bytes and ``body_timeout`` seconds (answering ``Expect:
100-continue``), then calls the ASGI app (Starlette: its middleware, rate limiter and metrics) in
the connection's own task with the whole body, and sends the response, framed by h11, in one
``send_all``. Keep-alive and pipelining are HTTP/1.1's; HTTP/1.0 connections close after one
response.

What it refuses, it answers itself with ``{"code", "message"}`` and then closes the connection
(after a framing error nothing that follows on it can be trusted): what h11 refuses (400, 431
for an incomplete head past ``h11_max_incomplete_size``, 501 for codings other than chunked),
what :func:`check_head` refuses (400 for ``Content-Length`` with ``Transfer-Encoding``, 417,
431, 505), bodies past ``max_body`` (413 ``oversized``, read no further), bodies slower than
``body_timeout`` (408 ``body_timeout``), and connections past ``max_connections`` in all or
``max_connections_per_client`` per address (503 ``busy``). A client that goes away mid-request
is counted (``client_disconnects``), not logged: the app never sees half a body. ``Upgrade`` is
ignored (RFC 9110 7.8) and HTTP/2 prior knowledge gets 505.

Limits kept from the hypercorn config the node builds: ``keep_alive_timeout`` (idle time allowed
before a request head is complete, and the longest a response may take to be accepted by the
client), ``keep_alive_max_requests`` (then ``connection: close``), ``h11_max_incomplete_size``
(head size, and a chunk line or trailer section).

``KEYREG_API_SERVER=hypercorn``, a TLS config or ``api.http2`` serve with plain
``hypercorn.trio.serve`` instead (HTTP/2 too, but without the body timeout and connection caps:
the app still caps body sizes and answers a client that leaves mid-body with 499).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote
from wsgiref.handlers import format_date_time

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily

from ..config import ApiConfig
from .http1 import Refusal, check_head, read_body, refusal_for
from .middleware import client_key, json_bytes

__all__ = ["LeanServer", "serve_api"]

log = logging.getLogger("keyreg.api.server")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

MAX_RECV = 65536
_ASGI = {"version": "3.0", "spec_version": "2.1"}
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
)


class _ClientGone(Exception):
    """The client closed its side before the request was complete."""


class _Date:
    """The ``date`` header value, formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = format_date_time(now).encode("ascii")
        return self.value


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


def _address(family: int, addr: Any) -> tuple[str, int] | None:
    if family in (socket.AF_INET, socket.AF_INET6):
        return str(addr[0]), int(addr[1])
    return None


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
        self._date = _Date()
        self.counters = dict.fromkeys(EVENTS, 0)
        # Open connections, in all and per client address. Invariant: an address is a key only
        # while it has an open connection, so the table is bounded by max_connections.
        self.open = 0
        self._per_client: dict[str, int] = {}

    async def serve(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        listeners, binds = [], []
        for sock in self.config.create_sockets().insecure_sockets:
            sock.listen(self.config.backlog)
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
            host, port = sock.getsockname()[:2]
            binds.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
        task_status.started(binds)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        address = "?"
        admitted = False
        try:
            sock = stream.socket
            client = _address(sock.family, sock.getpeername())
            address = client_key({"client": client})  # an IPv4 address or an IPv6 /64
            if self.open >= self.max_connections or self._per_client.get(address, 0) >= self.max_per_client:
                self.counters["busy"] += 1
                await self._refuse(stream, Refusal(503, "busy", "too many connections; retry later"))
                return
            admitted = True
            self.open += 1
            self._per_client[address] = self._per_client.get(address, 0) + 1
            await self._serve(stream, client, _address(sock.family, sock.getsockname()))
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
        app, date = self.app, self._date
        root_path = self.config.root_path
        pending = b""  # bytes read past the previous request (pipelining)
        served = 0
        while True:
            # One h11 connection per request, fed what the previous one left: h11 frames the
            # request and says whether the client keeps the connection alive. The response is the
            # app's, complete, so _Response.render writes it with its length (ADR 0021: why not
            # through h11).
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head)
            try:
                if pending:
                    conn.receive_data(pending)
                    event = conn.next_event()
                else:
                    event = h11.NEED_DATA
                if event is h11.NEED_DATA:
                    event = await self._receive_head(stream, conn)
                    if event is None:
                        return  # a clean close between requests, or idle past keep_alive_timeout
                if type(event) is not h11.Request:  # a cycle starts with a request
                    raise Refusal(400, "bad_request", "expected a request")
                req = check_head(event, self.max_head)
                if req.length > self.max_body:  # refused before a byte of it is read
                    raise Refusal(413, "oversized", f"request body is {req.length} bytes, limit {self.max_body}")
                body = bytearray()
                if not read_body(conn, body, self.max_body):  # a GET is complete here
                    await self._receive_body(stream, conn, body)
            except h11.RemoteProtocolError as exc:
                await self._refuse(stream, refusal_for(exc, self.max_head))
                return
            except Refusal as refusal:
                await self._refuse(stream, refusal)
                return
            pending = conn.trailing_data[0]
            served += 1
            # MUST_CLOSE: HTTP/1.0 or "Connection: close" (h11's reading of the request)
            close = conn.their_state is h11.MUST_CLOSE or served >= self.max_requests
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
            response = _Response(bytes(body))
            try:
                await app(scope, response.receive, response.send)
            except Exception:
                # Starlette's server-error layer has usually answered 500 already, then re-raised.
                log.exception("ASGI app raised on %s %s", method[:16], target[:200].decode("ascii"))
                close = True
            self.counters["requests"] += 1
            if not response.done:  # nothing (or half a response) from the app: 500, close
                if response.start is None:
                    await self._refuse(stream, Refusal(500, "internal", "internal server error"), count=False)
                return
            await self._send(stream, response.render(date(), close, method == "HEAD"))
            if close or response.close:
                with trio.move_on_after(1):
                    await stream.send_eof()
                return

    async def _receive_head(self, stream: trio.SocketStream, conn: h11.Connection) -> Any:
        """h11's next event once a request head is complete, or None if the client closed or
        stayed idle between requests (or took longer than keep_alive_timeout to send a head)."""
        with trio.move_on_after(self.idle):
            while True:
                data = await stream.receive_some(MAX_RECV)
                if not data:
                    if conn.trailing_data[0]:
                        raise _ClientGone
                    return None
                conn.receive_data(data)
                event = conn.next_event()  # raises 431 past max_incomplete_event_size
                if event is not h11.NEED_DATA:
                    return event
        return None

    async def _receive_body(self, stream: trio.SocketStream, conn: h11.Connection, body: bytearray) -> None:
        """The rest of the request's body into ``body``, within max_body and body_timeout."""
        if conn.they_are_waiting_for_100_continue:  # and nothing of the body has arrived yet
            await self._send(stream, _CONTINUE)
        deadline = trio.current_time() + self.body_timeout
        while True:
            with trio.move_on_at(deadline):
                data = await stream.receive_some(MAX_RECV)
                if not data:
                    raise _ClientGone
                conn.receive_data(data)
                if read_body(conn, body, self.max_body):
                    return
                continue
            self.counters["body_timeouts"] += 1
            raise Refusal(408, "body_timeout", f"the request body did not arrive within {self.body_timeout:g} s")

    async def _send(self, stream: trio.SocketStream, data: bytes) -> None:
        with trio.fail_after(self.idle):  # a client that does not read holds nothing for long
            await stream.send_all(data)

    async def _refuse(self, stream: trio.SocketStream, refusal: Refusal, count: bool = True) -> None:
        """Answer a refusal, close our side, and drain what the client still sends for a moment
        (closing a socket with unread input resets it, which can destroy the answer in flight).
        """
        if count:
            self.counters["refused"] += 1
        body = json_bytes({"code": refusal.code, "message": refusal.message})
        head = (
            _STATUS_LINES[refusal.status]
            + b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
            + b"date: "
            + self._date()
            + b"\r\nserver: keyreg\r\nconnection: close\r\n\r\n"
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


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS_LINES = {s.value: _status_line(s.value) for s in HTTPStatus}


class _Response:
    """Hands the app its request body, then collects one ASGI response (start + body messages)
    and renders it: status line, the app's headers, ``content-length`` (the whole body is known),
    ``date``, ``server`` and ``connection: close`` when the connection ends."""

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
        out.append(b"date: " + date + b"\r\n")
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
    """Serve the public API: the front end above (with the limits of ``api``), or plain
    ``hypercorn.trio.serve`` when ``KEYREG_API_SERVER=hypercorn``, TLS or ``api.http2`` is
    configured. The front end's counters join the app's metrics registry (``app.state.metrics``,
    set by create_app) when it has one."""
    api = api or ApiConfig()
    if os.environ.get("KEYREG_API_SERVER", "lean") == "hypercorn" or config.ssl_enabled or api.http2:
        await hypercorn_serve(cast(Any, app), config, task_status=task_status)
        return
    server = LeanServer(
        app,
        config,
        max_body=api.max_body_bytes,
        body_timeout=api.body_timeout_s,
        max_connections=api.max_connections,
        max_connections_per_client=api.max_connections_per_client,
    )
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    if isinstance(metrics, CollectorRegistry):
        metrics.register(ServerCollector(server))
    await server.serve(task_status=task_status)
