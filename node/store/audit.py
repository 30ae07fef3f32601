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
from ..core.hashing import _new_keccak, keccak
from .base import AuditEntry, AuditRecord
from .serialize import _quote, canonical_scalar, canonical_text, flat_json

GENESIS = b"\x00" * 32
_js = canonical_scalar


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
    return _chain(entries, next_index, prev_hash, time, bytes, True)[2]


def chain_with_json(
    entries: Iterable[AuditEntry], next_index: int, prev_hash: bytes, time: int
) -> list[tuple[AuditRecord, str]]:
    """:func:`chain`, also returning each record's canonical detail JSON (the store's column)."""
    details, _, records = _chain(entries, next_index, prev_hash, time, bytes, True)
    return list(zip(records, details, strict=True))  # type: ignore[arg-type]


AuditRow = tuple[int, int, str, Any, int | None, Any, str, Any, Any]  # blobs as bytes or the driver's form


def chain_rows(
    entries: Iterable[AuditEntry],
    next_index: int,
    prev_hash: bytes,
    time: int,
    blob: Callable[[bytes], Any] = bytes,
) -> tuple[list[AuditRow], bytes]:
    """The chained records as the store's table rows (idx, time, action, subject, seq, digest,
    detail JSON, prev_hash, hash), plus the last hash; no AuditRecord objects.

    ``blob`` turns the row's bytes values into the driver's cheap form (``node.store.sql._Values``);
    the returned last hash is always bytes.
    """
    rows, last, _ = _chain(entries, next_index, prev_hash, time, blob, False)
    return rows, last


# The hashed text of a record, members in sorted order around the detail's canonical JSON. The
# common form (subject, int seq and digest all present: every accept) is built in _chain by one
# f-string (about half the cost of the equivalent %-format); the general form takes each member
# already rendered as JSON. A test holds both equal to record_hash (the verifier's
# dumps_canonical) and to hashes written by earlier versions.
_RECORD = '{"action":%s,"detail":%s,"digest":%s,"index":%d,"prev_hash":"0x%s","seq":%s,"subject":%s,"time":%d}'


def _chain(
    entries: Iterable[AuditEntry],
    next_index: int,
    prev_hash: bytes,
    time: int,
    blob: Callable[[bytes], Any],
    want_records: bool,
) -> tuple[list[AuditRow], bytes, list[AuditRecord]]:
    """Chain entries from (next_index, prev_hash): table rows and the last hash, or (if
    ``want_records``) each record's detail JSON, the last hash and the AuditRecords.

    The stores write one record per event, so this loop is the audit chain's hot path: each detail
    is encoded once (all-str details from a cache) and the hashed text is formatted around it.
    """
    rows: list[AuditRow] = []
    records: list[AuditRecord] = []
    t = int(time)
    index = int(next_index)
    q = _quote
    details = _DETAIL_JSON
    new_hash = _new_keccak
    new_record = AuditRecord
    prev_blob = blob(prev_hash)
    time_tail = f',"time":{t}}}'  # the text's last member, the same for every record of the call
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
            detail = jsonable(detail)
            detail_json = canonical_text(detail)
        elif want_records:
            detail = detail.copy()  # an exact dict, already plain JSON; a copy, as jsonable() would make
        action, subject, seq, digest = e.action, e.subject, e.seq, e.digest
        if subject is not None and digest is not None and type(seq) is int and type(action) is str:
            # index, seq and t are exact ints, so {} renders them as %d would.
            text = (
                f'{{"action":{q(action)},"detail":{detail_json},"digest":"0x{digest.hex()}","index":{index},'
                f'"prev_hash":"0x{prev_hash.hex()}","seq":{seq},"subject":"0x{subject.hex()}"{time_tail}'
            )
        else:
            text = _RECORD % (
                _js(action),
                detail_json,
                "null" if digest is None else '"0x' + digest.hex() + '"',
                index,
                prev_hash.hex(),
                _js(seq),
                "null" if subject is None else '"0x' + subject.hex() + '"',
                t,
            )
        hasher = new_hash()
        hasher.update(text.encode())
        h = hasher.digest()
        if want_records:
            records.append(new_record(index, t, action, subject, seq, digest, detail, prev_hash, h))
            rows.append(detail_json)  # type: ignore[arg-type]  # the records' detail JSON, see _chain's doc
            prev_hash = h
        else:
            h_blob = blob(h)
            rows.append(
                (
                    index,
                    t,
                    action,
                    None if subject is None else blob(subject),
                    seq,
                    None if digest is None else blob(digest),
                    detail_json,
                    prev_blob,
                    h_blob,
                )
            )
            prev_hash, prev_blob = h, h_blob
        index += 1
    return rows, prev_hash, records


# Detail JSON by the detail's items (dicts of str -> str only), for _chain.
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
