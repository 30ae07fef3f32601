"""The audit chain's hot loop against a reference built from the documented rule, record for record."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.store.audit import chain, chain_rows, jsonable, record_hash
from node.store.base import AuditEntry, AuditRecord

# Mostly the registry's shape (subject, int seq, digest, all-str detail: the f-string path), with
# the other shapes mixed in (the %-format path), so both forms and their cache interleave.
_str_detail = st.dictionaries(st.sampled_from(["source", "kind", "code", "é"]), st.text(max_size=6), max_size=3)
_any_detail = st.dictionaries(st.text(max_size=4), st.none() | st.booleans() | st.integers() | st.text(max_size=4))
_entries = st.builds(
    AuditEntry,
    action=st.sampled_from(["accept", "reject", 'we"ird\u2028']),
    subject=st.none() | st.binary(min_size=32, max_size=32),
    seq=st.none() | st.integers(0, 2**64 - 1) | st.booleans(),
    digest=st.none() | st.binary(min_size=32, max_size=32),
    detail=_str_detail | _any_detail,
)


def _reference(entries: list[AuditEntry], start: int, prev: bytes, time: int) -> list[AuditRecord]:
    out = []
    for i, e in enumerate(entries, start=start):
        detail = jsonable(e.detail)
        h = record_hash(prev, i, time, e.action, e.subject, e.seq, e.digest, detail)
        out.append(AuditRecord(i, time, e.action, e.subject, e.seq, e.digest, detail, prev, h))
        prev = h
    return out


_hashes = st.binary(min_size=32, max_size=32)


@settings(max_examples=150, deadline=None)
@given(st.lists(_entries, max_size=6), st.integers(0, 2**40), _hashes, st.integers(0, 2**45))
def test_chain_equals_the_reference_records(entries: list[AuditEntry], start: int, prev: bytes, time: int) -> None:
    records = chain(entries, start, prev, time)
    assert records == _reference(entries, start, prev, time)
    assert all(type(r) is AuditRecord for r in records)
    for r, e in zip(records, entries, strict=True):
        assert r.detail is not e.detail  # a copy: the stored record never aliases the caller's dict
    rows, last = chain_rows(entries, start, prev, time)
    assert [row[8] for row in rows] == [r.hash for r in records]
    assert last == (records[-1].hash if records else prev)
