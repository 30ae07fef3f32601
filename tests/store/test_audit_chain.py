"""The audit chain format: records hash by the documented rule, links hold, stored chains still verify."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.canonical_json import canonical_json
from keyreg.core.errors import MalformedEvent
from keyreg.core.hashing import keccak
from keyreg.store.audit import GENESIS, chain, chain_rows, jsonable, verify_audit
from keyreg.store.base import AuditEntry, AuditRecord
from keyreg.store.memory import MemoryStore

json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12) | st.binary(max_size=8)
details = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        json_leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    ),
    max_size=4,
)
entries = st.builds(
    AuditEntry,
    action=st.text(min_size=1, max_size=12),
    subject=st.none() | st.binary(min_size=32, max_size=32),
    seq=st.none() | st.integers(0, 2**64 - 1),
    digest=st.none() | st.binary(min_size=32, max_size=32),
    detail=details,
)


def _hx(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()


@settings(max_examples=60, deadline=None)
@given(st.lists(entries, min_size=1, max_size=4), st.integers(0, 2**40), st.integers(0, 2**45))
def test_chain_hashes_by_the_documented_rule(items: list[AuditEntry], start: int, time: int) -> None:
    prev = GENESIS
    records = chain(items, start, GENESIS, time)
    for i, record in enumerate(records):
        e = items[i]
        assert record.prev_hash == prev
        assert record.index == start + i
        assert record.detail == jsonable(e.detail)
        assert record.detail is not e.detail  # a copy: the stored record never aliases the caller's dict
        # The rule as docs/storage.md states it, written out here rather than through record_hash.
        rule = {
            "prev_hash": _hx(prev),
            "index": start + i,
            "time": time,
            "action": e.action,
            "subject": _hx(e.subject),
            "seq": e.seq,
            "digest": _hx(e.digest),
            "detail": jsonable(e.detail),
        }
        assert record.hash == keccak(canonical_json(rule))
        prev = record.hash

    rows, last = chain_rows(items, start, GENESIS, time)  # the SQL store's form: same hashes, same details
    assert rows == [
        (x.index, x.time, x.action, x.subject, x.seq, x.digest, canonical_json(x.detail).decode(), x.prev_hash, x.hash)
        for x in records
    ]
    assert last == records[-1].hash


def test_memory_store_chain_verifies_and_detects_tampering() -> None:
    store = MemoryStore(clock=lambda: 1.5)
    store.append_audit([AuditEntry("key-op", None, None, None, {"n": i}) for i in range(5)])
    assert verify_audit(store, store.audit_head()).ok
    records = store.audit_records()
    assert records == chain([AuditEntry("key-op", None, None, None, {"n": i}) for i in range(5)], 0, GENESIS, 1500)
    forged = records[2].__class__(**{**{f: getattr(records[2], f) for f in records[2].__slots__}, "detail": {"n": 9}})
    store._audit_records[2] = forged
    report = verify_audit(store)
    assert not report.ok
    assert "record 2" in report.problems[0]


def test_chain_rows_in_the_sqlite_form() -> None:
    """Blobs as bytearray hash the same; details that compare equal keep their own JSON."""
    items = [
        AuditEntry("accept", b"\x01" * 32, 3, b"\x02" * 32, {"source": "api", "kind": "update"}),
        AuditEntry("accept", b"\x01" * 32, 4, b"\x03" * 32, {"source": "api", "kind": "update"}),
        AuditEntry("reject", None, None, None, {"source": "api", "code": "bad"}),
        AuditEntry("key-op", None, None, None, {"n": 1}),
        AuditEntry("key-op", None, None, None, {"n": True}),
        AuditEntry("key-op", None, None, None, {"n": "1"}),
    ]
    rows, last = chain_rows(items, 7, GENESIS, 1234)
    fast, fast_last = chain_rows(items, 7, GENESIS, 1234, bytearray)
    assert fast == rows
    assert fast_last == last
    assert type(fast_last) is bytes
    assert all(type(v) is not bytes for r in fast for v in r)
    assert [r[6] for r in rows[3:]] == ['{"n":1}', '{"n":true}', '{"n":"1"}']
    assert [r[8] for r in rows] == [x.hash for x in chain(items, 7, GENESIS, 1234)]


@pytest.mark.parametrize("detail", [{"n": 1.0}, {"nested": {"a": [float("nan")]}}, {"text": "\ud800"}])
def test_a_detail_without_a_canonical_form_is_refused(detail: dict[str, object]) -> None:
    """Nothing half-written: the store's transaction sees the error before any row exists."""
    store = MemoryStore(clock=lambda: 1.5)
    with pytest.raises(MalformedEvent):
        store.append_audit(
            [AuditEntry("key-op", None, None, None, {"n": 1}), AuditEntry("key-op", None, None, None, detail)]
        )
    assert store.audit_records() == []
    with pytest.raises(MalformedEvent):
        chain_rows([AuditEntry("key-op", None, None, None, detail)], 0, GENESIS, 1)


# Written by the encoder before the %-formatted one (2026-11-28): chains already stored in
# databases carry these hashes, so every encoder must reproduce them and verify_audit accept them.
_GOLDEN_ENTRIES = [
    AuditEntry("accept", bytes(range(32)), 0, bytes(range(32, 64)), {"source": "gossip", "kind": "inception"}),
    AuditEntry("accept", bytes(range(32)), 1, bytes(range(64, 96)), {"source": "sync", "kind": "rotation"}),
    AuditEntry(
        "reject",
        None,
        None,
        b"\xff" * 32,
        {"source": "api", "code": "malformed", "message": 'bad "quote" \u00e9\u2028\x01'},
    ),
    AuditEntry(
        "reject",
        b"\x07" * 32,
        2**64 - 1,
        None,
        {"source": "api", "code": "stale", "n": 2**70, "ok": True, "none": None},
    ),
    AuditEntry(
        "duplicity",
        b"\x07" * 32,
        5,
        b"\x08" * 32,
        {"first": b"\x01\x02", "second": (b"\x03", 4), "nested": {"b": [1, "x"], "a": 1.5}},
    ),
    AuditEntry("switch", b"\x07" * 32, 3, b"\x09" * 32, {"dropped": 2}),
    AuditEntry("anchor", b"\x07" * 32, 3, b"\x09" * 32, {"mode": "direct", "block": 12345}),
    AuditEntry("key-op", None, None, None, {}),
    AuditEntry("key-op", None, None, None, {"\u00fc": "\u65e5\u672c", "z": -1, "a": False}),
]
_GOLDEN_HASHES = [
    "3b11e30499be98f3311299e35159890d4f84f3b1677046e16b3bd317faa1df18",
    "c70a01455161bb150624cd38ce1af7252ff88e3366891f72513f5885d2679350",
    "a1cd5c52b06f8faada9eb701a498cb98b9ba808b1dc1eba40fd318344ba67c75",
    "1f1d39888f76c45855963a618f5e8d16726338b2756071f626b131f36994cdaa",
    "8c8f9f331299355908733b39bac31f3484550954c6a0814ada620178b5f47cad",
    "56677dc01904ded77a322fa3bb8ca2f03b124a90d1ca0756d83f51b80c1e43bb",
    "305d2dd1ccb7ba28e16c6ac2d5e3599200bed1c4d993fae26e88373c6fa1371c",
    "c32753e76c495b3ddfd0e2a7dbe363142b876a6e223bc84a73095c2771b1abde",
    "8f0e6bb41aadd7e63a83c6d699cf094221f0b3a82951009b6bc998b76ab472d5",
]


def test_chains_written_by_the_previous_encoder_still_hash_and_verify_the_same() -> None:
    time = 1_764_000_000_000
    hashes = [bytes.fromhex(h) for h in _GOLDEN_HASHES]
    # Entry 4 holds a float, which the registry never writes and canonical JSON (integers only) now
    # refuses; every other record hashes as before, continuing from the stored hash before it.
    assert [r.hash for r in chain(_GOLDEN_ENTRIES[:4], 0, GENESIS, time)] == hashes[:4]
    with pytest.raises(MalformedEvent):
        chain(_GOLDEN_ENTRIES[4:5], 4, hashes[3], time)
    rows, last = chain_rows(_GOLDEN_ENTRIES[5:], 5, hashes[4], time)
    assert [r[8] for r in rows] == hashes[5:]
    assert last == hashes[-1]

    # The records as the previous code stored them (its hashes, above), read back by the verifier.
    written = [
        AuditRecord(i, time, e.action, e.subject, e.seq, e.digest, jsonable(e.detail), prev, h)
        for i, (e, h, prev) in enumerate(zip(_GOLDEN_ENTRIES, hashes, [GENESIS, *hashes[:-1]], strict=True))
    ]

    class Written:
        def audit_records(self, from_index: int = 0, limit: int = 1000) -> list[AuditRecord]:
            return written[from_index : from_index + limit]

    report = verify_audit(Written(), (len(written), hashes[-1]))
    assert report.problems == ["audit record 4: its content has no canonical JSON form (altered)"]
    written.pop(4)
    written[4:] = chain(_GOLDEN_ENTRIES[5:], 4, hashes[3], time)  # the chain without the float entry
    assert verify_audit(Written()).ok
