"""``keyreg db check`` and ``keyreg audit list|verify``: the node's database, checked from outside.

Both read the store URL and the network domain from the data dir's config. They open the database
directly (SQLite or PostgreSQL), so they work with the node stopped or running.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..core.errors import ConfigError
from . import app as root
from .common import DEFAULT_DATA_DIR, DataDirOpt, JsonOpt, err_console, handles_errors, load, out_console, print_json

if TYPE_CHECKING:
    from ..config import Config
    from ..store.base import AuditRecord

db_app = typer.Typer(help="Check the node's database.", no_args_is_help=True)
audit_app = typer.Typer(help="List and verify the hash-chained audit log.", no_args_is_help=True)
root.add_typer(db_app, name="db")
root.add_typer(audit_app, name="audit")


def _config(data_dir: Path) -> Config:
    from sqlalchemy.engine import make_url

    cfg = load(data_dir)
    url = make_url(cfg.store_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        raise ConfigError(f"no database at {url.database}: run `keyreg init` and start the node first")
    return cfg


@db_app.command("check")
@handles_errors
def db_check(data_dir: DataDirOpt = DEFAULT_DATA_DIR, as_json: JsonOpt = False) -> None:
    """Replay every subject's log and check derived state, digests, gaps and the audit chain."""
    from ..store.check import check_database

    cfg = _config(data_dir)
    if as_json:
        report = check_database(cfg.store_url, cfg.domain, cfg.limits)
        print_json(report.to_dict())
    else:
        columns = (TextColumn("replaying logs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task("check", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = check_database(cfg.store_url, cfg.domain, cfg.limits, progress)
        status = "[bold green]ok[/]" if report.ok else "[bold red]FAILED[/]"
        out_console.print(
            f"db check {status}: {report.subjects} subjects, {report.events} events, "
            f"{report.archived} archived, {report.evidence} evidence, {report.audit.records} audit records"
        )
        for problem in [*report.problems, *report.audit.problems]:
            out_console.print(f"  [red]-[/] {problem}", highlight=False, markup=True)
        if not report.ok:
            out_console.print(
                "the database differs from what its own logs replay to: restore it from a backup or resync"
            )
    if not report.ok:
        raise typer.Exit(1)


def _record_dict(r: AuditRecord) -> dict[str, Any]:
    return {
        "index": r.index,
        "time": r.time,
        "action": r.action,
        "subject": None if r.subject is None else "0x" + r.subject.hex(),
        "seq": r.seq,
        "digest": None if r.digest is None else "0x" + r.digest.hex(),
        "detail": r.detail,
        "prev_hash": "0x" + r.prev_hash.hex(),
        "hash": "0x" + r.hash.hex(),
    }


@audit_app.command("list")
@handles_errors
def audit_list(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    as_json: JsonOpt = False,
    start: Annotated[int, typer.Option("--from", help="First record index.")] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many records.")] = 50,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action (accept, reject, key-op...).")
    ] = None,
) -> None:
    """List audit records, oldest first."""
    from ..store.audit import iter_audit
    from ..store.sql import SqlStore

    cfg = _config(data_dir)
    store = SqlStore(cfg.store_url, limits=cfg.limits)
    try:
        records: list[AuditRecord] = []
        for r in iter_audit(store):
            if r.index < start or (action and r.action != action):
                continue
            records.append(r)
            if len(records) >= limit:
                break
    finally:
        store.close()
    if as_json:
        print_json([_record_dict(r) for r in records])
        return
    table = Table("index", "time (ms)", "action", "subject", "seq", "detail")
    for r in records:
        subject = "-" if r.subject is None else "0x" + r.subject.hex()[:12] + "…"
        detail = ", ".join(f"{k}={v}" for k, v in sorted(r.detail.items()))
        table.add_row(str(r.index), str(r.time), r.action, subject, "-" if r.seq is None else str(r.seq), detail[:80])
    out_console.print(table)


@audit_app.command("verify")
@handles_errors
def audit_verify(data_dir: DataDirOpt = DEFAULT_DATA_DIR, as_json: JsonOpt = False) -> None:
    """Recompute the audit hash chain from its first record."""
    from ..store.audit import verify_audit
    from ..store.sql import SqlStore

    cfg = _config(data_dir)
    store = SqlStore(cfg.store_url, limits=cfg.limits)
    try:
        with err_console.status("verifying the audit chain", spinner="dots"):
            report = verify_audit(store, store.audit_head())
    finally:
        store.close()
    if as_json:
        print_json(report.to_dict())
    else:
        status = "[bold green]ok[/]" if report.ok else "[bold red]BROKEN[/]"
        out_console.print(f"audit chain {status}: {report.records} records, head 0x{report.head_hash.hex()}")
        for problem in report.problems:
            out_console.print(f"  [red]-[/] {problem}", highlight=False, markup=True)
    if not report.ok:
        raise typer.Exit(1)
