"""Pure-ASGI middleware for the public API: per-client rate limiting, request metrics, hot routes.

Pure ASGI (not BaseHTTPMiddleware) because the key-verdict path is hot: each layer adds a few
microseconds, not a task and a queue. :class:`HotRoutes` goes further for the hottest reads: it
answers them before Starlette's routing, with the same rate-limit buckets, the same latency
histogram (same route template label) and the same JSON bodies, so the answer is identical.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import CollectorRegistry, Histogram

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Paths whose GET neither counts against nor gets refused by the rate limiter (probes, scrapers).
# Both answers are O(1) in the registry's size (running counters); any other method on them is
# throttled like every other request.
_EXEMPT = ("/v1/health", "/metrics")

# Methods the metrics label by name. Any other method (clients may send any token, up to the
# head size) is labelled OTHER: the label set, and /metrics with it, stays bounded.
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"))


def method_label(method: str) -> str:
    """The metrics label of an HTTP method: its name if standard, else ``OTHER``."""
    return method if method in KNOWN_METHODS else "OTHER"


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_bytes(send, status, json_bytes(body), headers)


async def send_bytes(send: Send, status: int, data: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A complete JSON response from pre-serialised bytes: one start message, one body message."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


@lru_cache(maxsize=4096)
def _ipv6_prefix(host: str) -> str:
    try:
        return str(ipaddress.IPv6Network((host, 64), strict=False).network_address) + "/64"
    except ValueError:
        return host


def client_key(scope: Scope) -> str:
    """Who a request counts against: its client's IPv4 address, or its IPv6 /64 (one end site
    gets a whole /64, so per-address budgets would be free to multiply)."""
    client = scope.get("client")
    if not client:
        return "?"
    host = str(client[0])
    return _ipv6_prefix(host) if ":" in host else host


class TokenBuckets:
    """Token buckets keyed by client address, holding at most ``max_clients`` (LRU)."""

    def __init__(
        self, rate: float, burst: float, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, cost: float = 1.0) -> float:
        """0.0 if a request costing ``cost`` tokens may pass now (they are taken), else the seconds
        until it could (nothing is taken). A cost over the burst can never pass."""
        now = self.clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def json_bytes(body: Any) -> bytes:
    """JSON as Starlette's JSONResponse renders it (compact, UTF-8, no NaN)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def rate_limited(wait: float) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The 429 answer: status, JSON body, extra headers (Retry-After)."""
    body = {"code": "rate_limited", "message": f"too many requests from this client; retry in {wait:.2f}s"}
    return 429, json_bytes(body), [(b"retry-after", str(max(1, round(wait + 0.5))).encode())]


class RateLimitMiddleware:
    """Answer 429 (code ``rate_limited``, with Retry-After) when a client exceeds its bucket."""

    def __init__(
        self, app: ASGIApp, rate: float = 0.0, burst: float = 0.0, buckets: TokenBuckets | None = None
    ) -> None:
        self.app = app
        self.buckets = buckets if buckets is not None else TokenBuckets(rate, burst) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.buckets is None or scope["type"] != "http" or (scope["method"] == "GET" and scope["path"] in _EXEMPT):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(client_key(scope))
        if wait > 0:
            status, data, extra = rate_limited(wait)
            await send_bytes(send, status, data, extra)
            return
        await self.app(scope, receive, send)


class LogBudget:
    """At most ``burst`` log records per ``interval_s`` (a fixed window): the rest are counted, and
    the next record logged says how many were suppressed. Anything a client can trigger and the
    node logs must not let that client fill the disk."""

    def __init__(self, burst: int = 10, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.interval_s = interval_s
        self.clock = clock
        self.start = -float("inf")
        self.used = 0
        self.suppressed = 0  # since the last record logged

    def take(self) -> int | None:
        """None: do not log (counted); else log, mentioning this many suppressed before it."""
        now = self.clock()
        if now - self.start >= self.interval_s:
            self.start, self.used = now, 0
        if self.used >= self.burst:
            self.suppressed += 1
            return None
        self.used += 1
        n, self.suppressed = self.suppressed, 0
        return n


_INTERNAL = json_bytes({"code": "internal", "message": "internal server error"})


class InternalErrors:
    """An unexpected exception (a bug) answers 500 ``internal`` and is logged with its traceback,
    at most ``LogBudget.burst`` per interval with a count of those suppressed, and the connection
    is closed. It is not re-raised: the server's own handler would log every one, unbounded."""

    def __init__(self, app: ASGIApp, budget: LogBudget | None = None) -> None:
        self.app = app
        self.budget = budget if budget is not None else LogBudget()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            suppressed = self.budget.take()
            if suppressed is not None:
                more = f" ({suppressed} more suppressed before this one)" if suppressed else ""
                path = str(scope.get("path", ""))[:200]
                log.error("unexpected error on %s %r%s", method_label(scope["method"]), path, more, exc_info=exc)
            if not started:  # else the server sees half a response and closes the connection
                # closed after it: the request may have left the connection's state half done
                # (HTTP/2 has no Connection header: there a stream ends, not the connection)
                close = [] if scope.get("http_version") == "2" else [(b"connection", b"close")]
                await send_bytes(send, 500, _INTERNAL, close)


def latency_histogram(registry: CollectorRegistry) -> Histogram:
    """keyreg_http_request_seconds{method, route, status}."""
    return Histogram(
        "keyreg_http_request_seconds",
        "HTTP request latency by route and status",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    )


class MetricsMiddleware:
    """Observe request latency per route template and status."""

    def __init__(
        self, app: ASGIApp, registry: CollectorRegistry | None = None, latency: Histogram | None = None
    ) -> None:
        self.app = app
        if latency is None:
            assert registry is not None, "MetricsMiddleware needs a registry or a histogram"
            latency = latency_histogram(registry)
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.latency.labels(method_label(scope["method"]), template, str(status)).observe(
                time.perf_counter() - start
            )


# A hot handler: (path match, query parameters) -> (status, JSON body bytes). It must not block.
HotHandler = Callable[[re.Match[str], dict[str, str]], tuple[int, bytes]]
_NOT_ALLOWED = json_bytes({"code": "method_not_allowed", "message": "Method Not Allowed"})


class HotRoute:
    """A path answered only by :class:`HotRoutes` (Starlette has no route for it): a full-match
    path regex, its template, a handler for GET and HEAD."""

    methods = ("GET", "HEAD")

    def __init__(self, pattern: str, template: str, handler: HotHandler) -> None:
        self.regex = re.compile(pattern)
        self.template = template
        self.handler = handler


class HotRoutes:
    """The router of the hot read paths, ahead of Starlette's: rate limit, handler, pre-serialised
    body, metrics (the same buckets, histogram and JSON bodies as the Starlette stack).

    A request on a hot path is routed here and only here: GET and HEAD (the server sends HEAD's
    headers without the body) go to the handler, other methods get 405 with ``Allow``. Any other
    path goes to the wrapped app unchanged. Handlers are synchronous and non-blocking (registry
    dict lookups); an exception they raise propagates like one from a Starlette endpoint (a 500
    from the server-error layer outside).
    """

    def __init__(
        self, app: ASGIApp, routes: list[HotRoute], latency: Histogram, buckets: TokenBuckets | None = None
    ) -> None:
        self.app = app
        self.routes = routes
        self.latency = latency
        self.buckets = buckets
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for route in self.routes:
                m = route.regex.fullmatch(path)
                if m is not None:
                    await self._answer(route, m, scope, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, route: HotRoute, m: re.Match[str], scope: Scope, send: Send) -> None:
        start = time.perf_counter()
        extra: list[tuple[bytes, bytes]] | None = None
        wait = 0.0
        if self.buckets is not None:
            wait = self.buckets.take(client_key(scope))
        method = scope["method"]
        if wait > 0:
            status, body, extra = rate_limited(wait)
            template = "unmatched"  # as under the Starlette stack: refused before routing
        elif method not in route.methods:
            status, body, extra = 405, _NOT_ALLOWED, [(b"allow", b"GET, HEAD")]
            template = route.template
        else:
            qs = scope.get("query_string", b"")
            params = dict(parse_qsl(qs.decode("latin-1"), keep_blank_values=True)) if qs else {}
            status, body = route.handler(m, params)
            template = route.template
        await send_bytes(send, status, body, extra)
        key = (method_label(method), template, status)  # bounded: unknown methods are OTHER
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.latency.labels(key[0], template, str(status))
        child.observe(time.perf_counter() - start)
