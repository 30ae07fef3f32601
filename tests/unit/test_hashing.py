"""recover_address: its fast libsecp256k1 path agrees with coincurve's public API, and EIP-2 edges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core import hashing
from node.core.errors import BadSignature
from node.core.hashing import SECP256K1_N, address_of_private_key, keccak, recover_address, sign_digest

HALF_N = SECP256K1_N // 2


def _with_s(signature: bytes, s: int) -> bytes:
    return signature[:32] + s.to_bytes(32, "big") + signature[64:]


def _outcome(digest: bytes, signature: bytes) -> tuple[str, str]:
    try:
        return "ok", recover_address(digest, signature).hex()
    except BadSignature as exc:
        return "BadSignature", str(exc)


def test_the_fast_path_is_in_use() -> None:
    assert hashing._recover_signer.__name__ == "_recover_signer_raw"


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_fast_path_agrees_with_the_public_api(secret: bytes, digest: bytes) -> None:
    secret = keccak(secret)  # a valid scalar with overwhelming probability
    signature = sign_digest(secret, digest)
    for _ in range(2):  # the second time from the address cache
        assert recover_address(digest, signature) == address_of_private_key(secret)
        assert hashing._recover_signer_public_api(digest, signature, signature[64] - 27) == address_of_private_key(
            secret
        )


def test_address_cache_is_bounded_and_only_ever_misses() -> None:
    cache = hashing._address_cache
    digest = keccak(b"d")
    signed = [(keccak(b"k%d" % i), sign_digest(keccak(b"k%d" % i), digest)) for i in range(3)]
    cache.clear()
    for secret, signature in signed * 2:
        assert recover_address(digest, signature) == address_of_private_key(secret)
    assert len(cache) == 3
    saved = hashing._ADDRESS_CACHE_MAX
    hashing._ADDRESS_CACHE_MAX = 2
    cache.clear()
    try:
        for secret, signature in signed:
            assert recover_address(digest, signature) == address_of_private_key(secret)
        assert len(cache) <= 2
    finally:
        hashing._ADDRESS_CACHE_MAX = saved


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


def test_non_bytes_inputs_fail_as_bad_signatures() -> None:
    digest = keccak(b"x")
    signature = sign_digest(keccak(b"secret"), digest)
    for convert in (bytearray, memoryview):
        with pytest.raises(BadSignature, match="does not recover"):
            recover_address(digest, convert(signature))  # type: ignore[arg-type]
        with pytest.raises(BadSignature, match="does not recover"):
            recover_address(convert(digest), signature)  # type: ignore[arg-type]
    with pytest.raises(BadSignature, match="65 bytes"):
        recover_address(digest, signature[:64])
    with pytest.raises(BadSignature, match="digest must be 32 bytes"):
        recover_address(digest[:31], signature)
