"""Service keys: the keys a subject publishes for verifiers and its service signs with.

Algorithms: Ed25519 (JWS ``EdDSA``), P-256 (``ES256``) and secp256k1 (``ES256K``), all through
``cryptography``. The registry carries public keys in their protocol form (Ed25519 raw 32 bytes,
EC keys SEC1-compressed 33 bytes); JWKs carry coordinates (RFC 7517/8037).

A :class:`ServiceKey` holds private material: its ``repr`` shows the key id and algorithm only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..core.canonical_json import canonical_json
from ..core.errors import ConfigError
from ..core.records import ALGORITHMS, PublishedKey

JWS_ALG = {"Ed25519": "EdDSA", "P-256": "ES256", "secp256k1": "ES256K"}
_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "secp256k1": ec.SECP256K1()}
# Group orders: an EC private key is a scalar in [1, n - 1].
_ORDERS = {
    "P-256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp256k1": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}
_JWK_CRV = {"Ed25519": "Ed25519", "P-256": "P-256", "secp256k1": "secp256k1"}


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url` (tolerates missing padding)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_alg(alg: str) -> str:
    """Normalise an algorithm name given by a person (``ed25519``, ``p256``, ``es256k``...)."""
    aliases = {
        "ed25519": "Ed25519",
        "eddsa": "Ed25519",
        "p-256": "P-256",
        "p256": "P-256",
        "es256": "P-256",
        "secp256r1": "P-256",
        "secp256k1": "secp256k1",
        "es256k": "secp256k1",
    }
    name = aliases.get(alg.lower())
    if name is None:
        raise ConfigError(f"unknown key algorithm {alg!r}: use one of {', '.join(ALGORITHMS)}")
    return name


def _ec_point(alg: str, public_key: bytes) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[alg], public_key)


def public_jwk(alg: str, public_key: bytes, kid: str | None = None) -> dict[str, Any]:
    """The public JWK of a protocol-form public key (decompressing EC points)."""
    if alg == "Ed25519":
        jwk: dict[str, Any] = {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_key)}
    else:
        nums = _ec_point(alg, public_key).public_numbers()
        jwk = {
            "kty": "EC",
            "crv": _JWK_CRV[alg],
            "x": b64url(nums.x.to_bytes(32, "big")),
            "y": b64url(nums.y.to_bytes(32, "big")),
        }
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of a public JWK."""
    required = ("crv", "kty", "x") if jwk["kty"] == "OKP" else ("crv", "kty", "x", "y")
    # RFC 7638 section 3: the required members in lexicographic order, no whitespace, UTF-8.
    return b64url(hashlib.sha256(canonical_json({k: jwk[k] for k in required})).digest())


def verify_signature(alg: str, public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Check a JWS-form signature (Ed25519 64 bytes; EC raw r||s) over message."""
    from cryptography.exceptions import InvalidSignature

    try:
        if alg == "Ed25519":
            ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        else:
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            _ec_point(alg, public_key).verify(der, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class ServiceKey:
    """A service key pair. ``secret`` is the 32-byte private key (Ed25519 seed or EC scalar)."""

    key_id: str
    alg: str
    secret: bytes = field(repr=False)
    public_key: bytes  # protocol form: Ed25519 raw 32 bytes, EC compressed 33 bytes

    def __repr__(self) -> str:
        return f"ServiceKey(key_id={self.key_id!r}, alg={self.alg!r})"

    @classmethod
    def generate(cls, alg: str = "Ed25519", key_id: str | None = None) -> ServiceKey:
        """A fresh key; the key id defaults to ``<alg>-<RFC 7638 thumbprint prefix>``."""
        alg = check_alg(alg)
        if alg == "Ed25519":
            secret = os.urandom(32)
        else:
            priv = ec.generate_private_key(_CURVES[alg])
            secret = priv.private_numbers().private_value.to_bytes(32, "big")
        return cls.from_secret(alg, secret, key_id)

    @classmethod
    def derive(cls, seed: bytes, alg: str, context: bytes) -> ServiceKey:
        """The key a rotation seed gives for ``context`` (deterministic: same inputs, same key).

        HMAC-SHA256(seed, label || alg || context || counter); for EC curves the counter moves on
        in the (about 2**-128 likely) case the output is not a valid scalar.
        """
        alg = check_alg(alg)
        for counter in range(256):
            msg = b"keyreg/service-key/v1|" + alg.encode() + b"|" + context + bytes([counter])
            secret = hmac.new(seed, msg, hashlib.sha256).digest()
            if alg == "Ed25519" or 0 < int.from_bytes(secret, "big") < _ORDERS[alg]:
                return cls.from_secret(alg, secret)
        raise ValueError("no valid scalar derived")  # pragma: no cover  (probability ~2**-32000)

    @classmethod
    def from_secret(cls, alg: str, secret: bytes, key_id: str | None = None) -> ServiceKey:
        """Rebuild a key pair from its private key."""
        if alg == "Ed25519":
            pub = (
                ed25519.Ed25519PrivateKey.from_private_bytes(secret)
                .public_key()
                .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            )
        else:
            priv = ec.derive_private_key(int.from_bytes(secret, "big"), _CURVES[alg])
            pub = priv.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        if key_id is None:
            key_id = f"{alg.lower().replace('-', '')}-{jwk_thumbprint(public_jwk(alg, pub))[:16]}"
        return cls(key_id, alg, secret, pub)

    @property
    def jws_alg(self) -> str:
        return JWS_ALG[self.alg]

    def sign(self, message: bytes) -> bytes:
        """JWS-form signature: Ed25519 64 bytes, ECDSA raw r||s 64 bytes (SHA-256)."""
        if self.alg == "Ed25519":
            return ed25519.Ed25519PrivateKey.from_private_bytes(self.secret).sign(message)
        priv = ec.derive_private_key(int.from_bytes(self.secret, "big"), _CURVES[self.alg])
        r, s = decode_dss_signature(priv.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def public_jwk(self) -> dict[str, Any]:
        jwk = public_jwk(self.alg, self.public_key, self.key_id)
        jwk["alg"] = self.jws_alg
        return jwk

    def private_jwk(self) -> dict[str, Any]:
        """The JWK with the private part ``d``: only ever handed to the local service."""
        jwk = self.public_jwk()
        jwk["d"] = b64url(self.secret)
        return jwk

    def published(self, purposes: tuple[str, ...], not_before: int, not_after: int = 0) -> PublishedKey:
        """The record to publish in an inception or update event."""
        return PublishedKey(self.key_id, self.alg, self.public_key, tuple(purposes), not_before, not_after)
