"""Hash and signature primitives: keccak256, secp256k1 recover/sign, Ethereum addresses.

Keccak comes from safe-pysha3 (about 10x faster per call than pycryptodome here) and
secp256k1 from coincurve (libsecp256k1). Both are explicit dependencies.
"""

from __future__ import annotations

import sha3
from coincurve import PrivateKey, PublicKey

from .errors import BadSignature

_keccak = sha3.keccak_256

# secp256k1 group order; signatures with s > N/2 are rejected (EIP-2 malleability rule).
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2


def keccak(data: bytes) -> bytes:
    """keccak256 of data (Ethereum's hash, not NIST SHA3-256)."""
    digest: bytes = _keccak(data).digest()
    return digest


def address_of_public_key(public_key: PublicKey) -> bytes:
    """The 20-byte Ethereum address of a secp256k1 public key."""
    return keccak(public_key.format(compressed=False)[1:])[12:]


def address_of_private_key(secret: bytes) -> bytes:
    """The 20-byte Ethereum address controlled by a 32-byte private key."""
    return address_of_public_key(PrivateKey(secret).public_key)


def recover_address(digest: bytes, signature: bytes) -> bytes:
    """Recover the signer address of a 65-byte r||s||v signature (v in {27, 28}) over digest.

    Rejects high-s signatures and any v other than 27/28, so every signature has one encoding.
    """
    if len(signature) != 65:
        raise BadSignature(f"signature must be 65 bytes (r||s||v), got {len(signature)}")
    v = signature[64]
    if v not in (27, 28):
        raise BadSignature(f"signature v must be 27 or 28, got {v}")
    s = int.from_bytes(signature[32:64], "big")
    if s == 0 or s > _HALF_N:
        raise BadSignature("signature s is zero or in the upper half of the curve order (EIP-2)")
    try:
        public_key = PublicKey.from_signature_and_message(
            signature[:64] + bytes((v - 27,)), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises plain Exception subclasses on bad points
        raise BadSignature("signature does not recover to a public key") from exc
    return address_of_public_key(public_key)


def sign_digest(secret: bytes, digest: bytes) -> bytes:
    """Sign a 32-byte digest; returns r||s||v with v in {27, 28} and low s."""
    raw = PrivateKey(secret).sign_recoverable(digest, hasher=None)
    return raw[:64] + bytes((raw[64] + 27,))
