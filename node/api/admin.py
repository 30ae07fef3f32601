"""The local (admin) API: hands the service its signing key. Loopback only, bearer-token protected.

``GET /local/v1/signing-key`` answers the current signing key as a private JWK plus the public
JWKs verifiers accept now (the overlap set); ``POST /local/v1/sign`` signs for the service
(``{"jwt": {claims}}`` -> compact JWT, or ``{"payload": base64url}`` -> signature).

The token lives in ``<data_dir>/admin.token`` (0600, made by ``keyreg init``) and is compared in
constant time. The server refuses to bind anywhere but loopback and refuses non-loopback peers.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.codec import loads_strict
from ..core.errors import ConfigError, KeyregError, MalformedEvent
from ..keys.jwt import sign_jwt
from ..keys.service_keys import ServiceKey, b64url, b64url_decode
from .app import ApiError, error_response, read_body

SigningKeyProvider = Callable[[], tuple[ServiceKey, list[dict[str, Any]]]]


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

    async def get_signing_key(request: Request) -> Response:
        authorize(request)
        key, accepted = await anyio.to_thread.run_sync(signing_key)
        return JSONResponse(
            {"keyId": key.key_id, "alg": key.jws_alg, "jwk": key.private_jwk(), "accepted": accepted},
            headers={"cache-control": "no-store"},
        )

    async def post_sign(request: Request) -> Response:
        authorize(request)
        try:
            body = loads_strict(await read_body(request, 64 * 1024))
        except MalformedEvent as exc:
            return error_response(400, "malformed", exc.message)
        if not isinstance(body, dict) or len(body) != 1 or not ({"jwt", "payload"} & set(body)):
            return error_response(400, "malformed", 'send {"jwt": {claims}} or {"payload": "<base64url>"}')
        key, _ = await anyio.to_thread.run_sync(signing_key)
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
