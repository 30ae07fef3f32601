"""Signatures by registry keys, JWKS for JWT libraries, and replay-protected requests."""

from __future__ import annotations

import subprocess
import sys

import jwt
import pytest
from conftest import NOW, Scenario
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from verify_helpers import T0

from keyreg.verify import RequestRejected, RequestSigner, RequestVerifier, StaleView, Verifier
from keyreg.verify.requests import sign_message
from keyreg.verify.signatures import verify


@pytest.fixture(scope="module")
def verifier(scenario: Scenario) -> Verifier:
    return Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW)


@pytest.mark.parametrize(("kid", "alg"), [("k1", "Ed25519"), ("k2", "P-256"), ("k3", "secp256k1")])
def test_verify_signature_each_algorithm(scenario: Scenario, verifier: Verifier, kid: str, alg: str) -> None:
    secret = scenario.actors["alice"].secrets[kid]
    sig = sign_message(alg, secret, b"hello")
    sid = scenario.sid("alice")
    ok = verifier.verify_signature(sid, kid, b"hello", sig, at=T0 + 1000)
    assert ok.valid, ok.reason
    bad = verifier.verify_signature(sid, kid, b"hellO", sig, at=T0 + 1000)
    assert not bad.valid
    assert bad.verdict.ok
    expired = verifier.verify_signature(
        sid, "k1", b"x", sign_message("Ed25519", scenario.actors["alice"].secrets["k1"], b"x"), at=T0 + 5000
    )
    assert not expired.valid
    assert expired.verdict.status == "expired"


def test_ecdsa_der_and_high_s_accepted(scenario: Scenario) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    from keyreg.verify.requests import public_key_of

    secret = scenario.actors["alice"].secrets["k2"]
    key = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
    der = key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    assert verify("P-256", public_key_of("P-256", secret), b"m", der)
    s3 = scenario.actors["alice"].secrets["k3"]
    raw = sign_message("secp256k1", s3, b"m")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high = encode_dss_signature(r, n - s)
    assert verify("secp256k1", public_key_of("secp256k1", s3), b"m", high)
    assert decode_dss_signature(high)[1] > n // 2
    assert not verify("secp256k1", public_key_of("secp256k1", s3), b"m", b"\x00" * 64)
    assert not verify("Ed25519", b"\x00" * 31, b"m", b"\x00" * 64)


def test_jwks_verifies_jwts_with_pyjwt(scenario: Scenario, verifier: Verifier) -> None:
    sid = scenario.sid("alice")
    secrets = scenario.actors["alice"].secrets
    jwks = verifier.jwks(sid, at=T0 + 1000)
    keyset = jwt.PyJWKSet.from_dict(jwks)
    signing = {
        "k1": (Ed25519PrivateKey.from_private_bytes(secrets["k1"]), "EdDSA"),
        "k2": (ec.derive_private_key(int.from_bytes(secrets["k2"], "big"), ec.SECP256R1()), "ES256"),
        "k3": (ec.derive_private_key(int.from_bytes(secrets["k3"], "big"), ec.SECP256K1()), "ES256K"),
    }
    for kid, (key, alg) in signing.items():
        token = jwt.encode({"sub": "svc", "iat": T0}, key, algorithm=alg, headers={"kid": kid})
        jwk = keyset[jwt.get_unverified_header(token)["kid"]]
        claims = jwt.decode(token, jwk.key, algorithms=[jwk.algorithm_name])
        assert claims["sub"] == "svc"
    # after the overlap window the retired key is gone from the set
    later = {k["kid"] for k in verifier.jwks(sid, at=T0 + 4000)["keys"]}
    assert "k1" not in later
    assert "k4" in later


# ------------------------------------------------------------------------------- requests


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _setup(scenario: Scenario, verifier: Verifier, **kw: object) -> tuple[RequestSigner, RequestVerifier, Clock]:
    clock = Clock(T0 + 1000)
    signer = RequestSigner(scenario.sid("alice"), "k2", "P-256", scenario.actors["alice"].secrets["k2"])
    service = RequestVerifier(verifier, "api.example.com", window_s=300, clock=clock, **kw)  # type: ignore[arg-type]
    return signer, service, clock


def test_signed_request_accepted_once(scenario: Scenario, verifier: Verifier) -> None:
    signer, service, clock = _setup(scenario, verifier)
    headers = signer.sign("POST", "api.example.com", "/v1/orders?x=1", b'{"a":1}', now=int(clock()))
    ok = service.verify("POST", "/v1/orders?x=1", headers, b'{"a":1}')
    assert ok.subject == scenario.sid("alice")
    assert ok.key_id == "k2"
    with pytest.raises(RequestRejected) as exc:
        service.verify("POST", "/v1/orders?x=1", headers, b'{"a":1}')
    assert exc.value.reason == "replay"
    assert "secret" not in repr(signer)
    assert signer.secret.hex() not in repr(signer)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, r: r.update(body=b'{"a":2}'), "body-digest"),
        (lambda h, r: r.update(path="/v1/other"), "bad-signature"),
        (lambda h, r: r.update(method="PUT"), "bad-signature"),
        (lambda h, r: h.update({"Keyreg-Key-Id": "k3"}), "bad-signature"),
        (lambda h, r: h.update({"Keyreg-Timestamp": str(int(h["Keyreg-Timestamp"]) + 1)}), "bad-signature"),
        (lambda h, r: h.update({"Keyreg-Nonce": "A" * 22}), "bad-signature"),
        (lambda h, r: h.pop("Keyreg-Signature"), "missing-header"),
        (lambda h, r: h.update({"Keyreg-Signature": "!!"}), "malformed-header"),
        (lambda h, r: h.update({"Keyreg-Nonce": "short"}), "malformed-header"),
        (lambda h, r: h.update({"Keyreg-Subject": "0x" + "00" * 32}), "key-not-valid"),
        (lambda h, r: h.update({"Keyreg-Key-Id": "k1\nx"}), "malformed-header"),
    ],
)
def test_tampered_request_rejected(scenario: Scenario, verifier: Verifier, change: object, reason: str) -> None:
    signer, service, clock = _setup(scenario, verifier)
    headers = signer.sign("POST", "api.example.com", "/v1/orders", b'{"a":1}', now=int(clock()))
    req = {"method": "POST", "path": "/v1/orders", "body": b'{"a":1}'}
    change(headers, req)  # type: ignore[operator]
    with pytest.raises(RequestRejected) as exc:
        service.verify(req["method"], req["path"], headers, req["body"])  # type: ignore[arg-type]
    assert exc.value.reason == reason, exc.value.message


def test_request_time_window(scenario: Scenario, verifier: Verifier) -> None:
    signer, service, clock = _setup(scenario, verifier)
    old = signer.sign("GET", "api.example.com", "/", now=int(clock()) - 301)
    with pytest.raises(RequestRejected) as exc:
        service.verify("GET", "/", old)
    assert exc.value.reason == "expired"
    future = signer.sign("GET", "api.example.com", "/", now=int(clock()) + 301)
    with pytest.raises(RequestRejected) as exc:
        service.verify("GET", "/", future)
    assert exc.value.reason == "future"
    edge = signer.sign("GET", "api.example.com", "/", now=int(clock()) - 300)
    service.verify("GET", "/", edge)


def test_nonce_cache_is_bounded_and_expires(scenario: Scenario, verifier: Verifier) -> None:
    signer, service, clock = _setup(scenario, verifier, max_nonces=3)
    for _ in range(3):
        service.verify("GET", "/", signer.sign("GET", "api.example.com", "/", now=int(clock())))
    with pytest.raises(RequestRejected) as exc:
        service.verify("GET", "/", signer.sign("GET", "api.example.com", "/", now=int(clock())))
    assert exc.value.reason == "nonce-cache-full"
    clock.t += 2 * 300 + 2  # every remembered nonce is now outside any acceptable window
    service.verify("GET", "/", signer.sign("GET", "api.example.com", "/", now=int(clock())))
    assert len(service.nonces) == 1


def test_request_by_revoked_key_and_stale_view(scenario: Scenario, verifier: Verifier) -> None:
    clock = Clock(T0 + 600)
    bob = RequestSigner(scenario.sid("bob"), "k1", "Ed25519", scenario.actors["bob"].secrets["k1"])
    service = RequestVerifier(verifier, "api.example.com", clock=clock)
    with pytest.raises(RequestRejected) as exc:
        service.verify("GET", "/", bob.sign("GET", "api.example.com", "/", now=int(clock())))
    assert exc.value.reason == "key-not-valid"
    assert "revoked" in exc.value.message
    erin = RequestSigner(scenario.sid("erin"), "k1", "Ed25519", scenario.actors["erin"].secrets["k1"])
    with pytest.raises(RequestRejected) as exc:
        service.verify("GET", "/", erin.sign("GET", "api.example.com", "/", now=int(clock())))
    assert exc.value.reason == "stale-view"
    with pytest.raises(StaleView):
        verifier.check(scenario.sid("erin"), "k1")


def test_sdk_imports_core_only() -> None:
    code = (
        "import sys, keyreg.verify, keyreg.verify.testing\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('trio', 'sqlalchemy', 'libp2p', 'web3', 'httpx', 'eth_account', 'eth_rlp', 'rlp',"
        " 'alembic', 'hypercorn', 'starlette'))\n"
        "mine = sorted(m for m in sys.modules"
        " if m.startswith('node.') and not m.startswith(('keyreg.core', 'keyreg.verify')))\n"
        "print(bad, mine)\n"
        "sys.exit(1 if bad or mine else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_concurrent_replays_accept_exactly_one(scenario: Scenario, verifier: Verifier) -> None:
    from concurrent.futures import ThreadPoolExecutor

    signer, service, clock = _setup(scenario, verifier)
    headers = signer.sign("POST", "api.example.com", "/pay", b"1", now=int(clock()))

    def attempt(_: int) -> str:
        try:
            service.verify("POST", "/pay", headers, b"1")
        except RequestRejected as exc:
            return exc.reason
        return "accepted"

    with ThreadPoolExecutor(8) as ex:
        outcomes = list(ex.map(attempt, range(32)))
    assert outcomes.count("accepted") == 1
    assert set(outcomes) == {"accepted", "replay"}
