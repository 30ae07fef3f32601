"""The public HTTP API against the in-memory store: every endpoint and every 4xx path."""

from __future__ import annotations

import json

import pytest
from api_support import NOW, Subject, make_api, obj
from starlette.testclient import TestClient

from keyreg.core import builder
from keyreg.core.records import Domain
from keyreg.keys.service_keys import ServiceKey
from keyreg.registry import Registry


@pytest.fixture
def api() -> tuple[TestClient, Registry, Subject]:
    client, registry, _, config = make_api()
    s = Subject.make(config)
    r = client.post("/v1/events", json=obj(s.inception))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"
    return client, registry, s


def test_health_and_openapi(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, _ = api
    h = client.get("/v1/health").json()
    assert h["ok"]
    assert h["subjects"] == 1
    assert h["events"] == 1
    assert h["ingest"]["accepted"] == 1
    assert "services" in h
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/subjects/{subject}/keys/{kid}" in doc["paths"]


def test_subject_state(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    st = client.get(f"/v1/subjects/{s.id}").json()
    assert st["subject"] == s.id
    assert st["seq"] == 0
    assert st["head"] == s.id
    assert st["threshold"] == 2
    assert len(st["controllers"]) == 3
    assert st["keys"][0]["keyId"] == "k1"
    assert st["keys"][0]["status"] == "valid"
    assert st["disputed"] is False
    assert st["anchor"]["status"] == "unanchored"
    assert client.get(f"/v1/subjects/0x{'ab' * 32}").json()["code"] == "unknown_subject"


def test_events_paging(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    k2 = ServiceKey.generate("P-256", "k2")
    client.post("/v1/events", json={"events": [obj(s.next_update(NOW + 1, [k2.published(("sig",), NOW + 1)]))]})
    body = client.get(f"/v1/subjects/{s.id}/events", params={"from": 0, "limit": 1}).json()
    assert len(body["events"]) == 1
    assert body["events"][0]["kind"] == "inception"
    assert body["next"] == 1
    body = client.get(f"/v1/subjects/{s.id}/events", params={"from": 1}).json()
    assert [e["kind"] for e in body["events"]] == ["update"]
    assert body["next"] is None
    assert client.get(f"/v1/subjects/{s.id}/events", params={"limit": "x"}).json()["code"] == "bad_query"


def test_key_verdicts(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    v = client.get(f"/v1/subjects/{s.id}/keys/k1").json()
    assert v["status"] == "valid"
    assert v["valid"] is True
    assert v["at"] == NOW
    assert client.get(f"/v1/subjects/{s.id}/keys/k1", params={"at": NOW - 1}).json()["status"] == "not-yet-valid"
    assert client.get(f"/v1/subjects/{s.id}/keys/k1", params={"purpose": "enc"}).json()["status"] == "wrong-purpose"
    assert client.get(f"/v1/subjects/{s.id}/keys/nope").json()["status"] == "unknown-key"
    r = client.get(f"/v1/subjects/0x{'cd' * 32}/keys/k1")
    assert r.status_code == 200
    assert r.json()["status"] == "unknown-subject"
    for bad in ("/v1/subjects/0x1234/keys/k1", f"/v1/subjects/{s.id}/keys/bad%20id"):
        r = client.get(bad)
        assert r.status_code == 404
        assert r.json()["code"] == "malformed_id"
    client.post("/v1/events", json=obj(s.next_revocation(NOW + 2, "k1", NOW + 10)))
    v = client.get(f"/v1/subjects/{s.id}/keys/k1", params={"at": NOW + 10}).json()
    assert v["status"] == "revoked"
    assert v["revoked"]["by"] == "controller"


def test_jwks_and_did(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    p256 = ServiceKey.generate("P-256", "k2")
    k1 = ServiceKey.generate("secp256k1", "k3")
    pub = [p256.published(("sig",), NOW + 1), k1.published(("auth", "enc"), NOW + 1)]
    client.post("/v1/events", json=obj(s.next_update(NOW + 1, pub)))
    jwks = client.get(f"/v1/subjects/{s.id}/jwks.json", params={"at": NOW + 5}).json()
    by_kid = {k["kid"]: k for k in jwks["keys"]}
    assert by_kid["k1"]["kty"] == "OKP"
    assert by_kid["k1"]["crv"] == "Ed25519"
    assert by_kid["k1"]["alg"] == "EdDSA"
    assert by_kid["k2"]["kty"] == "EC"
    assert by_kid["k2"]["crv"] == "P-256"
    assert by_kid["k2"]["alg"] == "ES256"
    assert by_kid["k2"]["use"] == "sig"
    assert len(by_kid["k2"]["y"]) == 43
    assert by_kid["k3"]["crv"] == "secp256k1"
    assert by_kid["k3"]["alg"] == "ES256K"
    assert "use" not in by_kid["k3"]
    assert by_kid["k2"] == {**p256.public_jwk(), "use": "sig", "purposes": ["sig"], "nbf": NOW + 1}
    now_only = client.get(f"/v1/subjects/{s.id}/jwks.json").json()
    # k2, k3 are not valid yet at NOW: offered after the valid keys, with their nbf (docs/adr/0013)
    assert [(k["kid"], k.get("nbf")) for k in now_only["keys"]] == [("k1", NOW), ("k2", NOW + 1), ("k3", NOW + 1)]
    did = client.get(f"/v1/subjects/{s.id}/did.json")
    doc = did.json()
    assert did.headers["content-type"].startswith("application/did+json")
    assert doc["id"] == f"did:keyreg:31337:{s.id}"
    assert doc["verificationMethod"][0]["type"] == "JsonWebKey2020"
    # successors are listed too, with their validFrom (docs/adr/0013)
    assert doc["assertionMethod"][0] == f"{doc['id']}#k1"
    assert doc["authentication"][0] == f"{doc['id']}#k1"


def test_duplicity_evidence(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _registry, s = api
    base_seq, base_head = s.seq, s.head
    a = s.next_update(NOW + 1, [ServiceKey.generate().published(("sig",), NOW + 1)])
    s.seq, s.head = base_seq, base_head
    b = s.next_update(NOW + 1, [ServiceKey.generate().published(("sig",), NOW + 1)])
    assert client.post("/v1/events", json=obj(a)).status_code == 200
    r = client.post("/v1/events", json=obj(b))
    assert r.status_code == 202
    assert r.json()["status"] == "duplicity"
    ev = client.get(f"/v1/subjects/{s.id}/duplicity").json()
    assert ev["disputed"] is True
    assert ev["evidence"][0]["seq"] == 1
    assert client.get(f"/v1/subjects/{s.id}/keys/k1").json()["status"] == "disputed"
    assert client.get(f"/v1/subjects/{s.id}/jwks.json").json() == {"keys": [], "disputed": True}


def test_replay_is_known_and_not_stored_twice(api: tuple[TestClient, Registry, Subject]) -> None:
    client, registry, s = api
    r = client.post("/v1/events", json=obj(s.inception))
    assert r.status_code == 200
    assert r.json()["status"] == "known"
    assert len(registry.events(s.subject)) == 1


def test_bad_signature_rejected_nothing_stored(api: tuple[TestClient, Registry, Subject]) -> None:
    client, registry, s = api
    signed = s.next_update(NOW + 1, [ServiceKey.generate().published(("sig",), NOW + 1)])
    o = obj(signed)
    sig = bytearray(bytes.fromhex(o["signatures"][0][2:]))
    sig[64] = 29  # invalid v
    o["signatures"][0] = "0x" + sig.hex()
    r = client.post("/v1/events", json=o)
    assert r.status_code == 422
    assert r.json()["code"] == "bad_signature"
    assert r.json()["message"]
    o2 = obj(signed)
    o2["signatures"] = [o2["signatures"][0]]  # 1 of 2
    assert client.post("/v1/events", json=o2).json()["code"] == "below_threshold"
    assert len(registry.events(s.subject)) == 1


def test_wrong_network(api: tuple[TestClient, Registry, Subject]) -> None:
    client, registry, _ = api
    other = Domain(1, b"\x11" * 20)
    ev = builder.inception(NOW, builder.controller_set([b"\x09" * 32]), 1)
    r = client.post("/v1/events", json=obj(builder.sign_event(other, ev, [b"\x09" * 32])))
    assert r.status_code == 422
    assert r.json()["code"] == "wrong_network"
    assert len(registry.states) == 1


def test_malformed_and_batches(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _registry, s = api
    r = client.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["code"] == "malformed"
    assert client.post("/v1/events", content=b'{"kind":"inception","kind":"x"}').json()["code"] == "malformed"
    assert client.post("/v1/events", json={"kind": "update", "extra": 1}).json()["code"] == "malformed"
    assert client.post("/v1/events", json={"events": []}).status_code == 400
    good = obj(s.next_update(NOW + 1, [ServiceKey.generate().published(("sig",), NOW + 1)]))
    body = client.post("/v1/events", json={"events": [obj(s.inception), good, {"kind": "nope"}]}).json()
    assert [r["status"] for r in body["results"]] == ["known", "accepted", "rejected"]
    assert body["errors"] is True
    assert body["results"][2]["error"]["code"] == "malformed"
    assert client.get("/v1/nothing-here").json()["code"] == "not_found"
    assert client.delete("/v1/events").json()["code"] == "method_not_allowed"


def test_oversized_body_413() -> None:
    client, registry, _, _config = make_api(max_body_bytes=2048)
    r = client.post("/v1/events", content=b"{" + b" " * 4096 + b"}")
    assert r.status_code == 413
    assert r.json()["code"] == "oversized"

    def chunks():  # no Content-Length: the cap holds while streaming too
        for _ in range(10):
            yield b" " * 1024

    r = client.post("/v1/events", content=chunks())
    assert r.status_code == 413
    assert registry.counters["accepted"] == 0


def test_rate_limit_429() -> None:
    client, _, _, _ = make_api(rate_limit_per_s=0.001, rate_burst=3)
    codes = [client.get("/v1/subjects/0x" + "ab" * 32 + "/keys/k1").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = client.get("/v1/subjects/0x" + "ab" * 32 + "/keys/k1")
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert client.get("/v1/health").status_code == 200  # probes are exempt


def test_metrics(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    client.get(f"/v1/subjects/{s.id}/keys/k1")
    text = client.get("/metrics").text
    assert 'keyreg_ingest_events_total{status="accepted"} 1.0' in text
    assert (
        'keyreg_http_request_seconds_count{method="GET",route="/v1/subjects/{subject}/keys/{kid}",status="200"}' in text
    )
    assert "keyreg_subjects 1.0" in text
    json.dumps(client.get("/v1/health").json())


def test_hot_key_route_matches_starlette_route(api: tuple[TestClient, Registry, Subject]) -> None:
    """GET and HEAD, both routed by HotRoutes only: same status and headers."""
    client, _, s = api
    for path in (
        f"/v1/subjects/{s.id}/keys/k1?at={NOW}&purpose=sig",
        f"/v1/subjects/{s.id}/keys/k1?at=x",
        "/v1/subjects/0x12/keys/k1",
        f"/v1/subjects/{s.id}/keys/" + "x" * 65,
    ):
        got, head = client.get(path), client.head(path)
        assert got.status_code == head.status_code
        assert got.headers["content-type"] == head.headers["content-type"] == "application/json"
        assert got.headers["content-length"] == head.headers["content-length"] == str(len(got.content))
    assert client.get(f"/v1/subjects/{s.id}/keys/k1?at={NOW}&at={NOW - 1}").json()["status"] == "not-yet-valid"


def test_rate_limit_shared_by_hot_and_starlette_routes() -> None:
    client, _, _, _ = make_api(rate_limit_per_s=0.001, rate_burst=2)
    assert client.get("/v1/subjects/0x" + "ab" * 32 + "/keys/k1").status_code == 200
    assert client.get("/v1/subjects/0x" + "ab" * 32).status_code == 404  # unknown subject, counted
    r = client.get("/v1/subjects/0x" + "ab" * 32 + "/keys/k1")
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert client.get("/v1/subjects/0x" + "ab" * 32).status_code == 429
