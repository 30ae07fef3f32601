"""The admin (local) endpoint: token auth, loopback only, signing key and signing."""

from __future__ import annotations

import pytest
from api_support import TestClient

from keyreg.api.admin import check_admin_host, create_admin_app
from keyreg.core.errors import ConfigError
from keyreg.core.log import KeyRecord
from keyreg.keys.handout import Handout
from keyreg.keys.jwt import verify_jwt
from keyreg.keys.service_keys import ServiceKey, b64url, b64url_decode, verify_signature

TOKEN = "t" * 43
KEY = ServiceKey.generate("Ed25519", "svc-1")
RECORD = KeyRecord(KEY.published(("sig",), 100), 0, 100, 0)


def provider() -> Handout:
    return Handout(KEY, RECORD, [KEY.public_jwk()], False, None)


def client(host: str = "127.0.0.1") -> TestClient:
    return TestClient(create_admin_app(TOKEN, provider), client=(host, 5000))


def test_requires_the_token() -> None:
    c = client()
    r = c.get("/local/v1/signing-key")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    assert c.get("/local/v1/signing-key", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/local/v1/signing-key", headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
    # the token is never echoed back
    assert TOKEN not in r.text


def test_signing_key_and_sign() -> None:
    c = client()
    auth = {"authorization": f"Bearer {TOKEN}"}
    body = c.get("/local/v1/signing-key", headers=auth).json()
    assert body["keyId"] == "svc-1"
    assert body["jwk"]["d"] == b64url(KEY.secret)
    assert body["accepted"] == [KEY.public_jwk()]
    jwt = c.post("/local/v1/sign", headers=auth, json={"jwt": {"sub": "x"}}).json()["jwt"]
    assert verify_jwt(jwt, {"keys": [KEY.public_jwk()]}) == {"sub": "x"}
    sig = c.post("/local/v1/sign", headers=auth, json={"payload": b64url(b"hello")}).json()["signature"]
    assert verify_signature("Ed25519", KEY.public_key, b64url_decode(sig), b"hello")
    assert c.post("/local/v1/sign", headers=auth, json={"other": 1}).status_code == 400


def test_loopback_only() -> None:
    r = client("10.0.0.7").get("/local/v1/signing-key", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_admin_host(host)
    for host in ("0.0.0.0", "10.0.0.1", "::", "example.com"):  # noqa: S104 (the point: refused)
        with pytest.raises(ConfigError, match="loopback"):
            check_admin_host(host)


def test_short_token_refused() -> None:
    with pytest.raises(ConfigError, match="too short"):
        create_admin_app("short", provider)


def test_long_poll_answers_when_the_key_changes() -> None:
    """?wait=&known=: the answer comes as soon as the key differs from the one the service holds."""
    successor = ServiceKey.generate("Ed25519", "svc-2")
    record2 = KeyRecord(successor.published(("sig",), 200), 1, 150, 0)
    calls = {"n": 0}

    def rotating() -> Handout:
        calls["n"] += 1
        if calls["n"] < 3:  # the successor activates between the 2nd and the 3rd look
            return Handout(KEY, RECORD, [KEY.public_jwk()], False, None)
        return Handout(successor, record2, [KEY.public_jwk(), successor.public_jwk()], False, None)

    c = TestClient(create_admin_app(TOKEN, rotating), client=("127.0.0.1", 5000))
    auth = {"authorization": f"Bearer {TOKEN}"}
    body = c.get("/local/v1/signing-key?wait=30&known=svc-1", headers=auth).json()
    assert body["keyId"] == "svc-2"
    assert calls["n"] == 3
    # a service that holds an older key gets the current one at once
    assert c.get("/local/v1/signing-key?wait=30&known=svc-0", headers=auth).json()["keyId"] == "svc-2"
    # without a change, the poll ends after `wait` with the same key
    c2 = client()
    assert c2.get("/local/v1/signing-key?wait=1&known=svc-1", headers=auth).json()["keyId"] == "svc-1"
    for bad in ("-1", "abc", "301", "1e3", "٣"):
        r = c2.get(f"/local/v1/signing-key?wait={bad}&known=svc-1", headers=auth)
        assert r.status_code == 400, bad
        assert r.json()["code"] == "bad_query"
