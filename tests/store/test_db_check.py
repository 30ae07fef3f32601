"""check_database and verify_audit: a consistent database passes; each kind of damage is named."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import delete, update

from keyreg.core.codec import encode_event
from keyreg.registry import Registry
from keyreg.store import schema as t
from keyreg.store.audit import verify_audit
from keyreg.store.base import AuditEntry
from keyreg.store.check import check_database
from keyreg.store.sql import SqlStore
from tests.store.streams import DOMAIN, interleaved


@pytest.fixture
def filled(sql_url: str) -> Iterator[tuple[str, list]]:
    stream = interleaved(7, 4, 8)
    store = SqlStore(sql_url)
    reg = Registry(DOMAIN, store)
    reg.ingest([encode_event(e.signed) for e in stream])
    store.close()
    return sql_url, stream


def _damage(url: str, stmt: object) -> None:
    store = SqlStore(url)
    with store.engine.begin() as conn:
        conn.execute(stmt)
    store.close()


def test_consistent_database_passes(filled: tuple[str, list]) -> None:
    url, _stream = filled
    report = check_database(url, DOMAIN)
    assert report.ok, report.problems
    assert (report.subjects, report.events, report.audit.records) == (4, 32, 32)
    assert report.to_dict()["ok"] is True


def _problems(url: str) -> str:
    report = check_database(url, DOMAIN)
    assert not report.ok
    return " | ".join(report.problems + report.audit.problems)


def test_detects_a_gap(filled: tuple[str, list]) -> None:
    url, stream = filled
    _damage(url, delete(t.events).where(t.events.c.subject == stream[0].subject, t.events.c.seq == 3))
    assert "gap" in _problems(url)


def test_detects_altered_event_bytes(filled: tuple[str, list]) -> None:
    url, stream = filled
    raw = encode_event(stream[4].signed).replace(b'"timestamp":', b'"timestamp": ')
    _damage(url, update(t.events).where(t.events.c.digest == stream[4].digest).values(raw=raw))
    assert "canonical" in _problems(url)


def test_detects_wrong_digest_column(filled: tuple[str, list]) -> None:
    url, stream = filled
    _damage(url, update(t.events).where(t.events.c.digest == stream[5].digest).values(digest=b"\x01" * 32))
    assert "digest does not match" in _problems(url)


def test_detects_derived_state_drift(filled: tuple[str, list]) -> None:
    url, stream = filled
    s = t.subjects.c
    _damage(url, update(t.subjects).where(s.subject == stream[0].subject).values(state=s.state + " "))
    _damage(url, update(t.keys).where(t.keys.c.subject == stream[1].subject).values(revoked_at=1))
    problems = _problems(url)
    assert "derived state differs" in problems
    assert "key row differs" in problems


def test_detects_audit_tampering_and_truncation(filled: tuple[str, list]) -> None:
    url, _ = filled
    _damage(url, update(t.audit).where(t.audit.c.idx == 5).values(detail='{"kind":"forged"}'))
    assert "altered" in _problems(url)
    _damage(url, delete(t.audit).where(t.audit.c.idx == 5))
    assert "gap" in _problems(url)


def test_detects_audit_truncated_tail(filled: tuple[str, list]) -> None:
    url, _ = filled
    _damage(url, delete(t.audit).where(t.audit.c.idx == 31))
    assert "truncated" in _problems(url)


def test_two_writers_keep_one_audit_chain(sql_url: str) -> None:
    """A node and a CLI process may append at once: the audit head row serialises them."""
    stores = [SqlStore(sql_url), SqlStore(sql_url)]
    errors: list[BaseException] = []

    def writer(store: SqlStore, tag: str) -> Callable[[], None]:
        def run() -> None:
            try:
                for i in range(25):
                    store.append_audit([AuditEntry("key-op", None, None, None, {"w": tag, "i": i})])
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        return run

    threads = [threading.Thread(target=writer(s, str(n))) for n, s in enumerate(stores)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    report = verify_audit(stores[0], stores[0].audit_head())
    assert report.ok
    assert report.records == 50
    for s in stores:
        s.close()
