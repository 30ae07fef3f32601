"""The audit chain: append-only records, each committing to the one before it.

Record ``i`` has ``hash_i = keccak256(canonical_json({prev_hash, index, time, action, subject,
seq, digest, detail}))`` where ``prev_hash`` is ``hash_{i-1}`` (32 zero bytes for index 0), bytes
are ``0x``-hex, absent values are ``null``, and canonical JSON is node/core/canonical_json.py's
(sorted keys, no whitespace, UTF-8, integers only). Rewriting, dropping or reordering any record
breaks every later hash, so :func:`verify_audit` finds it; truncating the tail is caught by
comparing the stored head.

Chaining is pure (this module); each store writes the records inside the same transaction as the
change they describe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.canonical_json import canonical_json, canonical_text
from ..core.errors import MalformedEvent
from ..core.hashing import keccak
from .base import AuditEntry, AuditRecord

GENESIS = b"\x00" * 32


def jsonable(value: Any) -> Any:
    """Normalise an audit detail to plain JSON (bytes as 0x-hex, tuples as lists, keys as str).

    Floats pass through so that :func:`canonical_json` refuses them: the audit chain has integers only.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def _hx(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()


def record_hash(
    prev_hash: bytes,
    index: int,
    time: int,
    action: str,
    subject: bytes | None,
    seq: int | None,
    digest: bytes | None,
    detail: dict[str, Any],
) -> bytes:
    """The hash of one audit record (see the module docstring)."""
    return keccak(
        canonical_json(
            {
                "prev_hash": _hx(prev_hash),
                "index": index,
                "time": time,
                "action": action,
                "subject": _hx(subject),
                "seq": seq,
                "digest": _hx(digest),
                "detail": detail,
            }
        )
    )


def chain(entries: Iterable[AuditEntry], next_index: int, prev_hash: bytes, time: int) -> list[AuditRecord]:
    """Turn entries into chained records continuing from (next_index, prev_hash).

    MalformedEvent if a detail has no canonical JSON form (a float, a lone surrogate).
    """
    records = []
    t = int(time)
    for index, e in enumerate(entries, start=int(next_index)):
        detail = jsonable(e.detail)
        h = record_hash(prev_hash, index, t, e.action, e.subject, e.seq, e.digest, detail)
        records.append(AuditRecord(index, t, e.action, e.subject, e.seq, e.digest, detail, prev_hash, h))
        prev_hash = h
    return records


AuditRow = tuple[int, int, str, Any, int | None, Any, str, Any, Any]  # blobs as bytes or the driver's form


def chain_rows(
    entries: Iterable[AuditEntry],
    next_index: int,
    prev_hash: bytes,
    time: int,
    blob: Callable[[bytes], Any] = bytes,
) -> tuple[list[AuditRow], bytes]:
    """The chained records as the store's table rows (idx, time, action, subject, seq, digest,
    detail JSON, prev_hash, hash), plus the last hash.

    ``blob`` turns the row's bytes values into the driver's form (``keyreg.store.sql._Values``);
    the returned last hash is always bytes.
    """
    rows: list[AuditRow] = []
    for r in chain(entries, next_index, prev_hash, time):
        rows.append(
            (
                r.index,
                r.time,
                r.action,
                None if r.subject is None else blob(r.subject),
                r.seq,
                None if r.digest is None else blob(r.digest),
                canonical_text(r.detail),
                blob(r.prev_hash),
                blob(r.hash),
            )
        )
        prev_hash = r.hash
    return rows, prev_hash


class AuditSource(Protocol):
    def audit_records(self, from_index: int = 0, limit: int = 1000) -> list[AuditRecord]: ...


def iter_audit(store: AuditSource, page: int = 5000) -> Iterator[AuditRecord]:
    """Every audit record of a store, in index order, read a page at a time."""
    start = 0
    while True:
        rows = store.audit_records(start, page)
        yield from rows
        if len(rows) < page:
            return
        start = rows[-1].index + 1


@dataclass
class AuditReport:
    """The outcome of recomputing an audit chain."""

    ok: bool = True
    records: int = 0
    head_index: int | None = None
    head_hash: bytes = GENESIS
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "head_index": self.head_index,
            "head_hash": "0x" + self.head_hash.hex(),
            "problems": self.problems,
        }


def verify_audit(store: AuditSource, expected_head: tuple[int, bytes] | None = None) -> AuditReport:
    """Recompute the chain: indexes without gaps, each prev_hash linked, each hash recomputed.

    ``expected_head`` (next index, last hash) as the store tracks it detects a truncated tail.
    Stops listing problems after 20.
    """
    report = AuditReport()
    prev, want = GENESIS, 0
    for r in iter_audit(store):
        if r.index != want:
            report.problems.append(f"audit record index {r.index} where {want} was expected (gap or reorder)")
        if r.prev_hash != prev:
            report.problems.append(f"audit record {r.index}: prev_hash does not match the hash of record {r.index - 1}")
        try:
            h: bytes | None = record_hash(r.prev_hash, r.index, r.time, r.action, r.subject, r.seq, r.digest, r.detail)
        except MalformedEvent:
            h = None
            report.problems.append(f"audit record {r.index}: its content has no canonical JSON form (altered)")
        if h is not None and h != r.hash:
            report.problems.append(f"audit record {r.index}: stored hash does not match its content (altered)")
        prev, want = r.hash, r.index + 1
        report.records += 1
        report.head_index, report.head_hash = r.index, r.hash
        if len(report.problems) >= 20:
            break
    if expected_head is not None and not report.problems and (want, prev) != expected_head:
        report.problems.append(
            f"audit head says next index {expected_head[0]}, the records end before index {want} (truncated?)"
        )
    report.ok = not report.problems
    return report
