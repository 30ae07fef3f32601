"""The audit chain: append-only records, each committing to the one before it.

Record ``i`` has ``hash_i = keccak256(canonical_json({prev_hash, index, time, action, subject,
seq, digest, detail}))`` where ``prev_hash`` is ``hash_{i-1}`` (32 zero bytes for index 0), bytes
are ``0x``-hex, absent values are ``null``, and canonical JSON is the codec's (sorted keys, no
whitespace, UTF-8). Rewriting, dropping or reordering any record breaks every later hash, so
:func:`verify_audit` finds it; truncating the tail is caught by comparing the stored head.

Chaining is pure (this module); each store writes the records inside the same transaction as the
change they describe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.codec import dumps_canonical
from ..core.hashing import _keccak, keccak
from .base import AuditEntry, AuditRecord
from .serialize import _quote, canonical_scalar, canonical_text, flat_json

GENESIS = b"\x00" * 32


def jsonable(value: Any) -> Any:
    """Normalise an audit detail to plain JSON (bytes as 0x-hex, tuples as lists, keys as str)."""
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
        dumps_canonical(
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
    """Turn entries into chained records continuing from (next_index, prev_hash)."""
    return [r for r, _ in chain_with_json(entries, next_index, prev_hash, time)]


_js = canonical_scalar


def chain_with_json(
    entries: Iterable[AuditEntry], next_index: int, prev_hash: bytes, time: int
) -> list[tuple[AuditRecord, str]]:
    """:func:`chain`, also returning each record's canonical detail JSON (the store's column).

    The hashed text is assembled around that detail JSON, members in sorted order, so the detail
    is encoded once; a test holds it equal to :func:`record_hash`.
    """
    out: list[tuple[AuditRecord, str]] = []
    for e in entries:
        detail_json = flat_json(e.detail) if type(e.detail) is dict else None
        if detail_json is not None:
            detail = dict(e.detail)  # already plain JSON (the registry's details); jsonable() would copy it too
        else:
            detail = jsonable(e.detail)
            detail_json = canonical_text(detail)
        text = (
            f'{{"action":{_js(e.action)},"detail":{detail_json},"digest":{_js(_hx(e.digest))},'
            f'"index":{int(next_index)},"prev_hash":"0x{prev_hash.hex()}","seq":{_js(e.seq)},'
            f'"subject":{_js(_hx(e.subject))},"time":{int(time)}}}'
        )
        h = keccak(text.encode())
        out.append(
            (AuditRecord(next_index, time, e.action, e.subject, e.seq, e.digest, detail, prev_hash, h), detail_json)
        )
        prev_hash = h
        next_index += 1
    return out


AuditRow = tuple[int, int, str, Any, int | None, Any, str, Any, Any]  # blobs as bytes or the driver's form


def chain_rows(
    entries: Iterable[AuditEntry],
    next_index: int,
    prev_hash: bytes,
    time: int,
    blob: Callable[[bytes], Any] = bytes,
) -> tuple[list[AuditRow], bytes]:
    """:func:`chain_with_json` as the store's table rows (idx, time, action, subject, seq, digest,
    detail JSON, prev_hash, hash), plus the last hash; no AuditRecord objects (a test holds the
    hashes equal). The store writes one of these per event, so this is its audit hot path.

    ``blob`` turns the row's bytes values into the driver's cheap form (``node.store.sql._Values``);
    the returned last hash is always bytes.
    """
    rows: list[AuditRow] = []
    t = int(time)
    tail = f',"time":{t}}}'
    q = _quote
    details = _DETAIL_JSON
    prev_blob = blob(prev_hash)
    for e in entries:
        detail = e.detail
        detail_json = None
        if type(detail) is dict:
            items = tuple(detail.items())
            for k, v in items:
                if type(k) is not str or type(v) is not str:
                    detail_json = flat_json(detail)
                    break
            else:
                # All-str details (the registry's {"source", "kind"}) repeat: their JSON is cached by
                # value. Exact str only: equal items then mean equal JSON (1 == True, 1 == 1.0).
                detail_json = details.get(items)
                if detail_json is None:
                    detail_json = flat_json(detail)
                    if detail_json is not None and len(details) < 4096:
                        details[items] = detail_json
        if detail_json is None:
            detail_json = canonical_text(jsonable(detail))
        subject, seq, digest = e.subject, e.seq, e.digest
        text = (
            '{"action":' + q(e.action) + ',"detail":' + detail_json
            + (',"digest":null' if digest is None else ',"digest":"0x' + digest.hex() + '"')
            + f',"index":{next_index},"prev_hash":"0x{prev_hash.hex()}","seq":'
            + ("null" if seq is None else int.__repr__(seq))
            + (',"subject":null' if subject is None else ',"subject":"0x' + subject.hex() + '"')
            + tail
        )  # fmt: skip
        h = _keccak(text.encode()).digest()
        h_blob = blob(h)
        rows.append(
            (
                next_index,
                t,
                e.action,
                None if subject is None else blob(subject),
                seq,
                None if digest is None else blob(digest),
                detail_json,
                prev_blob,
                h_blob,
            )
        )
        prev_hash, prev_blob = h, h_blob
        next_index += 1
    return rows, prev_hash


# Detail JSON by the detail's items (dicts of str -> str only), for chain_rows.
_DETAIL_JSON: dict[tuple[tuple[str, str], ...], str] = {}


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
        h = record_hash(r.prev_hash, r.index, r.time, r.action, r.subject, r.seq, r.digest, r.detail)
        if h != r.hash:
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
