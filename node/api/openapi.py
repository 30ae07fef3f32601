"""The OpenAPI 3.1 document of the public API (hand-written: the API is small and stable)."""

from __future__ import annotations

from functools import cache
from typing import Any

from .. import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_SUBJECT = {
    "name": "subject",
    "in": "path",
    "required": True,
    "description": "subject id: 0x + 64 hex digits",
    "schema": {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"},
}
_AT = {"name": "at", "in": "query", "description": "unix time (seconds); default now", "schema": {"type": "integer"}}
_PURPOSE = {"name": "purpose", "in": "query", "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json(_ERROR, "error") for c in codes}


@cache
def openapi_document() -> dict[str, Any]:
    """The document served at /openapi.json."""
    obj: dict[str, Any] = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "keyreg node API",
            "version": __version__,
            "description": "Signed key events of a decentralized key registry: submit, read, verify.",
        },
        "paths": {
            "/v1/events": {
                "post": {
                    "summary": 'Submit one signed event, or a batch {"events": [...]}',
                    "requestBody": {
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
                    },
                    "responses": {
                        "200": _json(
                            {"$ref": "#/components/schemas/IngestResult"},
                            "accepted or already known (single); per-event results (batch)",
                        ),
                        "202": _json(
                            {"$ref": "#/components/schemas/IngestResult"},
                            "a conflicting event kept as duplicity evidence",
                        ),
                        **_errors(400, 409, 413, 422, 429, 503),
                    },
                }
            },
            "/v1/subjects/{subject}": {
                "get": {
                    "summary": "Head state, keys and anchor status",
                    "parameters": [_SUBJECT, _AT],
                    "responses": {"200": _json(obj, "subject state"), **_errors(400, 404, 429)},
                }
            },
            "/v1/subjects/{subject}/events": {
                "get": {
                    "summary": "The subject's log (canonical wire form)",
                    "parameters": [
                        _SUBJECT,
                        {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    ],
                    "responses": {"200": _json(obj, "events from seq `from`"), **_errors(400, 404, 429)},
                }
            },
            "/v1/subjects/{subject}/keys/{kid}": {
                "get": {
                    "summary": "Verdict: is key kid valid for purpose at time at?",
                    "parameters": [
                        _SUBJECT,
                        {"name": "kid", "in": "path", "required": True, "schema": {"type": "string"}},
                        _AT,
                        _PURPOSE,
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Verdict"}, "the verdict"),
                        **_errors(400, 404, 429),
                    },
                }
            },
            "/v1/subjects/{subject}/jwks.json": {
                "get": {
                    "summary": "RFC 7517 JWK Set of the keys valid now",
                    "parameters": [_SUBJECT, _AT, _PURPOSE],
                    "responses": {"200": _json(obj, "JWKS"), **_errors(404, 429)},
                }
            },
            "/v1/subjects/{subject}/did.json": {
                "get": {
                    "summary": "W3C DID document (did:keyreg)",
                    "parameters": [_SUBJECT],
                    "responses": {"200": _json(obj, "DID document"), **_errors(404, 429)},
                }
            },
            "/v1/subjects/{subject}/duplicity": {
                "get": {
                    "summary": "Duplicity evidence",
                    "parameters": [_SUBJECT],
                    "responses": {"200": _json(obj, "evidence"), **_errors(404, 429)},
                }
            },
            "/v1/health": {"get": {"summary": "Liveness and counters", "responses": {"200": _json(obj, "health")}}},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
        "components": {
            "schemas": {
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
                    },
                },
            }
        },
    }
