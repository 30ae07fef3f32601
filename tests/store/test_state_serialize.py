"""SubjectState <-> JSON column: an exact, deterministic round trip (property tests)."""

from __future__ import annotations

import json
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core.log import KeyRecord, SubjectState
from keyreg.core.records import ALGORITHMS, PublishedKey
from keyreg.store.serialize import I64_MAX, key_row, key_values, state_from_json, state_to_json, state_to_obj

u64 = st.integers(0, 2**64 - 1)
b32 = st.binary(min_size=32, max_size=32)
b20 = st.binary(min_size=20, max_size=20)
text = st.text(max_size=40)  # any unicode: JSON must carry it exactly
opt_u64 = st.none() | u64


@st.composite
def key_records(draw: st.DrawFn, key_id: str) -> KeyRecord:
    key = PublishedKey(
        key_id=key_id,
        alg=draw(st.sampled_from(ALGORITHMS)),
        public_key=draw(st.binary(min_size=32, max_size=33)),
        purposes=tuple(draw(st.lists(st.text(min_size=1, max_size=8), max_size=4, unique=True))),
        not_before=draw(u64),
        not_after=draw(u64),
    )
    return KeyRecord(
        key=key,
        published_seq=draw(u64),
        published_at=draw(u64),
        not_after=draw(u64),
        revoked_at=draw(opt_u64),
        revoked_seq=draw(opt_u64),
        revoked_reason=draw(text),
    )


@st.composite
def states(draw: st.DrawFn) -> SubjectState:
    ids = draw(st.lists(st.text(min_size=1, max_size=12), max_size=6, unique=True))
    keys = {kid: draw(key_records(kid)) for kid in ids}  # insertion order is part of the state
    return SubjectState(
        subject=draw(b32),
        seq=draw(u64),
        head=draw(b32),
        timestamp=draw(u64),
        controllers=tuple(draw(st.lists(b20, min_size=1, max_size=4))),
        threshold=draw(st.integers(1, 255)),
        next_commitment=draw(b32),
        governor=draw(b20),
        metadata=draw(text),
        keys=MappingProxyType(keys),
        revoked_at=draw(opt_u64),
        revoked_seq=draw(opt_u64),
        revoked_reason=draw(text),
        last_establishment_seq=draw(u64),
    )


@settings(max_examples=120, deadline=None)
@given(states())
def test_state_roundtrips_exactly(state: SubjectState) -> None:
    text_form = state_to_json(state)
    back = state_from_json(text_form)
    assert back == state
    assert list(back.keys) == list(state.keys)  # publication order survives
    assert isinstance(back.keys, MappingProxyType)
    assert state_to_json(back) == text_form  # deterministic: equal states, equal bytes
    # The stored form is the reference canonical JSON, as every earlier version wrote it.
    assert text_form == json.dumps(state_to_obj(state), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_hostile_metadata_roundtrips() -> None:
    rec = KeyRecord(PublishedKey("k", "Ed25519", b"\x01" * 32, ("sig",), 0, 0), 0, 0, 0)
    for meta in ('"keys":"@@keyreg-keys@@"', "@@keyreg-keys@@", '","keys":"@@keyreg-keys@@'):
        state = SubjectState(
            b"\x01" * 32, 0, b"\x02" * 32, 0, (b"\x03" * 20,), 1, b"\x00" * 32, b"\x00" * 20, meta, {"k": rec}
        )
        assert state_from_json(state_to_json(state)) == state


@settings(max_examples=30, deadline=None)
@given(states())
def test_key_rows_fit_signed_64_bit_columns(state: SubjectState) -> None:
    for rec in state.keys.values():
        row = key_row(state.subject, rec)
        for col in ("published_at", "valid_from", "not_after", "revoked_at", "published_seq", "revoked_seq"):
            assert row[col] is None or row[col] <= I64_MAX or col.endswith("seq")


@settings(max_examples=60, deadline=None)
@given(states())
def test_key_values_are_key_row_in_column_order(state: SubjectState) -> None:
    from keyreg.store.schema import keys as keys_table

    cols = [c.name for c in keys_table.columns]
    null = bytearray()
    for rec in state.keys.values():
        row = key_row(state.subject, rec)
        assert key_values(state.subject, rec) == tuple(row[c] for c in cols)
        # the SQLite forms: blobs as bytearray, NULL as an empty bytearray (NULLIF in the statement)
        sqlite_form = key_values(state.subject, rec, bytearray, null)
        assert sqlite_form == tuple(null if row[c] is None else row[c] for c in cols)
        assert not any(type(v) is bytes for v in sqlite_form)
