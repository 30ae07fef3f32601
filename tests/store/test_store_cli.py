"""``keyreg db check`` and ``keyreg audit list|verify`` on a data dir (SQLite by default)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import update
from typer.testing import CliRunner

from keyreg.cli import app
from keyreg.cli import store as store_cli  # registers `db` and `audit` on app (no other topic needed)
from keyreg.config import load_config
from keyreg.core.codec import encode_event
from keyreg.registry import Registry
from keyreg.store import schema as t
from keyreg.store.base import AuditEntry
from keyreg.store.sql import SqlStore
from tests.store.streams import interleaved

runner = CliRunner()


def _filled_data_dir(tmp_path: Path) -> Path:
    cfg = load_config(tmp_path)
    store = SqlStore(cfg.store_url)
    reg = Registry(cfg.domain, store)
    stream = interleaved(9, 3, 4, cfg.domain)
    reg.ingest([encode_event(e.signed) for e in stream])
    reg.ingest([b"not json"])  # a rejection is audited too
    store.append_audit([AuditEntry("key-op", None, None, None, {"op": "rotate", "keyId": "k1"})])
    store.close()
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    assert store_cli.db_app is not None
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_db_check_and_audit_on_a_healthy_database(tmp_path: Path) -> None:
    d = str(_filled_data_dir(tmp_path))
    code, out = _run("db", "check", "--data-dir", d, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    assert (report["subjects"], report["events"], report["audit"]["records"]) == (3, 12, 14)
    code, out = _run("db", "check", "--data-dir", d)
    assert code == 0
    assert "db check ok" in out

    code, out = _run("audit", "verify", "--data-dir", d, "--json")
    assert code == 0
    assert json.loads(out)["records"] == 14
    code, out = _run("audit", "list", "--data-dir", d, "--json", "--action", "key-op")
    assert code == 0
    [record] = json.loads(out)
    assert record["detail"] == {"op": "rotate", "keyId": "k1"}
    assert record["index"] == 13
    code, out = _run("audit", "list", "--data-dir", d, "--from", "12", "-n", "1")
    assert code == 0
    assert "reject" in out


def test_damage_fails_with_exit_1(tmp_path: Path) -> None:
    d = _filled_data_dir(tmp_path)
    store = SqlStore(load_config(d).store_url)
    with store.engine.begin() as conn:
        conn.execute(update(t.audit).where(t.audit.c.idx == 2).values(action="reject"))
    store.close()
    code, out = _run("audit", "verify", "--data-dir", str(d))
    assert code == 1
    assert "BROKEN" in out
    code, out = _run("db", "check", "--data-dir", str(d), "--json")
    assert code == 1
    assert json.loads(out)["audit"]["ok"] is False


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "check", "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no database" in result.output
