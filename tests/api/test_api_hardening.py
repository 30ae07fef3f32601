"""Issue 13 findings 7, 8 and 14 against the app: metrics labels, O(1) health, strict query parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_support import NOW, Subject, make_api, obj
from starlette.testclient import TestClient

from keyreg.api.app import MAX_SEQ, MAX_TIME
from keyreg.keys.service_keys import ServiceKey
from keyreg.registry import Registry


@pytest.fixture
def api() -> tuple[TestClient, Registry, Subject]:
    client, registry, _, config = make_api(rate_limit_per_s=0)
    s = Subject.make(config)
    assert client.post("/v1/events", json=obj(s.inception)).json()["status"] == "accepted"
    return client, registry, s


# ------------------------------------------------------------------ finding 7: metrics cardinality


def test_invented_methods_leave_metrics_small(api: tuple[TestClient, Registry, Subject]) -> None:
    """300 distinct 4 KB methods: each is labelled OTHER, /metrics does not grow with them."""
    client, _, s = api
    client.get(f"/v1/subjects/{s.id}/keys/k1")
    before = len(client.get("/metrics").content)
    for i in range(300):
        method = f"X{i:04d}" + "A" * 4091
        r = client.request(method, f"/v1/subjects/{s.id}")
        assert r.status_code == 405
        assert r.json()["code"] == "method_not_allowed"
        assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
    text = client.get("/metrics").text
    assert len(text) < before + 4096, len(text)  # one more label set (OTHER), not 300 x 4 KB
    assert 'method="OTHER",route="/v1/subjects/{subject}",status="405"} 300.0' in text
    assert "AAAA" not in text


def test_only_get_is_exempt_from_the_rate_limit() -> None:
    client, _, _, _ = make_api(rate_limit_per_s=0.001, rate_burst=2)
    for _ in range(5):  # GET on the probe paths never counts nor gets refused
        assert client.get("/v1/health").status_code == 200
        assert client.get("/metrics").status_code == 200
    codes = [client.request(m, "/v1/health").status_code for m in ("POST", "DELETE", "BREW", "POST")]
    assert codes == [405, 405, 429, 429]
    assert client.get("/v1/health").status_code == 200


# ------------------------------------------------------------------ finding 8: O(1) health


class _NoWalk(dict[bytes, Any]):
    """The registry's states, refusing to be walked: /v1/health must not iterate them."""

    def values(self) -> Any:
        raise AssertionError("health walked every subject")

    def items(self) -> Any:
        raise AssertionError("health walked every subject")

    def __iter__(self) -> Any:
        raise AssertionError("health walked every subject")


def test_health_is_constant_time_and_counts_right(api: tuple[TestClient, Registry, Subject]) -> None:
    client, registry, s = api
    config = s.config
    others = [Subject.make(config) for _ in range(3)]
    batch = [obj(o.inception) for o in others]
    k2 = ServiceKey.generate("Ed25519", "k2")
    batch.append(obj(s.next_update(NOW + 1, [k2.published(("sig",), NOW + 1)])))
    batch.append(obj(s.next_update(NOW + 2, (), [("k2", NOW + 2)])))
    assert client.post("/v1/events", json={"events": batch}).json()["accepted"] == 5
    truth = sum(st.seq + 1 for st in registry.states.values())
    assert truth == 6
    registry.states = _NoWalk(registry.states)
    h = client.get("/v1/health").json()
    assert (h["subjects"], h["events"]) == (4, 6)
    assert registry.event_count == truth


def test_event_count_survives_a_restart(api: tuple[TestClient, Registry, Subject]) -> None:
    _, registry, s = api
    k2 = ServiceKey.generate("Ed25519", "k2")
    registry.ingest([json.dumps(obj(s.next_update(NOW + 1, [k2.published(("sig",), NOW + 1)]))).encode()], "t")
    again = Registry(registry.domain, registry.store, registry.limits, clock=registry.clock)
    assert again.event_count == registry.event_count == 2


# ------------------------------------------------------------------ finding 14: query parameters


def _bad(client: TestClient, path: str, params: dict[str, str], raw: str) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 400, (path, params, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == "bad_query"
    if len(raw.strip()) > 2:
        assert raw.strip() not in body["message"]  # never echoed


NOT_DECIMAL = ["1_000", " 12", "12 ", "+5", "-1", "１２", "٣", "0x10", "1e3", "1.0", "²", "9" * 21]


def test_integer_queries_are_plain_ascii_decimal(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    base = f"/v1/subjects/{s.id}"
    for raw in NOT_DECIMAL:
        _bad(client, base + "/events", {"from": raw}, raw)
        _bad(client, base + "/events", {"limit": raw}, raw)
        _bad(client, base, {"at": raw}, raw)
        _bad(client, base + "/keys/k1", {"at": raw}, raw)
        _bad(client, base + "/jwks.json", {"at": raw}, raw)


def test_integer_queries_are_bounded_to_their_range(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    base = f"/v1/subjects/{s.id}"
    # from = 2**63 reached SQLite as an OverflowError (a 500) before
    for value in (MAX_SEQ + 1, 2**64):
        _bad(client, base + "/events", {"from": str(value)}, str(value))
    r = client.get(base + "/events", params={"from": str(MAX_SEQ)})
    assert r.status_code == 200
    assert r.json()["events"] == []
    for value in (0, 1001):
        _bad(client, base + "/events", {"limit": str(value)}, str(value))
    for path in (base, base + "/keys/k1", base + "/jwks.json"):
        _bad(client, path, {"at": str(MAX_TIME + 1)}, str(MAX_TIME + 1))
        assert client.get(path, params={"at": str(MAX_TIME)}).status_code == 200
    assert client.get(base + "/keys/k1", params={"at": "0" * 20 + "1"}).status_code == 400  # 21 digits
    verdict = client.get(base + "/keys/k1", params={"at": str(NOW)}).json()
    assert verdict["status"] == "valid"


def test_purposes_that_can_never_match_are_400(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, s = api
    base = f"/v1/subjects/{s.id}"
    for raw in ("p" * 33, "sig\x01", "sig\n", "SIG", "s i g", "sig/x", "é"):
        for path in (base + "/keys/k1", base + "/jwks.json"):
            _bad(client, path, {"purpose": raw}, raw)
    assert client.get(base + "/keys/k1", params={"purpose": "sig"}).json()["status"] == "valid"
    assert client.get(base + "/keys/k1", params={"purpose": "enc"}).json()["status"] == "wrong-purpose"
    assert client.get(base + "/jwks.json", params={"purpose": "p" * 32}).json()["keys"] == []


def test_gov_filters_and_ids_are_checked_before_the_service(api: tuple[TestClient, Registry, Subject]) -> None:
    client, _, _ = api
    for params in ({"governor": "0x12"}, {"subject": "ab" * 32}, {"state": "Bogus\x00"}):
        _bad(client, "/v1/gov/proposals", params, next(iter(params.values())))
    _bad(client, "/v1/gov/proposals/1", {"governor": "nope"}, "nope")
    _bad(client, "/v1/gov/ballots", {"limit": "0"}, "0")
    # A superscript digit passed str.isdigit() and broke int(): a 500 before
    for pid in ("²", "1" * 79, str(2**256)):
        r = client.get(f"/v1/gov/proposals/{pid}")
        assert r.status_code == 404
        assert r.json()["code"] == "malformed_id"
    r = client.get("/v1/gov/ballots/" + "x" * 300)
    assert r.status_code == 404
    assert "xxx" not in r.json()["message"]
    # well-formed requests reach the service, which is off here
    assert client.get("/v1/gov/proposals", params={"state": "active"}).json()["code"] == "gov_unavailable"


def test_events_page_byte_cap() -> None:
    client, _, _, config = make_api(rate_limit_per_s=0, max_page_bytes=1)
    s = Subject.make(config)
    client.post("/v1/events", json=obj(s.inception))
    k2 = ServiceKey.generate("Ed25519", "k2")
    client.post("/v1/events", json=obj(s.next_update(NOW + 1, [k2.published(("sig",), NOW + 1)])))
    page = client.get(f"/v1/subjects/{s.id}/events").json()
    assert (len(page["events"]), page["next"]) == (1, 1)  # one event at least, then the next page
    page = client.get(f"/v1/subjects/{s.id}/events", params={"from": "1"}).json()
    assert (len(page["events"]), page["next"]) == (1, 2)
    page = client.get(f"/v1/subjects/{s.id}/events", params={"from": "2"}).json()
    assert (len(page["events"]), page["next"]) == (0, None)


# ------------------------------------------------------------------ per-client budgets


def test_submitted_events_are_budgeted_per_event_not_per_request() -> None:
    """One request of 1,000 events costs 1,000 recoveries: it takes 1,000 tokens, not one."""
    client, registry, _, config = make_api(submit_events_per_s=0.001, submit_events_burst=1000)
    subjects = [Subject.make(config) for _ in range(1001)]
    batch = [obj(s.inception) for s in subjects[:1000]]
    assert client.post("/v1/events", json={"events": batch}).json()["accepted"] == 1000
    r = client.post("/v1/events", json=obj(subjects[1000].inception))
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    assert registry.counters["accepted"] == 1000  # refused before any recovery
    assert client.get("/v1/health").json()["subjects"] == 1000  # reads have their own bucket


def test_ipv6_clients_are_budgeted_per_64() -> None:
    from keyreg.api.middleware import client_key

    assert client_key({"client": ("2001:db8:1:2::1", 1)}) == client_key({"client": ("2001:db8:1:2:ffff::9", 2)})
    assert client_key({"client": ("2001:db8:1:3::1", 1)}) != client_key({"client": ("2001:db8:1:2::1", 1)})
    assert client_key({"client": ("192.0.2.1", 1)}) == "192.0.2.1"
    assert client_key({}) == "?"


def test_deep_json_and_lone_surrogates_are_malformed(api: tuple[TestClient, Registry, Subject]) -> None:
    """The API parses bodies with the core's depth-bounded parser (findings 9 and 13)."""
    client, registry, _ = api
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"events":[{"kind":"\\ud800"}]}', b'{"kind":"\\udfff"}'):
        r = client.post("/v1/events", content=body)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "malformed"
    assert registry.counters["rejected"] == 0  # refused before ingest


def test_a_ballot_with_a_non_ascii_digit_proposal_id_is_rejected_not_a_500() -> None:
    """POST /v1/gov/ballots decodes with decode_ballot: '²' passed str.isdigit() and int() raised."""
    from keyreg.gov.ballots import _FIELDS, BALLOT_TYPE, BALLOT_VERSION, decode_ballot
    from keyreg.gov.errors import BallotRejected

    for pid in ("²", "١٢", "１"):
        ballot = dict.fromkeys(_FIELDS, "x") | {"type": BALLOT_TYPE, "v": BALLOT_VERSION, "governorName": "g"}
        with pytest.raises(BallotRejected) as info:
            decode_ballot({**ballot, "proposalId": pid})
        assert info.value.details.get("field") == "proposalId"
