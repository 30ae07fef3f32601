"""A throwaway PostgreSQL cluster for tests and benchmarks (Debian's server binaries).

``TempCluster`` runs ``initdb`` into a temp dir (through ``runuser -u postgres`` when we are root,
since PostgreSQL refuses to run as root), starts it with ``pg_ctl`` on a free loopback port with
its socket in the temp dir and trust auth on loopback only, and ``stop()`` shuts it down and
deletes it. ``KEYREG_TEST_PG_URL`` (an existing server the tests may create databases on)
replaces all of this when set.

Used by tests/store/conftest.py and bench/node_ingest.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

ENV_URL = "KEYREG_TEST_PG_URL"


def find_pg_bin() -> Path | None:
    """The directory holding initdb/pg_ctl (highest installed Debian version first), or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: _version(p), reverse=True)
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _version(p: Path) -> float:
    try:
        return float(p.parent.parent.name)
    except ValueError:
        return 0.0


def missing_reason() -> str:
    return (
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb or initdb on PATH); "
        f"install them with `apt-get install -y postgresql` or set {ENV_URL}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempCluster:
    """A private PostgreSQL cluster in a temp dir; ``url(db)`` gives a psycopg 3 SQLAlchemy URL."""

    def __init__(self, bindir: Path, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable  # False: fsync off, for tests; True: the server defaults, for benches
        self.root = Path(tempfile.mkdtemp(prefix="keyreg-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> TempCluster:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)
        r = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip() or r.stdout.strip()}")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=50"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        r = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start"
        )
        if r.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()} {log[-2000:]}")
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


def create_database(server_url: str, prefix: str = "keyreg") -> str:
    """Create a fresh database on the server of ``server_url``; returns its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conninfo = u.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return u.set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_server(durable: bool = False) -> Iterator[str]:
    """Yield a server URL: ``KEYREG_TEST_PG_URL`` if set, else a throwaway cluster (stopped after).

    Raises LookupError (with :func:`missing_reason`) when no server binaries exist.
    """
    env = os.environ.get(ENV_URL)
    if env:
        yield env
        return
    bindir = find_pg_bin()
    if bindir is None:
        raise LookupError(missing_reason())
    cluster = TempCluster(bindir, durable=durable)
    try:
        cluster.start()
        yield cluster.url()
    finally:
        cluster.stop()
