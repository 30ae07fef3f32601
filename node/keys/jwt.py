"""A minimal JWS/JWT (compact form) signer and verifier for EdDSA, ES256 and ES256K.

Used by ``keyreg demo`` and the local ``/local/v1/sign`` endpoint, so that neither needs a JWT
library at run time. The tests cross-check it against PyJWT.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.codec import check_json_depth
from ..core.errors import KeyregError
from .service_keys import JWS_ALG, ServiceKey, b64url, b64url_decode, verify_signature

_ALG_OF_JWS = {v: k for k, v in JWS_ALG.items()}
_CRV = {"Ed25519": "Ed25519", "P-256": "P-256", "secp256k1": "secp256k1"}


class JWTError(KeyregError):
    code = "jwt_invalid"


def sign_jwt(key: ServiceKey, claims: dict[str, Any]) -> str:
    """A compact JWT signed with ``key``; the header names the key id."""
    header = {"alg": key.jws_alg, "typ": "JWT", "kid": key.key_id}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    return signing_input + "." + b64url(key.sign(signing_input.encode()))


def _jwk_public_key(jwk: dict[str, Any]) -> tuple[str, bytes]:
    """(algorithm, protocol-form public key) of a public JWK."""
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return "Ed25519", b64url_decode(jwk["x"])
    if jwk.get("kty") == "EC" and jwk.get("crv") in ("P-256", "secp256k1"):
        x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
        return jwk["crv"], bytes((2 + (y[-1] & 1),)) + x
    raise JWTError(f"unsupported JWK kty={jwk.get('kty')!r} crv={jwk.get('crv')!r}")


def _json_object(part: str, what: str) -> dict[str, Any]:
    """A JWS part decoded as a JSON object, its nesting bounded before parsing (the stdlib parser
    recurses, and web3's import lifts the recursion limit past what the C stack holds)."""
    try:
        data = b64url_decode(part)
        check_json_depth(data)
        value = json.loads(data)
    except (ValueError, KeyregError):
        raise JWTError(f"token {what} is not JSON within the nesting limit") from None
    if not isinstance(value, dict):
        raise JWTError(f"token {what} is not a JSON object")
    return value


def verify_jwt(token: str, jwks: dict[str, Any], now: int | None = None) -> dict[str, Any]:
    """Verify a compact JWT against a JWKS (by ``kid``); returns the claims or raises JWTError."""
    try:
        h64, p64, s64 = token.split(".")
        signature = b64url_decode(s64)
    except ValueError:
        raise JWTError("token is not a compact JWS") from None
    header = _json_object(h64, "header")
    kid = header.get("kid")
    jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == kid), None)
    if jwk is None:
        raise JWTError(f"no key {kid!r} in the JWKS (unknown, retired or revoked)")
    alg, public_key = _jwk_public_key(jwk)
    if _ALG_OF_JWS.get(header.get("alg", "")) != alg:
        raise JWTError(f"token alg {header.get('alg')!r} does not match key {kid!r} ({alg})")
    if not verify_signature(alg, public_key, signature, f"{h64}.{p64}".encode()):
        raise JWTError("signature does not verify")
    claims = _json_object(p64, "claims")  # parsed only once the signature holds: the signer's text
    if now is not None:
        # The JWK's window (the registry's nbf/exp members, docs/adr/0013): a successor offered
        # ahead of its activation verifies nothing before it, a retired key nothing after its end.
        nbf, exp = jwk.get("nbf"), jwk.get("exp")
        if isinstance(nbf, int) and now < nbf:
            raise JWTError(f"key {kid!r} is not valid before {nbf}")
        if isinstance(exp, int) and now >= exp:
            raise JWTError(f"key {kid!r} expired at {exp}")
        if isinstance(claims.get("exp"), int) and now >= claims["exp"]:
            raise JWTError("token expired")
    return dict(claims)
