"""PyJWT verifies JWTs signed by the service's current key against the node's JWKS, across a rotation."""

from __future__ import annotations

import json

import jwt
import pytest
from api_support import NOW, Subject, make_api, obj

from keyreg.keys.jwt import JWTError, sign_jwt, verify_jwt
from keyreg.keys.rotation import KeyWindow, plan_manual_rotation
from keyreg.keys.service_keys import ServiceKey

ALGS = {"Ed25519": "EdDSA", "P-256": "ES256", "secp256k1": "ES256K"}


def pyjwt_verify(token: str, jwks: dict, alg: str) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    match = [k for k in jwks["keys"] if k["kid"] == kid]
    if not match:
        raise jwt.InvalidTokenError(f"kid {kid} not in JWKS")
    key = jwt.PyJWK.from_json(json.dumps(match[0]))
    return jwt.decode(token, key.key, algorithms=[alg], options={"verify_exp": False})


@pytest.mark.parametrize("alg", ["Ed25519", "P-256"])
def test_jwt_before_and_after_rotation(alg: str) -> None:
    client, _, clock, config = make_api()
    s = Subject.make(config, alg)
    client.post("/v1/events", json=obj(s.inception))
    old = s.key
    jwks = client.get(f"/v1/subjects/{s.id}/jwks.json").json()
    token_old = sign_jwt(old, {"sub": "before"})
    assert pyjwt_verify(token_old, jwks, ALGS[alg]) == {"sub": "before"}
    # PyJWT-signed tokens verify with our verifier too (same JWS encoding both ways).
    pk = jwt.PyJWK.from_dict(old.private_jwk())
    assert verify_jwt(jwt.encode({"a": 1}, pk.key, algorithm=ALGS[alg], headers={"kid": old.key_id}), jwks) == {"a": 1}

    # Rotate: new key from NOW + 10, old key retires one hour later.
    new = ServiceKey.generate(alg, "k2")
    plan = plan_manual_rotation(NOW + 10, [KeyWindow("k1", NOW)], overlap=3600)
    client.post("/v1/events", json=obj(s.next_update(NOW + 10, [new.published(("sig",), NOW + 10)], plan.retire)))
    clock.t = NOW + 20
    during = client.get(f"/v1/subjects/{s.id}/jwks.json").json()
    assert sorted(k["kid"] for k in during["keys"]) == ["k1", "k2"]
    token_new = sign_jwt(new, {"sub": "after"})
    assert pyjwt_verify(token_old, during, ALGS[alg]) == {"sub": "before"}
    assert pyjwt_verify(token_new, during, ALGS[alg]) == {"sub": "after"}

    clock.t = NOW + 10 + 3600
    after = client.get(f"/v1/subjects/{s.id}/jwks.json").json()
    assert [k["kid"] for k in after["keys"]] == ["k2"]
    assert pyjwt_verify(token_new, after, ALGS[alg]) == {"sub": "after"}
    with pytest.raises(jwt.InvalidTokenError):
        pyjwt_verify(token_old, after, ALGS[alg])


def test_es256k_jwk_matches_pyjwt() -> None:
    key = ServiceKey.generate("secp256k1")
    token = sign_jwt(key, {"x": 1})
    try:
        assert pyjwt_verify(token, {"keys": [key.public_jwk()]}, "ES256K") == {"x": 1}
    except jwt.exceptions.PyJWKError as exc:  # some PyJWT builds lack secp256k1 JWK support
        pytest.skip(f"PyJWT cannot load secp256k1 JWKs here: {exc}")


def test_jwks_offers_the_successor_from_its_publication() -> None:
    """A verifier that fetched the JWKS once, right after the successor was published, and never
    again (no refetch on an unknown kid) still verifies the successor's tokens after activation."""
    client, _, clock, config = make_api()
    s = Subject.make(config)
    client.post("/v1/events", json=obj(s.inception))
    successor = ServiceKey.generate("Ed25519", "k2")
    plan = plan_manual_rotation(NOW + 100, [KeyWindow("k1", NOW)], overlap=60)
    event = s.next_update(NOW, [successor.published(("sig",), NOW + 100)], plan.retire)
    assert client.post("/v1/events", json=obj(event)).status_code == 200
    cached = client.get(f"/v1/subjects/{s.id}/jwks.json").json()  # fetched once, at NOW
    by_kid = {k["kid"]: k for k in cached["keys"]}
    assert set(by_kid) == {"k1", "k2"}
    assert by_kid["k2"]["nbf"] == NOW + 100  # marked with its window
    assert by_kid["k1"]["exp"] == NOW + 160
    # PyJWT builds a key set from it (it ignores the non-standard nbf/exp members)
    keyset = jwt.PyJWKSet.from_dict(cached)
    token = sign_jwt(successor, {"sub": "after the switch"})
    key = next(k for k in keyset.keys if k.key_id == "k2")
    assert jwt.decode(token, key.key, algorithms=["EdDSA"]) == {"sub": "after the switch"}
    # our own verifier honours the window: not before activation, and the old key not after its end
    with pytest.raises(JWTError, match="not valid before"):
        verify_jwt(token, cached, now=NOW + 99)
    assert verify_jwt(token, cached, now=NOW + 100) == {"sub": "after the switch"}
    with pytest.raises(JWTError, match="expired"):
        verify_jwt(sign_jwt(s.key, {"a": 1}), cached, now=NOW + 160)
    # did.json offers it too, with its window
    clock.t = NOW + 1
    did = client.get(f"/v1/subjects/{s.id}/did.json").json()
    methods = {m["id"].split("#")[1]: m for m in did["verificationMethod"]}
    assert methods["k2"]["validFrom"] == NOW + 100
    assert methods["k1"]["validUntil"] == NOW + 160
    # ... and the upcoming set is capped (a subject pre-publishing many keys cannot bloat it)
    many = [ServiceKey.generate("Ed25519", f"f{i}").published(("sig",), NOW + 1000 + i) for i in range(8)]
    client.post("/v1/events", json=obj(s.next_update(NOW + 1, many)))
    offered = client.get(f"/v1/subjects/{s.id}/jwks.json").json()["keys"]
    assert [k["kid"] for k in offered] == ["k1", "k2", "f0", "f1", "f2"]
