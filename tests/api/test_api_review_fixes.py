"""Red-team review fixes in the HTTP API (M7, H4, M11, L4): each test replays the attack."""

from __future__ import annotations

import logging
import resource
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from api_support import NOW, Clock, Subject, TestClient, obj
from sqlalchemy import event

import keyreg.api.app as app_module
from keyreg.api.app import ApiContext, create_app
from keyreg.api.middleware import LogBudget
from keyreg.config import ApiConfig, Config
from keyreg.keys.service_keys import ServiceKey
from keyreg.p2p.testing import KeyregNode
from keyreg.registry import ConflictBudget, Registry
from keyreg.store.memory import MemoryStore
from keyreg.store.sql import SqlStore

# --- M7: storage faults -----------------------------------------------------------------------


class ReadOnly:
    """Real SQLite refusing writes: every new connection runs PRAGMA query_only, so a commit fails
    inside SQLite with its own OperationalError ("attempt to write a readonly database")."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    @staticmethod
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA query_only=1")

    def __enter__(self) -> None:
        event.listen(self.store.engine, "connect", self._on_connect)
        self.store.engine.dispose()  # pooled connections were opened writable

    def __exit__(self, *exc: object) -> None:
        event.remove(self.store.engine, "connect", self._on_connect)
        self.store.engine.dispose()


@pytest.fixture
def sql_api(tmp_path: Path) -> Iterator[tuple[TestClient, Registry, SqlStore, Config]]:
    config = Config()
    config = replace(config, api=replace(ApiConfig()))
    store = SqlStore(f"sqlite:///{tmp_path / 'node.db'}", clock=Clock())
    registry = Registry(config.domain, store, config.limits, clock=Clock())
    client = TestClient(create_app(ApiContext(registry, config)), client=("127.0.0.1", 5000))
    yield client, registry, store, config
    store.engine.dispose()


def test_a_storage_fault_answers_a_generic_503_and_health_reports_it_until_a_write_succeeds(
    sql_api: tuple[TestClient, Registry, SqlStore, Config], caplog: pytest.LogCaptureFixture
) -> None:
    client, registry, store, config = sql_api
    first = Subject.make(config)
    assert client.post("/v1/events", json=obj(first.inception)).status_code == 200
    assert client.get("/v1/health").json()["ok"] is True
    victim = Subject.make(config)
    with ReadOnly(store), caplog.at_level(logging.ERROR, logger="keyreg.store.sql"):
        r = client.post("/v1/events", json=obj(victim.inception))
        again = client.post("/v1/events", json=obj(victim.inception))
    assert r.status_code == again.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "storage"
    text = r.text.lower()
    for leak in ("insert", "sql", "[parameters", victim.id[2:12], "readonly", "node.db"):
        assert leak not in text, (leak, r.text)
    assert len(r.content) < 300
    # The cause is in the log, once for the two identical failures, without SQL or parameters.
    logged = [rec.getMessage() for rec in caplog.records if "store commit failed" in rec.getMessage()]
    assert len(logged) == 1, logged
    assert "readonly" in logged[0]
    assert "INSERT" not in logged[0]
    assert victim.id[2:12] not in logged[0]
    h = client.get("/v1/health").json()
    assert h["ok"] is False
    assert h["degraded"] == ["store"]
    assert h["services"]["store"] == {"ok": False, "lastError": "store commit: OperationalError", "writeFailures": 2}
    # Writable again: the next write succeeds and health recovers.
    assert client.post("/v1/events", json=obj(victim.inception)).status_code == 200
    h = client.get("/v1/health").json()
    assert h["ok"] is True
    assert "degraded" not in h
    assert h["services"]["store"]["ok"] is True
    assert victim.subject in registry.states


# --- H4: body bytes are budgeted before parsing; big bodies are parsed off the event loop -------


class ParseSpy:
    """Wraps the real loads_strict: counts parses and the threads they ran on."""

    def __init__(self) -> None:
        self.real = app_module.loads_strict
        self.threads: list[str] = []

    def __call__(self, *args: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        return self.real(*args)


def _api(**api: Any) -> tuple[TestClient, Registry, Config]:
    config = replace(Config(), api=replace(ApiConfig(), **api))
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=Clock())
    return TestClient(create_app(ApiContext(registry, config)), client=("10.0.0.7", 5000)), registry, config


def test_a_client_over_its_byte_budget_gets_429_before_any_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = ParseSpy()
    monkeypatch.setattr(app_module, "loads_strict", spy)
    # A byte budget that refills negligibly during the test: the burst is what a client may send.
    client, _, _ = _api(body_bytes_per_s=1.0, body_bytes_burst=2 * 1024 * 1024)
    big = b'{"kind":"update","junk":[' + b"1," * 500_000 + b"1]}"  # ~1 MB of JSON that is not an event
    assert len(big) < 1024 * 1024
    answers = [client.post("/v1/events", content=big, headers={"content-type": "application/json"}) for _ in range(5)]
    statuses = [r.status_code for r in answers]
    assert 429 not in statuses[:2], statuses
    assert statuses[2:] == [429, 429, 429], statuses
    assert answers[-1].json()["code"] == "rate_limited"
    assert "retry-after" in answers[-1].headers
    assert len(spy.threads) == 2  # the three refused bodies were never parsed
    # Big bodies were parsed in a worker thread, not on the event loop's thread.
    assert all(name != threading.main_thread().name for name in spy.threads), spy.threads
    # Another client has its own budget.
    other = TestClient(client.app, client=("10.0.0.8", 5000))
    assert other.post("/v1/events", content=big, headers={"content-type": "application/json"}).status_code != 429


def test_a_body_that_is_not_a_json_object_is_refused_unparsed(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = ParseSpy()
    monkeypatch.setattr(app_module, "loads_strict", spy)
    client, _, _ = _api()
    r = client.post("/v1/events", content=b"[" + b"1," * 300_000 + b"1]")
    assert r.status_code == 400
    assert r.json()["code"] == "malformed"
    assert spy.threads == []


def test_small_events_still_pass_with_the_default_byte_budget() -> None:
    client, registry, config = _api()
    subjects = [Subject.make(config) for _ in range(20)]
    r = client.post("/v1/events", json={"events": [obj(s.inception) for s in subjects]})
    assert r.status_code == 200
    assert r.json()["accepted"] == 20
    assert len(registry.states) == 20


# --- M11: the duplicity endpoint is paged -------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_duplicity_evidence_is_paged_by_id(backend: str, tmp_path: Path) -> None:
    config = Config()
    clock = Clock()
    store = MemoryStore() if backend == "memory" else SqlStore(f"sqlite:///{tmp_path / 'e.db'}", clock=clock)
    # A holder adds 16 a minute (ingest.conflicts_per_subject); the test does not wait for the windows.
    registry = Registry(config.domain, store, config.limits, clock=clock, conflicts=ConflictBudget(per_subject=100))
    client = TestClient(create_app(ApiContext(registry, config)), client=("127.0.0.1", 5000))
    s = Subject.make(config)
    bystander = Subject.make(config)
    for subject in (s, bystander):
        assert client.post("/v1/events", json=obj(subject.inception)).status_code == 200
    base = (s.seq, s.head)
    made = 0
    for i in range(40):  # the holder signs 40 different events at seq 1: one accepted, 39 conflicts
        s.seq, s.head = base
        clock.t = NOW + 10 + i
        ev = s.next_update(clock.t, [ServiceKey.generate("Ed25519", f"c{i}").published(("sig",), clock.t)])
        answer = client.post("/v1/events", json=obj(ev)).json()
        status = answer.get("status") or answer["result"]["status"]
        made += status == "duplicity"
    assert made == 39
    every = store.evidence(s.subject)
    assert len(every) == 39
    seen: list[tuple[int, str, str]] = []
    after, pages = 0, 0
    while True:
        r = client.get(f"/v1/subjects/{s.id}/duplicity", params={"after": after, "limit": 10})
        assert r.status_code == 200
        page = r.json()
        assert page["disputed"] is True
        assert page["after"] == after
        assert 1 <= len(page["evidence"]) <= 10
        seen += [(e["seq"], e["first"]["digest"], e["second"]["digest"]) for e in page["evidence"]]
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] > after
        after = page["next"]
    assert pages == 4
    want = [(d.seq, "0x" + d.first_digest.hex(), "0x" + d.second_digest.hex()) for d in every]
    assert seen == want  # every entry once, in order
    # The default page is bounded; an out-of-range limit is refused.
    assert len(client.get(f"/v1/subjects/{s.id}/duplicity").json()["evidence"]) == 39
    assert client.get(f"/v1/subjects/{s.id}/duplicity", params={"limit": 5000}).status_code == 400
    assert client.get(f"/v1/subjects/{bystander.id}/duplicity").json()["evidence"] == []
    doc = client.get("/openapi.json").json()
    params = {p["name"] for p in doc["paths"]["/v1/subjects/{subject}/duplicity"]["get"]["parameters"]}
    assert {"after", "limit"} <= params


def test_a_duplicity_page_ends_at_max_page_bytes(tmp_path: Path) -> None:
    config = Config()
    config = replace(config, api=replace(config.api, max_page_bytes=2000))
    clock = Clock()
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=clock)
    client = TestClient(create_app(ApiContext(registry, config)), client=("127.0.0.1", 5000))
    s = Subject.make(config)
    client.post("/v1/events", json=obj(s.inception))
    base = (s.seq, s.head)
    for i in range(4):
        s.seq, s.head = base
        clock.t = NOW + 10 + i
        client.post(
            "/v1/events",
            json=obj(s.next_update(clock.t, [ServiceKey.generate("Ed25519", f"c{i}").published(("sig",), clock.t)])),
        )
    page = client.get(f"/v1/subjects/{s.id}/duplicity").json()
    assert len(page["evidence"]) == 1  # one entry is over 1,000 bytes: at least one per page
    assert page["next"] is not None


# --- L4: unexpected errors are logged within a budget ------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_unexpected_errors_answer_500_and_are_logged_at_most_n_per_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, registry, config = _api(error_logs_per_interval=3)
    s = Subject.make(config)
    assert client.post("/v1/events", json=obj(s.inception)).status_code == 200

    def bug(*args: Any) -> None:  # stands for any remaining 500 path (a bug a client can trigger)
        raise RuntimeError("a bug")

    monkeypatch.setattr(registry, "state", bug)
    with caplog.at_level(logging.ERROR, logger="keyreg.api.middleware"):
        answers = [client.get(f"/v1/subjects/{s.id}") for _ in range(40)]
    assert {r.status_code for r in answers} == {500}
    assert answers[0].json() == {"code": "internal", "message": "internal server error"}
    logged = [rec for rec in caplog.records if rec.getMessage().startswith("unexpected error")]
    assert len(logged) == 3  # 37 suppressed, none lost from the count
    assert logged[0].exc_info is not None
    assert client.get("/v1/health").status_code == 200  # the node goes on


def test_the_log_budget_reports_how_many_it_suppressed() -> None:
    clock = FakeClock()
    budget = LogBudget(burst=2, interval_s=60, clock=clock)
    assert [budget.take() for _ in range(5)] == [0, 0, None, None, None]
    clock.t += 59
    assert budget.take() is None
    clock.t += 1  # a new interval: the first record logged says 4 were suppressed
    assert budget.take() == 4
    assert budget.take() == 0
    assert budget.take() is None


@pytest.mark.e2e
def test_a_full_disk_on_a_node_process_answers_a_generic_503_and_health_says_degraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's reproduction: a real `keyreg node run` with a file-size limit (EFBIG stands
    in for ENOSPC), filled with new subjects until SQLite fails."""
    limit = 2 << 20
    real_popen = subprocess.Popen

    def limited(*args: Any, **kwargs: Any) -> Any:
        return real_popen(*args, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)), **kwargs)

    monkeypatch.setenv("KEYREG_API_NEW_SUBJECTS_PER_S", "100000")
    monkeypatch.setenv("KEYREG_API_NEW_SUBJECTS_BURST", "100000")
    monkeypatch.setenv("KEYREG_API_SUBMIT_EVENTS_BURST", "100000")
    monkeypatch.setattr(subprocess, "Popen", limited)
    node = KeyregNode(tmp_path / "node").start()
    monkeypatch.setattr(subprocess, "Popen", real_popen)
    try:
        config = Config()
        failed = None
        for _ in range(20):  # ~5 KB of disk per subject: 2 MiB holds a few hundred
            batch = [obj(Subject.make(config).inception) for _ in range(200)]
            r = node.http.post("/v1/events", json={"events": batch})
            if r.status_code == 503:
                failed = r
                break
            assert r.status_code == 200, r.text
        assert failed is not None, "the store never filled"
        assert failed.json()["code"] == "storage"
        text = failed.text.lower()
        for leak in ("insert", "sql", "parameters", "keys", batch[0]["keys"][0]["publicKey"][2:18].lower()):
            assert leak not in text, (leak, failed.text)
        h = node.health()
        assert h["ok"] is False
        assert h["degraded"] == ["store"]
        assert h["services"]["store"]["ok"] is False
        assert h["services"]["store"]["writeFailures"] >= 1
    finally:
        node.stop()
    log = (tmp_path / "node" / "node.log").read_text(errors="replace")
    assert "store commit failed" in log
    assert "INSERT" not in log
