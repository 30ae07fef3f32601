"""Signature checks and JWK encodings for the three published-key algorithms.

Message hashing follows JOSE, so a JWS made by any JWT library verifies here and vice versa:

=========  ============================  =======================================  =========
alg        public key (in the log)       signature                                JOSE alg
=========  ============================  =======================================  =========
Ed25519    32 raw bytes                  64 bytes (RFC 8032)                      EdDSA
P-256      33-byte compressed SEC1       r||s (64 bytes) or DER; SHA-256 inside   ES256
secp256k1  33-byte compressed SEC1       r||s (64 bytes) or DER; SHA-256 inside   ES256K
=========  ============================  =======================================  =========

ECDSA signatures are accepted with either s (a high s is normalised): this is a yes/no check of
who signed, not a transaction id, so malleability does not matter here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from coincurve import PublicKey as Secp256k1PublicKey
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..core.hashing import SECP256K1_N
from ..core.purposes import jwk_usage

JOSE_ALG = {"Ed25519": "EdDSA", "P-256": "ES256", "secp256k1": "ES256K"}


def _ecdsa_der(signature: bytes, order: int | None = None) -> bytes:
    """DER of an r||s or DER ECDSA signature, with s made low when ``order`` is given."""
    if len(signature) == 64:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    else:
        r, s = decode_dss_signature(signature)  # ValueError if not DER
    if order is not None and s > order // 2:
        s = order - s
    return encode_dss_signature(r, s)


def verify(alg: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid signature of ``message`` by ``public_key`` under ``alg``."""
    try:
        if alg == "Ed25519":
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
            return True
        if alg == "P-256":
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
            key.verify(_ecdsa_der(signature), message, ec.ECDSA(hashes.SHA256()))
            return True
        if alg == "secp256k1":
            ok: bool = Secp256k1PublicKey(public_key).verify(_ecdsa_der(signature, SECP256K1_N), message)
            return ok
    except (InvalidSignature, ValueError, TypeError):
        return False
    except Exception:  # coincurve raises bare Exception subclasses on malformed input
        return False
    return False


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk(key_id: str, alg: str, public_key: bytes, purposes: Iterable[str] = ()) -> dict[str, Any]:
    """The RFC 7517 JWK of a published key (RFC 8037 OKP for Ed25519, EC for the curves), with the
    ``use``/``key_ops`` its purposes give it (node/core/purposes.py)."""
    base: dict[str, Any] = {"kid": key_id, **jwk_usage(purposes), "alg": JOSE_ALG[alg]}
    if alg == "Ed25519":
        return {**base, "kty": "OKP", "crv": "Ed25519", "x": b64url(public_key)}
    if alg == "P-256":
        numbers = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key).public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return {**base, "kty": "EC", "crv": "P-256", "x": b64url(x), "y": b64url(y)}
    if alg == "secp256k1":
        point = Secp256k1PublicKey(public_key).format(compressed=False)
        return {**base, "kty": "EC", "crv": "secp256k1", "x": b64url(point[1:33]), "y": b64url(point[33:])}
    raise ValueError(f"unsupported algorithm {alg!r}")
