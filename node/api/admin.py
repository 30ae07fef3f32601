"""The local (admin) API: hands the service its signing key. Loopback only, bearer-token protected.

``GET /local/v1/signing-key`` answers the current signing key as a private JWK plus the public
JWKs verifiers accept now (the overlap set), when it became active, and when the answer may change
next (``nextChange``, and ``next``: the published successor). Which key: node/keys/handout.py.
With ``?wait=S&known=<keyId>`` it is a long poll: it answers as soon as the key differs from
``known``, or after ``S`` seconds (at most :data:`MAX_WAIT_S`) with the unchanged key, so a service
learns of a rotation within a second without polling every request. At most :data:`MAX_WAITERS`
long polls wait at once (429 beyond). ``POST /local/v1/sign`` signs for the service
(``{"jwt": {claims}}`` -> compact JWT, or ``{"payload": base64url}`` -> signature).

The token lives in ``<data_dir>/admin.token`` (0600, made by ``keyreg init``) and is compared in
constant time. The server refuses to bind anywhere but loopback and refuses non-loopback peers.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.codec import loads_strict
from ..core.errors import ConfigError, KeyregError, MalformedEvent
from ..keys.handout import Handout
from ..keys.jwt import sign_jwt
from ..keys.service_keys import b64url, b64url_decode
from .handling import ApiError, error_response, read_body

SigningKeyProvider = Callable[[], Handout]

MAX_WAIT_S = 300  # longest long poll; a service re-asks after it
MAX_WAITERS = 64  # long polls waiting at once (each costs a task and a check a second)
_RECHECK_S = 1.0  # a waiting long poll re-evaluates the key at least this often


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_admin_host(host: str) -> None:
    """Refuse to configure the admin endpoint on anything but loopback."""
    if not is_loopback(host):
        raise ConfigError(
            f"api.admin_host is {host!r}: the admin endpoint hands out private keys and binds to loopback only "
            "(127.0.0.1 or ::1)"
        )


def create_admin_app(token: str, signing_key: SigningKeyProvider) -> Starlette:
    """The admin app. ``signing_key()`` returns (current key, public JWKs accepted now) or raises."""
    if len(token) < 16:
        raise ConfigError("the admin token is too short (need >= 16 characters); re-run `keyreg init`")
    expected = token.encode()

    def authorize(request: Request) -> None:
        client = request.client
        if client is None or not is_loopback(client.host):
            raise ApiError(403, "forbidden", "the admin endpoint answers loopback clients only")
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
            raise ApiError(401, "unauthorized", "missing or wrong admin token (Authorization: Bearer <admin.token>)")

    waiting = 0

    async def get_signing_key(request: Request) -> Response:
        nonlocal waiting
        authorize(request)
        raw_wait = request.query_params.get("wait") or "0"
        if not (raw_wait.isascii() and raw_wait.isdigit() and len(raw_wait) <= 6) or int(raw_wait) > MAX_WAIT_S:
            raise ApiError(400, "bad_query", f"query parameter 'wait' must be whole seconds, at most {MAX_WAIT_S}")
        wait = int(raw_wait)
        known = request.query_params.get("known")
        handout = await anyio.to_thread.run_sync(signing_key)
        if wait and known is not None and handout.key.key_id == known:
            if waiting >= MAX_WAITERS:
                raise ApiError(429, "rate_limited", f"{MAX_WAITERS} long polls already wait; retry later")
            waiting += 1
            try:
                deadline = time.monotonic() + wait
                while handout.key.key_id == known and (left := deadline - time.monotonic()) > 0:
                    # Wake at the planned change (an activation) or at the re-check period, whichever
                    # comes first: an event the node accepts meanwhile (a revocation) is seen within it.
                    until_change = (handout.next_change - time.time()) if handout.next_change else left
                    await anyio.sleep(max(0.05, min(left, _RECHECK_S, until_change + 0.05)))
                    handout = await anyio.to_thread.run_sync(signing_key)
            finally:
                waiting -= 1
        return JSONResponse(handout.body(), headers={"cache-control": "no-store"})

    async def post_sign(request: Request) -> Response:
        authorize(request)
        try:
            body = loads_strict(await read_body(request, 64 * 1024))
        except MalformedEvent as exc:
            return error_response(400, "malformed", exc.message)
        if not isinstance(body, dict) or len(body) != 1 or not ({"jwt", "payload"} & set(body)):
            return error_response(400, "malformed", 'send {"jwt": {claims}} or {"payload": "<base64url>"}')
        key = (await anyio.to_thread.run_sync(signing_key)).key
        if "jwt" in body:
            if not isinstance(body["jwt"], dict):
                return error_response(400, "malformed", "jwt claims must be a JSON object")
            return JSONResponse({"keyId": key.key_id, "alg": key.jws_alg, "jwt": sign_jwt(key, body["jwt"])})
        try:
            payload = b64url_decode(str(body["payload"]))
        except ValueError:
            return error_response(400, "malformed", "payload must be base64url")
        return JSONResponse({"keyId": key.key_id, "alg": key.jws_alg, "signature": b64url(key.sign(payload))})

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message)

    async def on_keyreg_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KeyregError)
        return error_response(503, exc.code, exc.message)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail))

    return Starlette(
        routes=[
            Route("/local/v1/signing-key", get_signing_key),
            Route("/local/v1/sign", post_sign, methods=["POST"]),
        ],
        exception_handlers={ApiError: on_api_error, KeyregError: on_keyreg_error, HTTPException: on_http_error},
    )
