"""Signing-ceremony routes of the public API (mounted by keyreg.api.app.create_app; docs/ceremonies.md).

- ``POST /v1/proposals``                    create a proposal from an unsigned event, for the subject's
  current head: ``{"event": {...wire form, "signatures": []}, "authority"?: "controllers"|"operators",
  "signatures"?: ["0x..."]}``; 201 (200 when this node already holds it)
- ``GET  /v1/proposals?subject=0x..``       the pending proposals of a subject
- ``GET  /v1/proposals/{id}``               one proposal (id = the event's EIP-712 digest)
- ``POST /v1/proposals/{id}/signatures``    attach ``{"signature": "0x..."}``; when the threshold is met
  the node ingests the signed event as if it had been posted to ``/v1/events``

Proposals are node-local (never gossiped: ADR 0028 section 10). Every input is checked cheaply
before it costs anything: the body is capped and charged to the client's byte budget before it is
parsed, creates and signatures have per-client budgets charged before any work, a create runs the
core's rules once without any recovery, and a signature's form (length, v, low s) and the
proposal's head are checked before its one recovery. Nothing unchecked is stored.

Errors are ``{"code", "message"}``: ``stale_proposal``, ``duplicate_signature`` and
``proposal_complete`` are 409, other rule violations as on ``/v1/events`` (400 ``malformed``, 422
``unauthorized_signer`` / ``bad_signature`` / the core's codes), 429 over a budget, 503 ``capacity``
when the node holds its limit of proposals and none can be dropped.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..ceremony.book import BookLimits, Entry, ProposalBook
from ..ceremony.proposal import parse_signature, propose
from ..core.codec import encode_event, event_from_obj, loads_strict
from ..core.errors import KeyregError, MalformedEvent, RuleViolation, TransportError, WrongNetwork
from .handling import ApiError, error_response, read_body, status_for
from .middleware import TokenBuckets, client_key, rate_limited

if TYPE_CHECKING:
    from .app import ApiContext

_ID_RE = re.compile(r"0x([0-9a-fA-F]{64})")
_CONFLICTS = {"stale_proposal": 409, "duplicate_signature": 409, "proposal_complete": 409}
_CREATE_FIELDS = frozenset(("event", "authority", "signatures"))
MAX_SIGNATURE_BODY = 1024  # {"signature": "0x" + 130 hex digits} and some room


def _status(exc: KeyregError) -> int:
    if exc.code in _CONFLICTS:
        return _CONFLICTS[exc.code]
    return 503 if isinstance(exc, TransportError) else status_for(exc)


def routes(ctx: ApiContext, body_buckets: TokenBuckets | None) -> list[Route]:
    """The proposal routes over the registry of ``ctx``; ``body_buckets``: the API's per-client byte budget."""
    registry, config = ctx.registry, ctx.config
    cfg = config.proposals
    book = ProposalBook(BookLimits(cfg.max_pending, cfg.max_pending_per_subject, cfg.ttl_s, cfg.max_pending_per_client))
    # GET /v1/health shows the book's counts under services.proposals (how ApiContext.status is fed).
    ctx.status.setdefault("proposals", lambda: {"ok": True, "enabled": cfg.enabled, **book.status()})
    throttled = config.api.rate_limit_per_s > 0
    creates = (
        TokenBuckets(cfg.creates_per_client_per_s, cfg.creates_burst)
        if throttled and cfg.creates_per_client_per_s > 0
        else None
    )
    signatures = (
        TokenBuckets(cfg.signatures_per_client_per_s, cfg.signatures_burst)
        if throttled and cfg.signatures_per_client_per_s > 0
        else None
    )
    clock = registry.clock  # the registry's clock: expiry follows the time the rules see

    def enabled() -> None:
        if not cfg.enabled:
            raise ApiError(404, "not_found", "signing ceremonies are off on this node (proposals.enabled)")

    def charge(buckets: TokenBuckets | None, request: Request, cost: float = 1.0) -> None:
        if buckets is None:
            return
        wait = buckets.take(client_key(request.scope), cost)
        if wait > 0:
            _, _, headers = rate_limited(wait)
            raise _Throttled(wait, {k.decode(): v.decode() for k, v in headers})

    def stale(entry: Entry) -> bool:
        event = entry.proposal.event
        state = registry.state(entry.proposal.subject)
        if event.kind == "inception":
            return state is not None
        return state is None or state.seq != event.seq - 1 or state.head != event.prev

    def view(entry: Entry) -> dict[str, Any]:
        return {
            **entry.proposal.to_obj(),
            "createdAt": int(entry.created),
            "expiresAt": int(entry.expires),
            "stale": stale(entry),
            "submitted": entry.submitted,
        }

    ctx.proposals = (book, view)  # what the explorer's Ceremonies page shows (node/explorer/data.py)

    def proposal_id(raw: str) -> bytes:
        m = _ID_RE.fullmatch(raw)
        if m is None:
            raise ApiError(404, "malformed_id", "a proposal id is its event's digest: 0x + 64 hex digits")
        return bytes.fromhex(m.group(1))

    async def read_json(request: Request, cap: int) -> Any:
        body = await read_body(request, cap)
        charge(body_buckets, request, len(body))  # the bytes are charged before any parsing
        if body.lstrip()[:1] != b"{":
            raise MalformedEvent("the body must be a JSON object")
        return loads_strict(body, registry.limits.max_json_depth)

    async def submit(entry: Entry) -> None:
        """Ingest a completed proposal's event as POST /v1/events would, once: ``submitted`` is set
        before the ingest thread runs, so a request arriving meanwhile does not submit it again. If
        the store fails, it is cleared (503): proposing the same event again submits it."""
        wire = encode_event(entry.proposal.signed_event())
        entry.submitted = {"status": "submitting"}
        try:
            results = await anyio.to_thread.run_sync(registry.ingest, [wire], "api")
        except BaseException:
            entry.submitted = None
            raise
        entry.submitted = results[0].to_dict()

    async def create(request: Request) -> Response:
        enabled()
        charge(creates, request)
        obj = await read_json(request, cfg.max_body_bytes)
        if not isinstance(obj, dict) or "event" not in obj or not set(obj) <= _CREATE_FIELDS:
            raise MalformedEvent('a proposal request is {"event", "authority"?, "signatures"?} and nothing else')
        authority = obj.get("authority")
        if authority is not None and not isinstance(authority, str):
            raise MalformedEvent('\'authority\' is "controllers" or "operators"')
        sigs = obj.get("signatures", [])
        if not isinstance(sigs, list) or not all(isinstance(s, str) for s in sigs):
            raise MalformedEvent("'signatures' is a list of 0x-hex signatures")
        signed = event_from_obj(obj["event"], registry.limits, registry.domain)
        if signed.signatures:
            raise MalformedEvent("a proposal's event carries no signatures: list them under 'signatures'")
        if signed.domain != registry.domain:
            d, e = registry.domain, signed.domain
            raise WrongNetwork(
                f"the event is for chainId {e.chain_id} contract 0x{e.verifying_contract.hex()}, "
                f"this node's registry is chainId {d.chain_id} contract 0x{d.verifying_contract.hex()}"
            )
        subject_state = None if signed.event.kind == "inception" else registry.state(signed.event.subject)
        proposal = propose(
            subject_state, signed.event, registry.domain, authority, registry.limits, int(registry.clock())
        )
        if len(sigs) > proposal.authority.threshold:
            raise MalformedEvent(f"at most {proposal.authority.threshold} signatures complete this proposal")
        parsed = [parse_signature(s) for s in sigs]  # cheap form checks of all before any recovery
        charge(signatures, request, len(parsed))
        held = book.get(proposal.digest, clock())
        if held is not None:  # the same event proposed again: add what is new to the one held
            proposal = held.proposal
        for sig in parsed:
            if held is None or sig not in {s for _, s in proposal.signatures}:
                proposal = proposal.attach(sig)
        entry, new = book.add(proposal, clock(), stale, client_key(request.scope))
        if not new and entry.submitted is None and entry.proposal != proposal:
            book.update(entry, proposal)
        if entry.proposal.complete and entry.submitted is None:
            await submit(entry)
        return JSONResponse(view(entry), status_code=201 if new else 200)

    async def list_for_subject(request: Request) -> Response:
        enabled()
        raw = request.query_params.get("subject") or ""
        m = _ID_RE.fullmatch(raw)
        if m is None:
            raise ApiError(400, "bad_query", "query parameter 'subject' is required: 0x + 64 hex digits")
        subject = bytes.fromhex(m.group(1))
        entries = book.for_subject(subject, clock())
        return JSONResponse({"subject": "0x" + subject.hex(), "proposals": [view(e) for e in entries]})

    async def get_one(request: Request) -> Response:
        enabled()
        pid = proposal_id(request.path_params["pid"])
        entry = book.get(pid, clock())
        if entry is None:
            raise ApiError(404, "not_found", f"no pending proposal 0x{pid.hex()} on this node (expired or never made)")
        return JSONResponse(view(entry))

    async def attach(request: Request) -> Response:
        enabled()
        pid = proposal_id(request.path_params["pid"])
        charge(signatures, request)
        obj = await read_json(request, MAX_SIGNATURE_BODY)
        if not isinstance(obj, dict) or set(obj) != {"signature"} or not isinstance(obj["signature"], str):
            raise MalformedEvent('the body is {"signature": "0x..."} and nothing else')
        entry = book.get(pid, clock())
        if entry is None:
            raise ApiError(404, "not_found", f"no pending proposal 0x{pid.hex()} on this node (expired or never made)")
        sig = parse_signature(obj["signature"])  # cheap checks first
        entry.proposal.require_open()
        entry.proposal.check_current(registry.state(entry.proposal.subject))  # stale: 409 before any recovery
        book.update(entry, entry.proposal.attach(sig))  # one recovery
        if entry.proposal.complete:
            await submit(entry)
        return JSONResponse(view(entry))

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Rule violations and throttling answered as {"code", "message"} with this API's statuses."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except _Throttled as exc:
                status, data, _ = rate_limited(exc.wait)
                return Response(data, status, headers=exc.headers, media_type="application/json")
            except ApiError:
                raise
            except KeyregError as exc:
                if not isinstance(exc, RuleViolation | TransportError):
                    raise
                return error_response(_status(exc), exc.code, exc.message)

        return run

    return [
        Route("/v1/proposals", guarded(create), methods=["POST"]),
        Route("/v1/proposals", guarded(list_for_subject), methods=["GET"]),
        Route("/v1/proposals/{pid}", guarded(get_one), methods=["GET"]),
        Route("/v1/proposals/{pid}/signatures", guarded(attach), methods=["POST"]),
    ]


class _Throttled(Exception):
    def __init__(self, wait: float, headers: dict[str, str]) -> None:
        super().__init__("throttled")
        self.wait, self.headers = wait, headers


def openapi_paths(
    op: Callable[..., dict[str, Any]],
    json_answer: Callable[..., dict[str, Any]],
    error: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """The OpenAPI path items of these routes, built with keyreg.api.openapi's helpers."""
    pid = {
        "name": "pid",
        "in": "path",
        "required": True,
        "description": "proposal id: the event's EIP-712 digest, 0x + 64 hex digits",
        "schema": {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"},
    }
    proposal = {"$ref": "#/components/schemas/Proposal"}
    not_found = {"404": {"$ref": "#/components/responses/NotFound"}}
    conflict = error("`stale_proposal` (the head moved on), `duplicate_signature`, `proposal_complete`")
    rules = error("a rule the event or the signature breaks (`unauthorized_signer`, `bad_signature`, core codes)")
    closed = {"499": {"$ref": "#/components/responses/ClientClosed"}}
    body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["event"],
                    "properties": {
                        "event": {"$ref": "#/components/schemas/SignedEvent"},
                        "authority": {"enum": ["controllers", "operators"]},
                        "signatures": {"type": "array", "items": {"type": "string"}},
                    },
                }
            }
        },
    }
    sig_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": ["signature"], "properties": {"signature": {"type": "string"}}}
            }
        },
    }
    return {
        "/v1/proposals": {
            "post": op(
                "Create a signing-ceremony proposal from an unsigned event for the subject's head (node-local)",
                {
                    "200": json_answer(proposal, "this node already held the proposal (signatures given were added)"),
                    "201": json_answer(proposal, "created; `submitted` is the ingest result once complete"),
                    "404": {"$ref": "#/components/responses/NotFound"},
                    "409": conflict,
                    "422": rules,
                    **closed,
                },
                requestBody=body,
            ),
            "get": op(
                "The pending proposals of a subject on this node",
                {"200": json_answer({"type": "object"}, "the subject and its proposals")},
                parameters=[
                    {
                        "name": "subject",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"},
                    }
                ],
            ),
        },
        "/v1/proposals/{pid}": {
            "get": op(
                "One pending proposal", {"200": json_answer(proposal, "the proposal"), **not_found}, parameters=[pid]
            )
        },
        "/v1/proposals/{pid}/signatures": {
            "post": op(
                "Attach a signature; at the threshold the node ingests the event as POST /v1/events would",
                {
                    "200": json_answer(proposal, "attached; `submitted` is the ingest result once complete"),
                    **not_found,
                    "409": conflict,
                    "422": rules,
                    **closed,
                },
                parameters=[pid],
                requestBody=sig_body,
            )
        },
    }


PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A signing-ceremony proposal (docs/ceremonies.md): the unsigned event, the signer set it "
    "collects for, the signatures so far",
    "required": ["type", "version", "id", "subject", "event", "authority", "signatures", "complete"],
    "properties": {
        "id": {"type": "string"},
        "subject": {"type": "string"},
        "kind": {"type": "string"},
        "seq": {"type": "integer"},
        "event": {"type": "object"},
        "authority": {"type": "object"},
        "signatures": {"type": "array", "items": {"type": "string"}},
        "signers": {"type": "array", "items": {"type": "string"}},
        "complete": {"type": "boolean"},
        "missing": {"type": "integer"},
        "createdAt": {"type": "integer"},
        "expiresAt": {"type": "integer"},
        "stale": {"type": "boolean"},
        "submitted": {"type": ["object", "null"]},
    },
}
