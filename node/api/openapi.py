"""The OpenAPI 3.1 document of the public API (hand-written: the API is small and stable).

It describes every route of :func:`keyreg.api.app.create_app` (and the hot route answered before
Starlette), every status each can answer and the content type of each answer, including what the
HTTP front end (:mod:`keyreg.api.server`) answers on any route before the app runs.
tests/api/test_api_openapi.py walks the app's routes and probes statuses against this document.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from .. import __version__
from . import proposal_routes

_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJ: dict[str, Any] = {"type": "object"}
_SUBJECT = {
    "name": "subject",
    "in": "path",
    "required": True,
    "description": "subject id: 0x + 64 hex digits",
    "schema": {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"},
}
_TIME = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
_AT = {
    "name": "at",
    "in": "query",
    "description": "unix time (seconds), plain ASCII decimal; default now",
    "schema": _TIME,
}
_PURPOSE = {
    "name": "purpose",
    "in": "query",
    "description": "only keys with this purpose (a purpose no key can have is a 400)",
    "schema": {"type": "string", "pattern": "^[a-z0-9._:-]{1,32}$"},
}
_GOVERNOR = {"name": "governor", "in": "query", "schema": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}}
_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}

# Answers any request can get, whatever its route: from the front end before the app runs, and
# from the app's outer layers. Name in components.responses -> status.
_ANY = {
    "BadRequest": "400",
    "RequestTimeout": "408",
    "PayloadTooLarge": "413",
    "ExpectationFailed": "417",
    "HeadTooLarge": "431",
    "InternalError": "500",
    "NotImplemented": "501",
    "Unavailable": "503",
    "HttpVersion": "505",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _json(schema: dict[str, Any], description: str, media_type: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


_RESPONSES: dict[str, Any] = {
    "BadRequest": _error(
        "malformed request: head or framing (`bad_request`: e.g. both Content-Length and "
        "Transfer-Encoding, after which the connection is closed), query parameter (`bad_query`), "
        "or body (`malformed`)"
    ),
    "NotFound": _error("no such route (`not_found`), a malformed id (`malformed_id`) or an unknown subject"),
    "MethodNotAllowed": _error("the path exists, not with this method (`method_not_allowed`)"),
    "RequestTimeout": _error("`body_timeout`: the body did not arrive within api.body_timeout_s; closed"),
    "PayloadTooLarge": _error("`oversized`: a body over api.max_body_bytes (or a batch over 1,000 events)"),
    "ExpectationFailed": _error("`expectation_failed`: an Expect other than 100-continue; closed"),
    "HeadTooLarge": _error("`oversized`: a request head over 64 KiB; closed"),
    "RateLimited": {
        **_error("`rate_limited`: over this client's token bucket (api.rate_limit_per_s, api.rate_burst)"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    },
    "ClientClosed": _error(
        "`client_disconnect`: the client left mid-body (recorded in the metrics; no client receives it)"
    ),
    "InternalError": {
        "description": "a bug on the server (text/plain; the connection is closed), or a `config` error (JSON)",
        "content": {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": _ERROR}},
    },
    "NotImplemented": _error("`not_implemented`: a transfer coding other than chunked; closed"),
    "HttpVersion": _error("`http_version`: HTTP/2 with prior knowledge while api.http2 is off; closed"),
    "Unavailable": _error(
        "`busy` (over api.max_connections or api.max_connections_per_client; closed), "
        "`storage`, `chain`, `network`, or `gov_unavailable` (governance needs [chain] rpc_url)"
    ),
}


def _op(summary: str, responses: dict[str, Any], *, throttled: bool = True, **more: Any) -> dict[str, Any]:
    """An operation: its own responses, then 429 (when rate limited) and the answers of any request."""
    out = dict(responses)
    if throttled:
        out.setdefault("429", {"$ref": "#/components/responses/RateLimited"})
    for name, status in _ANY.items():
        out.setdefault(status, {"$ref": f"#/components/responses/{name}"})
    return {"summary": summary, **more, "responses": dict(sorted(out.items()))}


def _not_found() -> dict[str, Any]:
    return {"404": {"$ref": "#/components/responses/NotFound"}}


def _with_head(item: dict[str, Any]) -> dict[str, Any]:
    """Every GET route answers HEAD too: the same status and headers, no body."""
    if "get" in item:
        head = copy.deepcopy(item["get"])
        head["summary"] = "As GET, headers only"
        item["head"] = head
    return item


def _paths() -> dict[str, Any]:
    events_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/SignedEvent"},
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "maxItems": 1000,
                                    "items": {"$ref": "#/components/schemas/SignedEvent"},
                                }
                            },
                        },
                    ]
                }
            }
        },
    }
    ingest = {"$ref": "#/components/schemas/IngestResult"}
    paths: dict[str, Any] = {
        "/v1/events": {
            "post": _op(
                'Submit one signed event, or a batch {"events": [...]}',
                {
                    "200": _json(ingest, "accepted or already known (single); per-event results (batch)"),
                    "202": _json(ingest, "a conflicting event kept as duplicity evidence"),
                    "409": _error("the event conflicts with the log (`chain_broken`, `stale`, `duplicity`)"),
                    "422": _error("the event breaks a protocol rule (the core's error code)"),
                    "499": {"$ref": "#/components/responses/ClientClosed"},
                },
                requestBody=events_body,
            )
        },
        "/v1/subjects/{subject}": {
            "get": _op(
                "Head state, keys and anchor status",
                {"200": _json(_OBJ, "subject state"), **_not_found()},
                parameters=[_SUBJECT, _AT],
            )
        },
        "/v1/subjects/{subject}/events": {
            "get": _op(
                "The subject's log (canonical wire form), a page at a time",
                {"200": _json(_OBJ, "events from seq `from`; `next` is the next page's `from`"), **_not_found()},
                parameters=[
                    _SUBJECT,
                    {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
                    _LIMIT,
                ],
            )
        },
        "/v1/subjects/{subject}/keys/{kid}": {
            "get": _op(
                "Verdict: is key kid valid for purpose at time at?",
                {"200": _json({"$ref": "#/components/schemas/Verdict"}, "the verdict"), **_not_found()},
                parameters=[
                    _SUBJECT,
                    {
                        "name": "kid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                    },
                    _AT,
                    _PURPOSE,
                ],
            )
        },
        "/v1/subjects/{subject}/jwks.json": {
            "get": _op(
                "RFC 7517 JWK Set of the keys valid now (or at `at`), then up to 4 published successors; "
                "each JWK with a window carries it as `nbf`/`exp` (docs/adr/0013)",
                {"200": _json(_OBJ, "JWKS"), **_not_found()},
                parameters=[_SUBJECT, _AT, _PURPOSE],
            )
        },
        "/v1/subjects/{subject}/did.json": {
            "get": _op(
                "W3C DID document (did:keyreg)",
                {"200": _json(_OBJ, "DID document", "application/did+json"), **_not_found()},
                parameters=[_SUBJECT],
            )
        },
        "/v1/subjects/{subject}/duplicity": {
            "get": _op(
                "Duplicity evidence, a page at a time",
                {
                    "200": _json(
                        _OBJ,
                        "evidence entries with id > `after`, in id order; a page ends at `limit` entries or "
                        "`api.max_page_bytes` (at least one entry); `next` is the next page's `after` (null: no more)",
                    ),
                    **_not_found(),
                },
                parameters=[
                    _SUBJECT,
                    {
                        "name": "after",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "default": 0},
                    },
                    _LIMIT,
                ],
            )
        },
        "/v1/health": {
            "get": _op(
                "Liveness and counters (O(1); GET is not rate limited)",
                {"200": _json(_OBJ, "health")},
                throttled=False,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (GET is not rate limited)",
                {
                    "200": {
                        "description": "text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                throttled=False,
            )
        },
        "/openapi.json": {"get": _op("This document", {"200": _json(_OBJ, "OpenAPI 3.1")})},
        "/v1/gov/proposals": {
            "get": _op(
                "Proposals of the DAOs subjects named, newest first, with state, tallies and revocations",
                {"200": _json(_OBJ, "proposals and the indexer's status")},
                parameters=[
                    _GOVERNOR,
                    {"name": "subject", "in": "query", "schema": {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}},
                    {"name": "state", "in": "query", "schema": {"type": "string"}},
                ],
            )
        },
        "/v1/gov/proposals/{pid}": {
            "get": _op(
                "One proposal",
                {"200": _json(_OBJ, "the proposal"), **_not_found()},
                parameters=[
                    {
                        "name": "pid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,78}$"},
                        "description": "proposal id, decimal uint256",
                    },
                    _GOVERNOR,
                ],
            )
        },
        "/v1/gov/daos/{address}": {
            "get": _op(
                "A recognised DAO (by its governor or executor address) and its current members",
                {"200": _json(_OBJ, "the DAO and its members"), **_not_found()},
                parameters=[
                    {
                        "name": "address",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"},
                    }
                ],
            )
        },
        "/v1/gov/ballots": {
            "post": _op(
                "A signed ballot: validated, deduplicated, relayed with castVoteBySig and gossiped",
                {
                    "202": _json(_OBJ, "the ballot's relay record"),
                    "409": _error("`ballot_rejected`: a duplicate"),
                    "499": {"$ref": "#/components/responses/ClientClosed"},
                },
                requestBody={"required": True, "content": {"application/json": {"schema": _OBJ}}},
            ),
            "get": _op(
                "This node's relay records, newest first",
                {"200": _json(_OBJ, "relay records and the relay's status")},
                parameters=[_LIMIT],
            ),
        },
        "/v1/gov/ballots/{rid}": {
            "get": _op(
                "One relay record",
                {"200": _json(_OBJ, "the relay record"), **_not_found()},
                parameters=[
                    {
                        "name": "rid",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "governor:proposalId:voter",
                    }
                ],
            )
        },
    }
    paths.update(proposal_routes.openapi_paths(_op, _json, _error))  # signing ceremonies
    return {path: _with_head(item) for path, item in paths.items()}


@cache
def openapi_document() -> dict[str, Any]:
    """The document served at /openapi.json."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "keyreg node API",
            "version": __version__,
            "description": (
                "Signed key events of a decentralized key registry: submit, read, verify. Every error "
                'is JSON {"code", "message"} (a 500 from a bug is text/plain). Any path answers 404 '
                "(`not_found`) when it does not exist and 405 (`method_not_allowed`) for a method it "
                "does not take; see components.responses."
            ),
        },
        "paths": _paths(),
        "components": {
            "responses": _RESPONSES,
            "schemas": {
                "Proposal": proposal_routes.PROPOSAL_SCHEMA,
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
                "SignedEvent": {
                    "type": "object",
                    "description": "A signed key event in its wire form (docs/protocol.md)",
                    "required": ["kind", "chainId", "verifyingContract", "signatures", "timestamp"],
                },
                "IngestResult": {
                    "type": "object",
                    "properties": {
                        "status": {"enum": ["accepted", "known", "duplicity", "rejected"]},
                        "subject": {"type": "string"},
                        "seq": {"type": "integer"},
                        "digest": {"type": "string"},
                        "error": _ERROR,
                    },
                },
                "Verdict": {
                    "type": "object",
                    "required": ["status", "valid", "reason", "subject", "keyId", "at"],
                    "properties": {
                        "status": {
                            "enum": [
                                "valid",
                                "not-yet-valid",
                                "expired",
                                "revoked",
                                "wrong-purpose",
                                "unknown-key",
                                "unknown-subject",
                                "disputed",
                            ]
                        },
                        "valid": {"type": "boolean"},
                        "reason": {"type": "string"},
                        "subject": {"type": "string"},
                        "keyId": {"type": "string"},
                        "at": {"type": "integer"},
                        "purpose": {"type": ["string", "null"]},
                        "revoked": {"type": "object"},
                        "key": {"type": "object"},
                        "basedOn": {
                            "type": ["object", "null"],
                            "description": "the registry head the node confirmed (direct: seq, digest, block), "
                            "unprovenFrom (first seq no direct anchor covers), behind, verdictUnproven (ADR 0012)",
                        },
                    },
                },
            },
        },
    }
