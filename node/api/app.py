"""The public HTTP API (a Starlette app, served by node/api/server.py under trio).

``create_app(registry, config)`` builds the ASGI app; ``keyreg.app`` serves it. Every error answer is
JSON ``{"code", "message"}``: ``code`` is stable and machine-readable (the core's error codes plus
``malformed_id``, ``bad_query``, ``unknown_subject``, ``rate_limited``, ``oversized``, ``not_found``,
``method_not_allowed``, ``unavailable``), ``message`` is for people.

Threading: registry reads are dict lookups done inline (the hot path); ``Registry.ingest`` and
store reads block, so they run in a worker thread (``anyio.to_thread``, which is trio's under
hypercorn and asyncio's under the TestClient).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..config import Config
from ..core.codec import dumps_canonical, loads_strict
from ..core.errors import KeyregError, MalformedEvent, TransportError
from ..explorer import routes as explorer
from ..outcomes import IngestResult
from ..registry import Registry
from . import gov_routes, proposal_routes, views
from .handling import ApiError, error_response, int_query, read_body, status_for
from .middleware import (
    HotRoute,
    HotRoutes,
    InternalErrors,
    LogBudget,
    MetricsMiddleware,
    RateLimitMiddleware,
    TokenBuckets,
    client_key,
    json_bytes,
    latency_histogram,
    rate_limited,
)
from .openapi import openapi_document

if TYPE_CHECKING:
    from ..ceremony.book import Entry, ProposalBook
    from ..gov.service import GovService

_SUBJECT_RE = re.compile(r"(0x)?([0-9a-fA-F]{64})")
_KEY_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
MAX_BATCH = 1000
# Bodies above this are parsed and canonicalised in a worker thread, a few at a time: ~1 ms of
# parsing per 64 KiB, so a 1 MiB body on the event loop would stall every other request.
OFF_LOOP_BYTES = 64 * 1024
PARSE_THREADS = 2
StatusProvider = Callable[[], dict[str, Any]]


@dataclass
class ApiContext:
    """What the handlers need: the registry, the config and the health providers of services."""

    registry: Registry
    config: Config
    # Services (p2p, chain, rotation...) register a callable returning a JSON-able status dict;
    # GET /v1/health shows it under "services".
    status: dict[str, StatusProvider] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    # Extra Prometheus collectors shown at /metrics (the node's service supervisor, node/supervisor.py).
    collectors: list[Any] = field(default_factory=list)
    # The governance service while it runs (set by the composition root, node/app.py); the
    # /v1/gov routes answer 503 without it.
    gov: GovService | None = None
    # The pending signing-ceremony proposals and the JSON view /v1/proposals answers for one (set by
    # keyreg.api.proposal_routes.routes; the explorer's Ceremonies page reads them).
    proposals: tuple[ProposalBook, Callable[[Entry], dict[str, Any]]] | None = None


def parse_subject(raw: str) -> bytes:
    m = _SUBJECT_RE.fullmatch(raw)
    if m is None:
        raise ApiError(404, "malformed_id", "a subject id is 32 bytes as 64 hex digits (0x-prefixed)")
    return bytes.fromhex(m.group(2))


# Real ranges of the integer query parameters: seqs are stored as SQL BIGINT (signed 64-bit), times
# are the protocol's uint64 seconds.
MAX_SEQ = 2**63 - 1
MAX_TIME = 2**64 - 1
_PURPOSE_RE = re.compile(r"[a-z0-9._:\-]+")


def purpose_query(params: Mapping[str, str], max_chars: int) -> str | None:
    """The ``purpose`` filter, or None. A purpose no key can have (too long, outside the protocol's
    alphabet) is a 400 that does not echo it, not an empty answer."""
    raw = params.get("purpose")
    if not raw:
        return None
    if len(raw) > max_chars or _PURPOSE_RE.fullmatch(raw) is None:
        raise ApiError(400, "bad_query", f"query parameter 'purpose' must be 1-{max_chars} of [a-z0-9._:-]")
    return raw


class RegistryCollector:
    """Prometheus view of the registry's ingest counters and size."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Any:
        c = CounterMetricFamily(
            "keyreg_ingest_events", "Events submitted to the registry by outcome", labels=["status"]
        )
        for status, n in self.registry.counters.items():
            c.add_metric([status], n)
        yield c
        yield GaugeMetricFamily("keyreg_subjects", "Subjects known", value=len(self.registry.states))
        yield GaugeMetricFamily("keyreg_disputed_subjects", "Subjects disputed", value=len(self.registry.disputed))


def _canonical_items(items: list[Any]) -> list[bytes]:
    return [dumps_canonical(item) for item in items]


def create_app(ctx: ApiContext) -> Starlette:
    """The public API app."""
    registry, config = ctx.registry, ctx.config
    chain_id = config.network.chain_id
    max_purpose = config.limits.max_purpose_chars
    submit_rate = config.api.submit_events_per_s if config.api.rate_limit_per_s > 0 else 0.0
    submit_buckets = (
        TokenBuckets(submit_rate, max(config.api.submit_events_burst, MAX_BATCH)) if submit_rate > 0 else None
    )
    # New subjects per client (docs/adr/0027-subject-admission.md): a request holding more
    # inceptions than the burst is never admitted.
    new_subject_buckets = (
        TokenBuckets(config.api.new_subjects_per_s, config.api.new_subjects_burst)
        if submit_rate > 0 and config.api.new_subjects_per_s > 0
        else None
    )
    # Body bytes per client, charged before parsing (docs/operations.md, api.body_bytes_per_s).
    body_buckets = (
        TokenBuckets(config.api.body_bytes_per_s, max(config.api.body_bytes_burst, config.api.max_body_bytes))
        if config.api.rate_limit_per_s > 0 and config.api.body_bytes_per_s > 0
        else None
    )
    parse_limiter: list[anyio.CapacityLimiter] = []  # made on first use: it binds to the running loop

    async def off_loop(size: int, fn: Callable[..., Any], *args: Any) -> Any:
        if size <= OFF_LOOP_BYTES:
            return fn(*args)
        if not parse_limiter:
            parse_limiter.append(anyio.CapacityLimiter(PARSE_THREADS))
        return await anyio.to_thread.run_sync(fn, *args, limiter=parse_limiter[0])

    def too_many(wait: float) -> Response:
        status, data, extra = rate_limited(wait)
        return Response(data, status, headers={k.decode(): v.decode() for k, v in extra}, media_type="application/json")

    metrics = CollectorRegistry(auto_describe=True)
    metrics.register(RegistryCollector(registry))
    for collector in ctx.collectors:
        metrics.register(collector)

    def known_state(subject: bytes) -> Any:
        state = registry.state(subject)
        if state is None:
            raise ApiError(404, "unknown_subject", f"no subject 0x{subject.hex()} is known to this node")
        return state

    # -------------------------------------------------------------- writes

    async def post_events(request: Request) -> Response:
        body = await read_body(request, config.api.max_body_bytes)
        if body_buckets is not None:  # the bytes are charged before any parsing
            wait = body_buckets.take(client_key(request.scope), len(body))
            if wait > 0:
                return too_many(wait)
        if body.lstrip()[:1] != b"{":  # an event and a batch are both objects: refuse the rest unparsed
            return error_response(400, "malformed", "the body must be a JSON object (an event or a batch)")
        try:
            # depth bounded before parsing (finding 13)
            obj = await off_loop(len(body), loads_strict, body, config.limits.max_json_depth)
        except MalformedEvent as exc:
            return error_response(400, "malformed", exc.message)
        batch = isinstance(obj, dict) and "kind" not in obj and "events" in obj
        if batch:
            if set(obj) != {"events"} or not isinstance(obj["events"], list):
                return error_response(400, "malformed", 'a batch is {"events": [event, ...]} and nothing else')
            items = obj["events"]
            if not items:
                return error_response(400, "malformed", "the batch is empty")
            if len(items) > MAX_BATCH:
                return error_response(413, "oversized", f"{len(items)} events in one batch, limit {MAX_BATCH}")
        else:
            items = [obj]
        if submit_buckets is not None:  # signature recovery is paid per event: so is the budget
            wait = submit_buckets.take(client_key(request.scope), len(items))
            inceptions = sum(1 for item in items if isinstance(item, dict) and item.get("kind") == "inception")
            if not wait and inceptions and new_subject_buckets is not None:
                wait = new_subject_buckets.take(client_key(request.scope), inceptions)
            if wait > 0:
                return too_many(wait)
        raw = await off_loop(len(body), _canonical_items, items)
        results: list[IngestResult] = await anyio.to_thread.run_sync(registry.ingest, raw, "api")
        if batch:
            counts = {s: sum(r.status == s for r in results) for s in ("accepted", "known", "duplicity", "rejected")}
            return JSONResponse({"results": [r.to_dict() for r in results], **counts, "errors": counts["rejected"] > 0})
        r = results[0]
        if r.status == "rejected":
            assert r.error is not None
            return JSONResponse({**r.error.to_dict(), "result": r.to_dict()}, status_code=status_for(r.error))
        return JSONResponse(r.to_dict(), status_code=202 if r.status == "duplicity" else 200)

    # -------------------------------------------------------------- reads

    async def get_subject(request: Request) -> Response:
        subject = parse_subject(request.path_params["subject"])
        state = known_state(subject)
        at = int_query(request.query_params, "at", None, 0, MAX_TIME)
        when = int(registry.clock()) if at is None else at
        anchors = await anyio.to_thread.run_sync(registry.store.anchors, subject)
        digest_at = None
        if anchors:
            last = max(anchors, key=lambda a: (a.seq, a.position))
            digest_at = state.head if last.seq == state.seq else registry.store.digest_at(subject, last.seq)
        anchor = views.anchor_status(state, anchors, digest_at)
        gov = registry.governance(subject)
        return JSONResponse(views.subject_view(state, when, subject in registry.disputed, gov, anchor))

    async def get_events(request: Request) -> Response:
        subject = parse_subject(request.path_params["subject"])
        known_state(subject)
        start = int_query(request.query_params, "from", 0, 0, MAX_SEQ) or 0
        limit = int_query(request.query_params, "limit", 100, 1, 1000) or 100
        events: list[bytes] = await anyio.to_thread.run_sync(registry.events, subject, start, limit)
        # A page ends at max_page_bytes too (at least one event): 1,000 events of 64 KiB would
        # otherwise be a 64 MiB answer held in memory per request.
        size, cap = 0, config.api.max_page_bytes
        for i, ev in enumerate(events):
            size += len(ev) + 1
            if size > cap and i > 0:
                del events[i:]
                break
        full = len(events) == limit or size > cap
        # Splice the stored canonical bytes: what we serve is exactly what we store and gossip.
        nxt = start + len(events) if full else None
        body = b'{"subject":"0x%s","from":%d,"next":%s,"events":[%s]}' % (
            subject.hex().encode(),
            start,
            b"null" if nxt is None else str(nxt).encode(),
            b",".join(events),
        )
        return Response(body, media_type="application/json")

    def key_verdict(raw_subject: str, kid: str, params: Mapping[str, str]) -> dict[str, Any]:
        subject = parse_subject(raw_subject)
        if not _KEY_ID_RE.fullmatch(kid):
            raise ApiError(404, "malformed_id", "a key id is 1-64 of [A-Za-z0-9._:-]")
        at = int_query(params, "at", None, 0, MAX_TIME)
        purpose = purpose_query(params, max_purpose)
        out = registry.verdict(subject, kid, at, purpose).to_dict()
        out["basedOn"] = views.verdict_basis(registry.state(subject), registry.direct_head(subject), kid)
        return out

    def hot_key(m: re.Match[str], params: dict[str, str]) -> tuple[int, bytes]:
        """GET|HEAD /v1/subjects/{subject}/keys/{kid}, routed by HotRoutes only: the error bodies
        and statuses of the Starlette exception handlers below."""
        try:
            return 200, json_bytes(key_verdict(m.group(1), m.group(2), params))
        except ApiError as exc:
            return exc.status, json_bytes({"code": exc.code, "message": exc.message})
        except KeyregError as exc:
            status = 503 if isinstance(exc, TransportError) else status_for(exc)
            return status, json_bytes({"code": exc.code, "message": exc.message})

    async def get_jwks(request: Request) -> Response:
        subject = parse_subject(request.path_params["subject"])
        state = known_state(subject)
        at = int_query(request.query_params, "at", None, 0, MAX_TIME)
        purpose = purpose_query(request.query_params, max_purpose)
        when = int(registry.clock()) if at is None else at
        # Successors too, from their publication (docs/adr/0013): timer-refreshed caches hold them.
        upcoming = views.upcoming_keys(state, when, lambda kid, t: registry.verdict(subject, kid, t, purpose).ok)
        body = views.jwks(registry.valid_keys(subject, when, purpose), upcoming)
        if subject in registry.disputed:
            body["disputed"] = True  # extension member: fail closed, say why the set is empty
        return JSONResponse(body, headers={"cache-control": "public, max-age=60"})

    async def get_did(request: Request) -> Response:
        subject = parse_subject(request.path_params["subject"])
        state = known_state(subject)
        now = int(registry.clock())
        upcoming = views.upcoming_keys(state, now, lambda kid, t: registry.verdict(subject, kid, t).ok)
        doc = views.did_document(chain_id, state, registry.valid_keys(subject, now), upcoming)
        return JSONResponse(doc, media_type="application/did+json")

    async def get_duplicity(request: Request) -> Response:
        subject = parse_subject(request.path_params["subject"])
        known_state(subject)
        # A page at a time, like /events: a subject's holder can add evidence without end.
        after = int_query(request.query_params, "after", 0, 0, MAX_SEQ) or 0
        limit = int_query(request.query_params, "limit", 100, 1, 1000) or 100
        body = await anyio.to_thread.run_sync(evidence_page, subject, after, limit)  # decoding and rendering
        return Response(body, media_type="application/json")

    def evidence_page(subject: bytes, after: int, limit: int) -> bytes:
        page = registry.store.evidence_page(subject, after, limit)
        parts: list[bytes] = []
        size, cap, last = 0, config.api.max_page_bytes, after
        for eid, entry in page:
            part = json_bytes(views.evidence_view(entry))
            size += len(part) + 1
            if size > cap and parts:  # a page ends at max_page_bytes too (at least one entry)
                break
            parts.append(part)
            last = eid
        full = len(parts) < len(page) or len(page) == limit
        return b'{"subject":"0x%s","disputed":%s,"after":%d,"next":%s,"evidence":[%s]}' % (
            subject.hex().encode(),
            b"true" if subject in registry.disputed else b"false",
            after,
            str(last).encode() if full else b"null",
            b",".join(parts),
        )

    async def health(request: Request) -> Response:
        services: dict[str, Any] = {}
        for name, provider in ctx.status.items():
            try:
                services[name] = provider()
            except Exception as exc:  # a broken status provider must not break health
                services[name] = {"ok": False, "error": type(exc).__name__}
        store_health = getattr(registry.store, "health", None)  # SqlStore: its last write failure
        if store_health is not None:
            services["store"] = store_health()
        store_ok = services.get("store", {}).get("ok", True)
        # O(1) in the registry's size: running counters only (this path is not rate limited).
        return JSONResponse(
            {
                "ok": store_ok,  # a store that cannot write (full disk) is not a healthy node
                **({} if store_ok else {"degraded": ["store"]}),
                "version": __version__,
                "network": {"chainId": chain_id, "registry": config.network.registry},
                "subjects": len(registry.states),
                "capacity": registry.capacity(),  # with a warning when near limits.max_subjects
                "events": registry.event_count,
                "disputed": len(registry.disputed),
                "ingest": dict(registry.counters),
                "uptime_s": round(time.time() - ctx.started, 3),
                "services": services,
            }
        )

    async def get_metrics(request: Request) -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    async def get_openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    # -------------------------------------------------------------- errors

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message)

    async def on_keyreg_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KeyregError)
        if isinstance(exc, TransportError):
            return error_response(503, exc.code, exc.message)
        return error_response(status_for(exc), exc.code, exc.message)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        response.headers.update(exc.headers or {})  # a 405's Allow (RFC 9110 15.5.6)
        return response

    routes = [
        Route("/v1/events", post_events, methods=["POST"]),
        Route("/v1/subjects/{subject}", get_subject),
        Route("/v1/subjects/{subject}/events", get_events),
        Route("/v1/subjects/{subject}/jwks.json", get_jwks),
        Route("/v1/subjects/{subject}/did.json", get_did),
        Route("/v1/subjects/{subject}/duplicity", get_duplicity),
        Route("/v1/health", health),
        Route("/metrics", get_metrics),
        Route("/openapi.json", get_openapi),
        *gov_routes.routes(lambda: ctx.gov),  # node/gov: proposals and ballots
        *proposal_routes.routes(ctx, body_buckets),  # signing ceremonies (docs/ceremonies.md)
        *explorer.routes(ctx),  # the web explorer at [explorer] path (node/explorer)
    ]
    rate = config.api.rate_limit_per_s
    buckets = TokenBuckets(rate, config.api.rate_burst) if rate > 0 else None
    latency = latency_histogram(metrics)
    # The key-verdict path is routed here and only here (not in `routes`): the hot read.
    hot = [HotRoute(r"/v1/subjects/([^/]+)/keys/([^/]+)", "/v1/subjects/{subject}/keys/{kid}", hot_key)]
    app = Starlette(
        routes=routes,
        middleware=[
            # Outermost: a bug answers 500 and is logged within a budget (never unbounded).
            Middleware(
                InternalErrors,
                budget=LogBudget(config.api.error_logs_per_interval, config.api.error_log_interval_s),
            ),
            # Then the key-verdict path is answered here, sharing the buckets and histogram.
            Middleware(HotRoutes, routes=hot, latency=latency, buckets=buckets),
            Middleware(MetricsMiddleware, latency=latency),
            Middleware(RateLimitMiddleware, buckets=buckets),
        ],
        exception_handlers={ApiError: on_api_error, KeyregError: on_keyreg_error, HTTPException: on_http_error},
    )
    app.state.metrics = metrics
    app.state.ctx = ctx
    return app
