"""Store fixtures: one suite over MemoryStore, SQLite and PostgreSQL.

PostgreSQL comes from ``KEYREG_TEST_PG_URL`` or a throwaway cluster started once per session
(tests/pg.py). Without server binaries the postgres cases SKIP with the reason locally and FAIL
when ``CI`` is set, so CI can never pass by silently skipping them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # make tests.pg / tests.store.streams importable under any runner
    sys.path.insert(0, str(ROOT))

from keyreg.store.memory import MemoryStore  # noqa: E402
from keyreg.store.sql import SqlStore  # noqa: E402
from tests.pg import create_database, postgres_server  # noqa: E402


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server this session may create databases on."""
    try:
        with postgres_server() as url:
            yield url
    except (LookupError, RuntimeError) as exc:
        if _in_ci():
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """A fresh, empty database for one test."""
    return create_database(postgres_server_url, "keyreg_test")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL on each SQL backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'keyreg.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


class Clock:
    """A settable clock for deterministic audit times."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Callable[[], Any]]:
    """Opens (or re-opens) the store under test; every backend passes the same contract tests."""
    opened: list[Any] = []
    if request.param == "memory":
        memory = MemoryStore(clock)

        def _open() -> Any:
            return memory

    else:
        url = (
            f"sqlite:///{tmp_path / 'keyreg.db'}"
            if request.param == "sqlite"
            else request.getfixturevalue("postgres_url")
        )

        def _open() -> Any:
            store = SqlStore(url, clock=clock)
            opened.append(store)
            return store

    yield _open
    for store in opened:
        store.close()
