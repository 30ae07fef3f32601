"""The SQL store: SQLAlchemy 2.x Core over SQLite (embedded default) or PostgreSQL (psycopg 3).

Transaction boundaries (the seam's invariant, see keyreg.store.base):
- :meth:`SqlStore.commit` writes one :class:`Changes` in ONE transaction: archive switched
  branches, append events, upsert derived subject/key rows, evidence, governance, anchors and the
  chained audit records. Nothing is visible, and nothing is acknowledged, before it commits.
- :meth:`SqlStore.append_audit` (local key operations) is its own transaction.
- Audit writers serialise on the ``audit_head`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; a
  ``BEGIN IMMEDIATE`` write lock on SQLite), so a CLI and a running node can both append.

Re-delivery: inserting an event that is already stored with the same digest is a no-op; a
*different* event at a stored (subject, seq) raises :class:`EventConflict` and rolls back. The fast
path is a plain multi-row insert; only on an integrity error does the store look up what it holds.

SQLite durability: WAL journal with ``synchronous=FULL`` by default (a commit survives power loss).
``?synchronous=normal`` in the URL trades that for speed: still atomic and safe against process
crashes (SIGKILL), but the last commits may be lost on power failure. See docs/storage.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, and_, bindparam, create_engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ..core.codec import decode_event, encode_event
from ..core.errors import ConfigError, StorageError
from ..core.fork import Duplicity
from ..core.limits import DEFAULT_LIMITS, Limits
from ..core.log import KeyRecord, SubjectState
from ..core.records import GovernanceRevocation, SignedEvent
from . import schema as t
from .audit import chain_rows, jsonable
from .base import AnchorRecord, AuditEntry, AuditRecord, Changes, EventConflict
from .serialize import (
    I64_MAX,
    clamp64,
    governance_from_json,
    governance_to_json,
    key_values,
    state_from_json,
    state_to_json,
)

MIGRATIONS = Path(__file__).parent / "migrations"
_EVENT_COLS = ("subject", "seq", "digest", "kind", "raw", "received_at")
_AUDIT_COLS = ("idx", "time", "action", "subject", "seq", "digest", "detail", "prev_hash", "hash")
_SUBJECT_COLS = ("subject", "seq", "head", "disputed", "revoked_at", "state")
_KEY_COLS = tuple(c.name for c in t.keys.columns)
_SYNC_MODES = ("full", "normal", "extra")
# WAL pages after which a commit copies the WAL back into the database (and fsyncs it) before
# returning. SQLite's default, 1,000 pages (4 MB), meant a checkpoint after every other 512-event
# commit (each writes ~2.8 MB of pages: every event rewrites its subject's row) on the ingest
# path; at 8,192 pages (32 MB) checkpoints are rarer and copy each hot page once for several
# commits: COMMIT CPU -30 %, its wall time (fsyncs) -35 % in the ingest bench. Durability is
# unchanged: a commit is durable once the WAL is synced, whatever the checkpoint schedule.
_WAL_CHECKPOINT_PAGES = 8192


def _on_conflict(key: tuple[str, ...], update_cols: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = excluded.{c}" for c in update_cols)
    return f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"


class _BulkInsert:
    """One INSERT (optionally an upsert) of many rows in one statement per call.

    SQLite: one prepared statement run by the driver's executemany (in-process, no round trips).
    PostgreSQL: ``INSERT ... SELECT * FROM unnest(%b::type[], ...)`` with one binary array per column: a
    constant query text (prepared once by psycopg) and one round trip whatever the row count,
    where psycopg's executemany still sends one Bind/Execute per row.
    Only our own constant table and column names are interpolated; values are always bound.

    Rows carry their values in the driver's cheap forms (:class:`_Values`): on SQLite a nullable
    column's placeholder is ``NULLIF(?, x'')`` so that NULL can travel as an empty bytearray.
    """

    def __init__(self, dialect: str, table: Table, cols: tuple[str, ...], suffix: str = "") -> None:
        self.sqlite = dialect == "sqlite"
        names = ", ".join(cols)
        if self.sqlite:
            marks = ", ".join("NULLIF(?, x'')" if table.c[c].nullable else "?" for c in cols)
            self.sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks}){suffix}'  # noqa: S608
        else:
            pg = postgresql.dialect()  # type: ignore[no-untyped-call]
            arrays = ", ".join(f"%b::{table.c[c].type.compile(dialect=pg)}[]" for c in cols)
            self.sql = f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({arrays}){suffix}'  # noqa: S608

    def run(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.sqlite:
            conn.exec_driver_sql(self.sql, rows)
        else:
            conn.exec_driver_sql(self.sql, tuple(list(col) for col in zip(*rows, strict=True)))


class _Values:
    """How the per-event rows carry blobs, NULLs and booleans to the driver.

    Python's sqlite3 binds int, float, str and bytearray directly but sends every other value
    (bytes, None, bool) through its adapter-protocol lookup first, which cost ~1 us per value: more
    than the rest of a row. So on SQLite blobs go as bytearray, NULL as an empty bytearray (turned
    back into NULL by the ``NULLIF(?, x'')`` placeholder of nullable columns; no nullable column
    holds an empty blob) and booleans as 0/1. PostgreSQL gets plain bytes, None and bool.
    """

    def __init__(self, sqlite: bool) -> None:
        self.blob: Callable[[bytes], bytes | bytearray] = bytearray if sqlite else bytes  # bytes(b) is b
        self.null: bytearray | None = bytearray() if sqlite else None
        self.false: bool | int = 0 if sqlite else False
        self.true: bool | int = 1 if sqlite else True


def _alembic_config(connection: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> str | None:
    """Upgrade the schema to head (no-op when current); returns the revision now in force."""
    with engine.connect() as conn:
        cfg = _alembic_config(conn)
        head = ScriptDirectory.from_config(cfg).get_current_head()
        if MigrationContext.configure(conn).get_current_revision() == head:
            return head
    with engine.connect().execution_options(keyreg_write=True) as conn:
        # env.py opens the transaction; on SQLite our "begin" hook makes it BEGIN IMMEDIATE so two
        # processes opening a fresh database cannot both run the first migration.
        command.upgrade(_alembic_config(conn), "head")
        conn.commit()
    return head


def _sqlite_engine(url: str) -> Engine:
    u = make_url(url)
    sync = str(u.query.get("synchronous", "full")).lower()
    if sync not in _SYNC_MODES:
        raise ConfigError(f"store URL: synchronous must be one of {', '.join(_SYNC_MODES)}, got {sync!r}")
    u = u.difference_update_query(["synchronous"])
    memory = u.database in (None, "", ":memory:")
    if not memory and u.database:
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_engine(u, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions would defer the lock).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
        cur.execute(f"PRAGMA synchronous={sync.upper()}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so the audit head they read cannot change under
        # them; readers use a deferred transaction and never block the writer (WAL).
        write = conn.get_execution_options().get("keyreg_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def open_engine(url: str) -> Engine:
    """An engine for a store URL: sqlite:///path[?synchronous=full|normal] or postgresql+psycopg://..."""
    try:
        backend = make_url(url).get_backend_name()
    except Exception as exc:
        raise ConfigError(f"store URL is not a valid SQLAlchemy URL: {exc}") from None
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
    raise ConfigError(f"store URL: unsupported database {backend!r} (use sqlite:/// or postgresql+psycopg://)")


log = logging.getLogger(__name__)


def _cause(exc: BaseException) -> str:
    """The driver's own message, bounded: never SQLAlchemy's text, which carries the SQL and its parameters."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    message = " ".join(str(orig).split())[:200] if isinstance(exc, DBAPIError) else ""
    return f"{type(orig).__name__}: {message}" if message else type(orig).__name__


class SqlStore:
    """The durable store (see the module docstring for transactions and durability).

    A failure reaches callers (and API clients) as a StorageError with a fixed message; the
    driver's message goes to the log only (a PostgreSQL one may name the host and user).
    """

    def __init__(self, url: str, clock: Callable[[], float] = time.time, limits: Limits = DEFAULT_LIMITS) -> None:
        self.url = url
        self.clock = clock
        self.limits = limits
        self.engine = open_engine(url)
        self.dialect = self.engine.dialect.name
        try:
            self.revision = migrate(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StorageError(f"cannot open the store: {exc.__class__.__name__}: {exc}") from exc
        ins = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        # The per-event statements are plain SQL run with the driver's executemany: SQLAlchemy's
        # per-row parameter processing cost more than SQLite itself (see docs/storage.md).
        self._bulk_event = _BulkInsert(self.dialect, t.events, _EVENT_COLS)
        self._bulk_audit = _BulkInsert(self.dialect, t.audit, _AUDIT_COLS)
        self._bulk_subject = _BulkInsert(
            self.dialect, t.subjects, _SUBJECT_COLS, _on_conflict(("subject",), ("seq", "head", "revoked_at", "state"))
        )
        self._bulk_key = _BulkInsert(
            self.dialect, t.keys, _KEY_COLS, _on_conflict(("subject", "key_id"), _KEY_COLS[2:])
        )
        self._values = _Values(self.dialect == "sqlite")
        self._insert_evidence = ins(t.evidence).on_conflict_do_nothing()
        self._insert_governance = ins(t.governance).on_conflict_do_nothing()
        self._insert_anchor = ins(t.anchors).on_conflict_do_nothing()
        self._set_disputed = (
            update(t.subjects).where(t.subjects.c.subject == bindparam("s")).values(disputed=bindparam("d"))
        )
        # Keys as last written, per subject: lets a commit upsert only the key rows that changed.
        # Updated only after a transaction commits.
        self._written_keys: dict[bytes, Mapping[str, KeyRecord]] = {}
        # The last write failure's exception type, until a write succeeds (GET /v1/health: a full
        # disk must not look healthy), and how many writes failed since the store opened.
        self.last_write_error: str | None = None
        self.write_failures = 0

    def _fault(self, what: str, exc: BaseException, write: bool = True) -> StorageError:
        """Log the cause (a write's once per distinct failure in a row) and return the public StorageError."""
        cause = _cause(exc)
        if write:
            self.write_failures += 1
            label = f"{what}: {cause.split(':')[0]}"  # the exception type only: public in /v1/health
            if label != self.last_write_error:
                log.error("store: %s failed: %s", what, cause)
            self.last_write_error = label
        else:
            log.error("store: %s failed: %s", what, cause)
        return StorageError(f"{what} failed; the node's storage is unavailable, retry later")

    def health(self) -> dict[str, Any]:
        """The store's part of GET /v1/health: not ok from a failed write until a write succeeds."""
        return {
            "ok": self.last_write_error is None,
            "lastError": self.last_write_error,
            "writeFailures": self.write_failures,
        }

    # ------------------------------------------------------------------ writes

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _write(self) -> Connection:
        return self.engine.connect().execution_options(keyreg_write=True)

    def commit(self, changes: Changes) -> None:
        """Apply all changes in one transaction; a known event is a no-op, a conflicting one raises."""
        if not changes:
            return
        now = self._now_ms()
        try:
            try:
                self._commit_once(changes, now)
            except IntegrityError as exc:
                filtered = self._drop_known(changes, exc)
                if filtered:
                    self._commit_once(filtered, now)
        except SQLAlchemyError as exc:
            raise self._fault("store commit", exc) from exc
        self.last_write_error = None

    def _commit_once(self, changes: Changes, now: int) -> None:
        written: dict[bytes, Mapping[str, KeyRecord]] = {}
        with self._write() as conn, conn.begin():
            switched = {s for s, _ in changes.switched}
            for subject, seq in changes.switched:
                self._archive(conn, subject, seq, now)
            if changes.appended:
                blob = self._values.blob
                rows = []
                for acc, raw in changes.appended:
                    event = acc.signed.event
                    rows.append((blob(acc.subject), event.seq, blob(acc.digest), event.kind, blob(raw), now))
                self._bulk_event.run(conn, rows)
            if changes.states:
                self._write_states(conn, changes, switched, written)
            if changes.disputed:
                conn.execute(self._set_disputed, [{"s": s, "d": d} for s, d in changes.disputed.items()])
            if changes.evidence:
                conn.execute(self._insert_evidence, [self._evidence_row(ev, now) for ev in changes.evidence])
            if changes.governance:
                conn.execute(
                    self._insert_governance,
                    [
                        {
                            "subject": g.subject,
                            "key_id": g.key_id,
                            "effective_at": clamp64(g.effective_at),
                            "proposal_id": str(g.proposal_id),
                            "record": governance_to_json(g),
                            "recorded_at": now,
                        }
                        for g in changes.governance
                    ],
                )
            if changes.anchors:
                conn.execute(
                    self._insert_anchor,
                    [
                        {
                            "subject": a.subject,
                            "seq": a.seq,
                            "digest": a.digest,
                            "position": a.position,
                            "mode": a.mode,
                            "block_number": a.block_number,
                            "tx_hash": a.tx_hash,
                            "root": a.root,
                            "recorded_at": now,
                        }
                        for a in changes.anchors
                    ],
                )
            if changes.audit:
                self._append_audit(conn, changes.audit, now)
        self._written_keys.update(written)

    def _write_states(
        self, conn: Connection, changes: Changes, switched: set[bytes], written: dict[bytes, Mapping[str, KeyRecord]]
    ) -> None:
        """Upsert the subjects rows of ``changes.states`` and the key rows that changed since written."""
        v = self._values
        blob, null, true, false, encode = v.blob, v.null, v.true, v.false, state_to_json
        disputed = changes.disputed
        written_keys = self._written_keys
        no_keys: Mapping[str, KeyRecord] = {}
        rows = []
        key_rows = []
        for subject, state in changes.states.items():
            revoked_at = state.revoked_at
            rows.append(
                (
                    blob(subject),
                    state.seq,
                    blob(state.head),
                    true if disputed and disputed.get(subject, False) else false,
                    null if revoked_at is None else min(revoked_at, I64_MAX),
                    encode(state),
                )
            )
            keys = state.keys
            old = no_keys if subject in switched else written_keys.get(subject, no_keys)
            if old is not keys:  # a state whose event changed no key shares its predecessor's mapping
                for kid, rec in keys.items():
                    was = old.get(kid)
                    if was is not rec and was != rec:
                        key_rows.append(key_values(subject, rec, blob, null))
            written[subject] = keys
        self._bulk_subject.run(conn, rows)
        self._bulk_key.run(conn, key_rows)

    def _archive(self, conn: Connection, subject: bytes, seq: int, now: int) -> None:
        """Move the branch from seq on to the archive (never deleted), and drop its derived keys."""
        e = t.events.c
        where = and_(e.subject == subject, e.seq >= seq)
        moved = select(e.subject, e.seq, e.digest, e.kind, e.raw, e.received_at, bindparam("now", now)).where(where)
        conn.execute(
            t.archived_events.insert().from_select(
                ["subject", "seq", "digest", "kind", "raw", "received_at", "archived_at"], moved
            )
        )
        conn.execute(t.events.delete().where(where))
        conn.execute(t.keys.delete().where(t.keys.c.subject == subject))

    @staticmethod
    def _evidence_row(ev: Duplicity, now: int) -> dict[str, Any]:
        return {
            "subject": ev.subject,
            "seq": ev.seq,
            "first_digest": ev.first_digest,
            "first_raw": encode_event(ev.first),
            "second_digest": ev.second_digest,
            "second_raw": encode_event(ev.second),
            "recorded_at": now,
        }

    def _drop_known(self, changes: Changes, exc: IntegrityError) -> Changes | None:
        """After an integrity error: drop events already stored identically, raise on real conflicts.

        Returns what is left to commit (None if nothing), or re-raises when the error was not
        caused by a re-delivered event.
        """
        switched: dict[bytes, int] = {}
        for s, q in changes.switched:
            switched[s] = min(q, switched.get(s, q))
        candidates = [
            (acc, raw) for acc, raw in changes.appended if acc.signed.event.seq < switched.get(acc.subject, 2**64)
        ]
        known: set[tuple[bytes, int]] = set()
        for acc, _ in candidates:
            seq = acc.signed.event.seq
            stored = self.digest_at(acc.subject, seq)
            if stored is None:
                continue
            if stored != acc.digest:
                raise EventConflict(
                    f"a different event is already stored at subject 0x{acc.subject.hex()} seq {seq}",
                    subject="0x" + acc.subject.hex(),
                    seq=seq,
                    stored="0x" + stored.hex(),
                    conflicting="0x" + acc.digest.hex(),
                ) from None
            known.add((acc.subject, seq))
        if not known:
            raise self._fault("store commit", exc) from exc
        appended = [(a, r) for a, r in changes.appended if (a.subject, a.signed.event.seq) not in known]
        fresh = {a.subject for a, _ in appended} | set(switched)
        out = Changes(
            appended=appended,
            # A subject whose events were all known keeps its stored state: never move a head back.
            states={s: st for s, st in changes.states.items() if s in fresh or s not in {k[0] for k in known}},
            evidence=changes.evidence,
            switched=changes.switched,
            disputed=changes.disputed,
            governance=changes.governance,
            anchors=changes.anchors,
            audit=[
                a
                for a in changes.audit
                if not (a.action == "accept" and a.subject is not None and (a.subject, a.seq) in known)
            ],
        )
        return out if out else None

    def _append_audit(
        self, conn: Connection, entries: list[AuditEntry], now: int, want_records: bool = False
    ) -> list[AuditRecord]:
        h = t.audit_head.c
        q = select(h.next_index, h.last_hash).where(h.id == 1)
        if self.dialect == "postgresql":
            q = q.with_for_update()
        next_index, last_hash = conn.execute(q).one()
        # Records handed back (local key operations, rare) need bytes; commits take the driver's form.
        blob = bytes if want_records else self._values.blob
        rows, last = chain_rows(entries, next_index, bytes(last_hash), now, blob)
        self._bulk_audit.run(conn, rows)
        conn.execute(update(t.audit_head).where(h.id == 1).values(next_index=rows[-1][0] + 1, last_hash=last))
        if not want_records:
            return []
        return [
            AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], jsonable(e.detail), r[7], r[8])
            for r, e in zip(rows, entries, strict=True)
        ]

    def append_audit(self, entries: list[AuditEntry]) -> list[AuditRecord]:
        """Chain and store audit records of local operations, in their own transaction."""
        if not entries:
            return []
        try:
            with self._write() as conn, conn.begin():
                records = self._append_audit(conn, list(entries), self._now_ms(), want_records=True)
        except SQLAlchemyError as exc:
            raise self._fault("audit append", exc) from exc
        self.last_write_error = None
        return records

    # ------------------------------------------------------------------ reads

    def _read(self, stmt: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(stmt))
        except SQLAlchemyError as exc:
            raise self._fault("store read", exc, write=False) from exc

    def load_states(self) -> Iterator[tuple[SubjectState, bool]]:
        """Every subject's head state and whether it is disputed."""
        s = t.subjects.c
        for state_json, disputed in self._read(select(s.state, s.disputed)):
            state = state_from_json(state_json)
            self._written_keys[state.subject] = state.keys
            yield state, bool(disputed)

    def events(self, subject: bytes, from_seq: int = 0, limit: int = 1000) -> list[bytes]:
        e = t.events.c
        stmt = select(e.raw).where(e.subject == subject, e.seq >= from_seq).order_by(e.seq).limit(limit)
        return [bytes(r[0]) for r in self._read(stmt)]

    def log(self, subject: bytes) -> list[SignedEvent]:
        e = t.events.c
        stmt = select(e.raw).where(e.subject == subject).order_by(e.seq)
        return [decode_event(bytes(r[0]), self.limits) for r in self._read(stmt)]

    def evidence(self, subject: bytes | None = None) -> list[Duplicity]:
        v = t.evidence.c
        stmt = select(v.subject, v.seq, v.first_raw, v.first_digest, v.second_raw, v.second_digest).order_by(v.id)
        if subject is not None:
            stmt = stmt.where(v.subject == subject)
        return [
            Duplicity(
                bytes(r[0]),
                r[1],
                decode_event(bytes(r[2]), self.limits),
                bytes(r[3]),
                decode_event(bytes(r[4]), self.limits),
                bytes(r[5]),
            )
            for r in self._read(stmt)
        ]

    def evidence_page(self, subject: bytes, after: int = 0, limit: int = 100) -> list[tuple[int, Duplicity]]:
        v = t.evidence.c
        stmt = (
            select(v.id, v.subject, v.seq, v.first_raw, v.first_digest, v.second_raw, v.second_digest)
            .where(v.subject == subject, v.id > after)
            .order_by(v.id)
            .limit(limit)
        )
        return [
            (
                r[0],
                Duplicity(
                    bytes(r[1]),
                    r[2],
                    decode_event(bytes(r[3]), self.limits),
                    bytes(r[4]),
                    decode_event(bytes(r[5]), self.limits),
                    bytes(r[6]),
                ),
            )
            for r in self._read(stmt)
        ]

    def governance_revocations(self, subject: bytes | None = None) -> list[GovernanceRevocation]:
        g = t.governance.c
        stmt = select(g.record).order_by(g.id)
        if subject is not None:
            stmt = stmt.where(g.subject == subject)
        return [governance_from_json(r[0]) for r in self._read(stmt)]

    def digest_at(self, subject: bytes, seq: int) -> bytes | None:
        e = t.events.c
        rows = self._read(select(e.digest).where(e.subject == subject, e.seq == seq))
        return bytes(rows[0][0]) if rows else None

    def anchors(self, subject: bytes | None = None) -> list[AnchorRecord]:
        a = t.anchors.c
        stmt = select(a.subject, a.seq, a.digest, a.position, a.mode, a.block_number, a.tx_hash, a.root).order_by(
            a.position, a.id
        )
        if subject is not None:
            stmt = stmt.where(a.subject == subject)
        return [
            AnchorRecord(
                bytes(r[0]), r[1], bytes(r[2]), r[3], r[4], r[5], bytes(r[6]), None if r[7] is None else bytes(r[7])
            )
            for r in self._read(stmt)
        ]

    def audit_records(self, from_index: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Chained audit records with index >= from_index, ascending."""
        a = t.audit.c
        stmt = select(t.audit).where(a.idx >= from_index).order_by(a.idx).limit(limit)
        return [
            AuditRecord(
                index=r.idx,
                time=r.time,
                action=r.action,
                subject=None if r.subject is None else bytes(r.subject),
                seq=r.seq,
                digest=None if r.digest is None else bytes(r.digest),
                detail=json.loads(r.detail),
                prev_hash=bytes(r.prev_hash),
                hash=bytes(r.hash),
            )
            for r in self._read(stmt)
        ]

    def audit_head(self) -> tuple[int, bytes]:
        """(next index, hash of the last record) as the store tracks it."""
        h = t.audit_head.c
        row = self._read(select(h.next_index, h.last_hash).where(h.id == 1))[0]
        return row[0], bytes(row[1])

    def archived(self, subject: bytes | None = None) -> list[tuple[bytes, int, bytes, bytes]]:
        """Losing-branch events as (subject, seq, digest, raw), in archive order."""
        a = t.archived_events.c
        stmt = select(a.subject, a.seq, a.digest, a.raw).order_by(a.id)
        if subject is not None:
            stmt = stmt.where(a.subject == subject)
        return [(bytes(r[0]), r[1], bytes(r[2]), bytes(r[3])) for r in self._read(stmt)]

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()
