"""Red-team review fixes in the HTTP API (M7, H4, M11, L4): each test replays the attack."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from api_support import NOW, Clock, Subject, TestClient, obj
from sqlalchemy import event

from node.api.app import ApiContext, create_app
from node.config import ApiConfig, Config
from node.registry import Registry
from node.store.sql import SqlStore

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
    with ReadOnly(store), caplog.at_level(logging.ERROR, logger="node.store.sql"):
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
    assert "readonly" in logged[0] and "INSERT" not in logged[0] and victim.id[2:12] not in logged[0]
    h = client.get("/v1/health").json()
    assert h["ok"] is False and h["degraded"] == ["store"]
    assert h["services"]["store"] == {"ok": False, "lastError": "store commit: OperationalError", "writeFailures": 2}
    # Writable again: the next write succeeds and health recovers.
    assert client.post("/v1/events", json=obj(victim.inception)).status_code == 200
    h = client.get("/v1/health").json()
    assert h["ok"] is True and "degraded" not in h
    assert h["services"]["store"]["ok"] is True
    assert victim.subject in registry.states
