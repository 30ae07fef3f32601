"""recover_address (coincurve's public API): the signer's address, and EIP-2 edges."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core import hashing
from keyreg.core.errors import BadSignature
from keyreg.core.hashing import SECP256K1_N, address_of_private_key, keccak, recover_address, sign_digest

HALF_N = SECP256K1_N // 2


def _with_s(signature: bytes, s: int) -> bytes:
    return signature[:32] + s.to_bytes(32, "big") + signature[64:]


def _outcome(digest: bytes, signature: bytes) -> tuple[str, str]:
    try:
        return "ok", recover_address(digest, signature).hex()
    except BadSignature as exc:
        return "BadSignature", str(exc)


def test_only_coincurves_public_api_is_used() -> None:
    source = inspect.getsource(hashing)
    assert "coincurve._" not in source
    assert "from coincurve import PrivateKey, PublicKey" in source


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_recovers_the_signers_address(secret: bytes, digest: bytes) -> None:
    secret = keccak(secret)  # a valid scalar with overwhelming probability
    signature = sign_digest(secret, digest)
    assert recover_address(digest, signature) == address_of_private_key(secret)


@pytest.mark.parametrize("s", [0, 1, HALF_N - 1, HALF_N, HALF_N + 1, SECP256K1_N - 1, SECP256K1_N, 2**256 - 1])
def test_low_s_rule_at_its_edges(s: int) -> None:
    digest = keccak(b"edge")
    signature = _with_s(sign_digest(keccak(b"secret"), digest), s)
    kind, message = _outcome(digest, signature)
    eip2 = "upper half of the curve order" in message
    assert eip2 == (s == 0 or s > HALF_N)
    assert kind == "BadSignature" or not eip2


@pytest.mark.parametrize("v", [0, 1, 26, 29, 255])
def test_v_must_be_27_or_28(v: int) -> None:
    digest = keccak(b"v")
    signature = sign_digest(keccak(b"secret"), digest)
    with pytest.raises(BadSignature, match="v must be 27 or 28"):
        recover_address(digest, signature[:64] + bytes((v,)))


def test_non_bytes_inputs_recover_the_same_address_or_fail_as_bad_signatures() -> None:
    digest = keccak(b"x")
    signature = sign_digest(keccak(b"secret"), digest)
    for convert in (bytearray, memoryview):
        assert recover_address(digest, convert(signature)) == address_of_private_key(keccak(b"secret"))  # type: ignore[arg-type]
        with pytest.raises(BadSignature, match="does not recover"):
            recover_address(convert(digest), signature)  # type: ignore[arg-type]
    with pytest.raises(BadSignature, match="65 bytes"):
        recover_address(digest, signature[:64])
    with pytest.raises(BadSignature, match="digest must be 32 bytes"):
        recover_address(digest[:31], signature)
