"""What every route handler of the HTTP APIs shares: the JSON error answer and bounded input.

Every error answer is JSON ``{"code", "message"}``; :class:`ApiError` raised in a handler becomes
one. Request bodies are read up to a cap whatever Content-Length says, and integer query
parameters are plain ASCII decimals in a range, so a handler never parses more than it allows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from ..core.errors import KeyregError, RuleViolation

# Status recorded when the client went away before its request was complete (nginx's convention;
# never seen by a client, only by the metrics: a client disconnect is neither a 4xx nor a 5xx of ours).
CLIENT_CLOSED = 499

# HTTP status per error code; rule violations not listed answer 422.
_STATUS = {
    "malformed": 400,
    "oversized": 413,
    "chain_broken": 409,
    "stale": 409,
    "duplicity": 409,
    "storage": 503,
    "chain": 503,
    "network": 503,
    "throttled": 429,  # over a budget (e.g. conflicts per subject): retry later
    "capacity": 503,  # the node holds limits.max_subjects subjects: no new subject
    "config": 500,
}

# Plain ASCII decimal, no sign, no spaces, no underscores, no other scripts' digits (which int()
# would all take), at most 20 digits (enough for 2**64 - 1) so int() never sees a long string.
_DECIMAL_RE = re.compile(r"[0-9]{1,20}")


class ApiError(Exception):
    """Raised inside handlers to answer a JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status)


def status_for(exc: KeyregError) -> int:
    if exc.code in _STATUS:
        return _STATUS[exc.code]
    return 422 if isinstance(exc, RuleViolation) else 500


def int_query(params: Mapping[str, str], name: str, default: int | None, minimum: int, maximum: int) -> int | None:
    """An integer query parameter in [minimum, maximum], or ``default`` when absent or empty."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if _DECIMAL_RE.fullmatch(raw) is None:
        raise ApiError(400, "bad_query", f"query parameter {name!r} must be a plain decimal integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ApiError(400, "bad_query", f"query parameter {name!r} must be in [{minimum}, {maximum}]")
    return value


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, refusing more than ``cap`` bytes (413) whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise ApiError(413, "oversized", f"request body is {declared} bytes, limit {cap}")
    chunks, size = [], 0
    try:
        async with aclosing(request.stream()) as stream:  # closed now even when we stop early
            async for chunk in stream:
                size += len(chunk)
                if size > cap:
                    raise ApiError(413, "oversized", f"request body exceeds the limit of {cap} bytes")
                chunks.append(chunk)
    except ClientDisconnect:
        # The client left mid-body (under plain hypercorn; the lean server reads bodies before
        # the app runs). Nobody reads the answer; the status makes the metrics say what happened.
        raise ApiError(CLIENT_CLOSED, "client_disconnect", "the client closed the connection mid-body") from None
    return b"".join(chunks)
