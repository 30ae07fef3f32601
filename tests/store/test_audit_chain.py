"""The audit chain format: the store's fast hashing equals the documented rule, and links hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.store.audit import GENESIS, chain, chain_rows, chain_with_json, jsonable, record_hash, verify_audit
from node.store.base import AuditEntry, AuditRecord
from node.store.memory import MemoryStore

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


@settings(max_examples=60, deadline=None)
@given(st.lists(entries, min_size=1, max_size=4), st.integers(0, 2**40), st.integers(0, 2**45))
def test_fast_chain_hash_equals_the_documented_rule(items: list[AuditEntry], start: int, time: int) -> None:
    prev = GENESIS
    for i, (record, _detail_json) in enumerate(chain_with_json(items, start, GENESIS, time)):
        e = items[i]
        assert record.prev_hash == prev
        assert record.index == start + i
        assert record.detail == jsonable(e.detail)
        assert record.hash == record_hash(prev, start + i, time, e.action, e.subject, e.seq, e.digest, record.detail)
        prev = record.hash

    rows, last = chain_rows(items, start, GENESIS, time)  # the SQL store's form: same hashes, same details
    records = chain_with_json(items, start, GENESIS, time)
    assert [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows] == [
        (x.index, x.time, x.action, x.subject, x.seq, x.digest, detail_json, x.prev_hash, x.hash)
        for x, detail_json in records
    ]
    assert last == records[-1][0].hash


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


flat_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8), flat_leaf | st.floats(allow_nan=False) | st.lists(flat_leaf, max_size=2))
    | st.lists(st.text(max_size=6), max_size=4)
    | st.tuples(st.text(max_size=6), st.text(max_size=6))
    | st.lists(flat_leaf, max_size=3)
    | flat_leaf
)
def test_fast_canonical_json_equals_the_encoder(value: object) -> None:
    from node.store.serialize import canonical_flat, canonical_text

    assert canonical_flat(value) == canonical_text(value)


def test_chain_rows_in_the_sqlite_form_and_cached_details() -> None:
    """Blobs as bytearray hash the same; the detail JSON cache never mixes up equal-comparing values."""
    items = [
        AuditEntry("accept", b"\x01" * 32, 3, b"\x02" * 32, {"source": "api", "kind": "update"}),
        AuditEntry("accept", b"\x01" * 32, 4, b"\x03" * 32, {"source": "api", "kind": "update"}),
        AuditEntry("reject", None, None, None, {"source": "api", "code": "bad"}),
        AuditEntry("key-op", None, None, None, {"n": 1}),
        AuditEntry("key-op", None, None, None, {"n": True}),
        AuditEntry("key-op", None, None, None, {"n": 1.0}),
        AuditEntry("key-op", None, None, None, {"n": "1"}),
    ]
    rows, last = chain_rows(items, 7, GENESIS, 1234)
    fast, fast_last = chain_rows(items, 7, GENESIS, 1234, bytearray)
    assert fast == rows
    assert fast_last == last
    assert type(fast_last) is bytes
    assert all(type(v) is not bytes for r in fast for v in r)
    assert [r[6] for r in rows[3:]] == ['{"n":1}', '{"n":true}', '{"n":1.0}', '{"n":"1"}']
    again, _ = chain_rows(items, 7, GENESIS, 1234)  # now from the cache
    assert again == rows
    records = chain_with_json(items, 7, GENESIS, 1234)
    assert [r[8] for r in rows] == [x.hash for x, _ in records]


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
    rows, last = chain_rows(_GOLDEN_ENTRIES, 0, GENESIS, time)
    assert [r[8].hex() for r in rows] == _GOLDEN_HASHES
    assert last.hex() == _GOLDEN_HASHES[-1]
    assert [r.hash.hex() for r in chain(_GOLDEN_ENTRIES, 0, GENESIS, time)] == _GOLDEN_HASHES

    # The records as the previous code stored them (its hashes, above), read back by the verifier.
    hashes = [bytes.fromhex(h) for h in _GOLDEN_HASHES]
    written = [
        AuditRecord(i, time, e.action, e.subject, e.seq, e.digest, jsonable(e.detail), prev, h)
        for i, (e, h, prev) in enumerate(zip(_GOLDEN_ENTRIES, hashes, [GENESIS, *hashes[:-1]], strict=True))
    ]

    class Written:
        def audit_records(self, from_index: int = 0, limit: int = 1000) -> list[AuditRecord]:
            return written[from_index : from_index + limit]

    report = verify_audit(Written(), (len(written), hashes[-1]))
    assert report.ok, report.problems
