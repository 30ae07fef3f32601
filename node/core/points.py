"""Is a published public key a point of its curve? (docs/protocol.md, published keys)

A published key is data to the registry, but the JWKS and the DID document decompress EC points,
and a relying party can do nothing with bytes that are no point. So a key whose bytes are not a
point of its curve is malformed when it is published. Cost per published key, measured on the
2-core dev machine: secp256k1 ~17 us (coincurve, libsecp256k1), P-256 ~41 us (cryptography,
OpenSSL); only events that publish keys pay it.

Ed25519 keys are not checked: no JWK or DID view decodes them (the JWK carries the 32 bytes as
they are), a signature under a non-point simply never verifies, and the only checks at hand
(libsodium's point validation, or a square root mod 2^255 - 19 in Python) cost 50-95 us per key,
more than the rest of an event's validation.
"""

from __future__ import annotations

from coincurve import PublicKey as Secp256k1PublicKey
from cryptography.hazmat.primitives.asymmetric import ec


def is_curve_point(alg: str, public_key: bytes) -> bool:
    """Whether ``public_key`` (SEC1 compressed for the EC algorithms) is a point of ``alg``'s curve;
    True for Ed25519 (not checked, see the module docstring)."""
    try:
        if alg == "secp256k1":
            Secp256k1PublicKey(public_key)
        elif alg == "P-256":
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    except ValueError:
        return False
    return True
