"""``db check``: prove a database consistent by replaying it through the core.

For every subject: its current-branch events run 0..n without gaps; each stored event decodes,
re-encodes to the same canonical bytes, has the stored digest and kind, and validates through
:func:`keyreg.core.log.apply_event` on top of the previous one; the stored head row, derived state
JSON and ``keys`` rows equal what the replay gives. Events without a subject row, archived events
or evidence whose digests do not match their events, and a broken audit chain are reported too.
(The disputed flag is fork-choice state, not a function of one branch: it is not re-derived.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from ..core.codec import decode_event, encode_event
from ..core.eip712 import event_digest
from ..core.errors import KeyregError
from ..core.limits import DEFAULT_LIMITS, Limits
from ..core.log import SubjectState, apply_event
from ..core.records import Domain
from . import schema as t
from .audit import AuditReport, verify_audit
from .serialize import clamp64, key_row, state_from_json, state_to_json
from .sql import SqlStore

MAX_PROBLEMS = 100


@dataclass
class CheckReport:
    """What ``check_database`` found; ``ok`` is False if any problem was found."""

    url: str
    subjects: int = 0
    events: int = 0
    archived: int = 0
    evidence: int = 0
    problems: list[str] = field(default_factory=list)
    audit: AuditReport = field(default_factory=AuditReport)

    @property
    def ok(self) -> bool:
        return not self.problems and self.audit.ok

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "subjects": self.subjects,
            "events": self.events,
            "archived": self.archived,
            "evidence": self.evidence,
            "problems": self.problems,
            "audit": self.audit.to_dict(),
        }


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


Progress = Callable[[int, int], None]


def check_store(
    store: SqlStore, domain: Domain, limits: Limits = DEFAULT_LIMITS, progress: Progress | None = None
) -> CheckReport:
    """Check an open SQL store (see the module docstring); ``progress(done, total)`` per subject."""
    report = CheckReport(_redact(store.url))
    e, s = t.events.c, t.subjects.c
    with store.engine.connect() as conn:
        stored = {bytes(r.subject): r for r in conn.execute(select(s.subject, s.seq, s.head, s.revoked_at, s.state))}
        stored_keys: dict[bytes, dict[str, dict[str, Any]]] = {}
        for r in conn.execute(select(t.keys)):
            stored_keys.setdefault(bytes(r.subject), {})[r.key_id] = dict(r._mapping)
        logged = [bytes(r[0]) for r in conn.execute(select(e.subject).distinct())]
        for subject in sorted(set(logged) - set(stored)):
            report.problem(f"subject 0x{subject.hex()}: events are stored but there is no subject row")
        for subject, row in stored.items():
            if progress is not None:
                progress(report.subjects, len(stored))
            report.subjects += 1
            rows = conn.execute(select(e.seq, e.digest, e.kind, e.raw).where(e.subject == subject).order_by(e.seq))
            state = _replay_subject(report, domain, limits, subject, rows)
            _compare_derived(report, subject, row, state, stored_keys.get(subject, {}))
        report.archived = conn.execute(select(func.count()).select_from(t.archived_events)).scalar_one()
    for subject, seq, digest, raw in store.archived():
        try:
            signed = decode_event(raw, limits)
        except KeyregError as exc:
            report.problem(f"archived event 0x{subject.hex()} seq {seq}: does not decode: {exc.message}")
            continue
        if event_digest(domain, signed.event) != digest or signed.event.seq != seq:
            report.problem(f"archived event 0x{subject.hex()} seq {seq}: digest or seq does not match its event")
    for ev in store.evidence():
        report.evidence += 1
        for signed, digest in ((ev.first, ev.first_digest), (ev.second, ev.second_digest)):
            if event_digest(domain, signed.event) != digest:
                report.problem(f"evidence at 0x{ev.subject.hex()} seq {ev.seq}: digest does not match its event")
    report.audit = verify_audit(store, store.audit_head())
    return report


def _replay_subject(
    report: CheckReport, domain: Domain, limits: Limits, subject: bytes, rows: Any
) -> SubjectState | None:
    state: SubjectState | None = None
    where = f"subject 0x{subject.hex()}"
    for want, r in enumerate(rows):
        report.events += 1
        if r.seq != want:
            report.problem(f"{where}: seq {r.seq} stored where {want} was expected (gap)")
            return None
        raw = bytes(r.raw)
        try:
            signed = decode_event(raw, limits)
            acc = apply_event(state, signed, domain, limits)
        except KeyregError as exc:
            report.problem(f"{where} seq {r.seq}: stored event does not validate: {exc.code}: {exc.message}")
            return None
        if encode_event(signed) != raw:
            report.problem(f"{where} seq {r.seq}: stored bytes are not the canonical encoding")
        if acc.subject != subject:
            report.problem(f"{where} seq {r.seq}: event belongs to subject 0x{acc.subject.hex()}")
        if acc.digest != bytes(r.digest):
            report.problem(f"{where} seq {r.seq}: stored digest does not match the event")
        if r.kind != signed.event.kind:
            report.problem(f"{where} seq {r.seq}: stored kind {r.kind!r}, event is {signed.event.kind!r}")
        state = acc.state
    return state


def _compare_derived(
    report: CheckReport, subject: bytes, row: Any, state: SubjectState | None, keys: dict[str, dict[str, Any]]
) -> None:
    where = f"subject 0x{subject.hex()}"
    if state is None:
        report.problem(f"{where}: no valid log to derive the head state from")
        return
    if row.seq != state.seq or bytes(row.head) != state.head:
        report.problem(f"{where}: head row says seq {row.seq}, the log replays to seq {state.seq}")
    if row.revoked_at != clamp64(state.revoked_at):
        report.problem(f"{where}: head row revoked_at differs from the replay")
    try:
        if state_from_json(row.state) != state or row.state != state_to_json(state):
            report.problem(f"{where}: stored derived state differs from the replay")
    except (ValueError, KeyError, TypeError) as exc:
        report.problem(f"{where}: stored derived state is unreadable: {exc}")
    want = {kid: key_row(subject, rec) for kid, rec in state.keys.items()}
    if set(want) != set(keys):
        report.problem(f"{where}: key rows {sorted(keys)} differ from replayed keys {sorted(want)}")
        return
    for kid, w in want.items():
        got = {c: (bytes(v) if isinstance(v, memoryview) else v) for c, v in keys[kid].items()}
        if got != w:
            report.problem(f"{where} key {kid!r}: key row differs from the replay")


def check_database(
    url: str, domain: Domain, limits: Limits = DEFAULT_LIMITS, progress: Progress | None = None
) -> CheckReport:
    """Open the database at ``url`` and check it (see the module docstring)."""
    store = SqlStore(url, limits=limits)
    try:
        return check_store(store, domain, limits, progress)
    finally:
        store.close()
