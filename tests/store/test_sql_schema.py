"""Migrations and the runtime schema agree; opening is idempotent; bad URLs fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from keyreg.core.errors import ConfigError
from keyreg.store import schema
from keyreg.store.sql import SqlStore, migrate


def test_migrated_schema_matches_runtime_tables(sql_url: str) -> None:
    store = SqlStore(sql_url)
    try:
        assert store.revision == "0001"
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
        assert diff == []
        assert set(inspect(store.engine).get_table_names()) >= {t.name for t in schema.metadata.sorted_tables}
        assert migrate(store.engine) == "0001"  # already at head: a no-op
    finally:
        store.close()
    SqlStore(sql_url).close()  # re-open an existing database


def test_sqlite_pragmas(tmp_path: Path) -> None:
    for mode, want in (("", 2), ("?synchronous=normal", 1)):
        store = SqlStore(f"sqlite:///{tmp_path / 'db'}{mode}")
        try:
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == want
        finally:
            store.close()


@pytest.mark.parametrize(
    "url", ["nonsense", "mysql://localhost/x", "sqlite:////tmp/x.db?synchronous=off"], ids=["garbage", "mysql", "sync"]
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        SqlStore(url)
