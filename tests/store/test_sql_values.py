"""The hot-path rows reach the database as the right SQL values on both backends.

SQLite gets blobs as bytearray, NULL as an empty bytearray turned back into NULL by ``NULLIF``
and booleans as 0/1 (keyreg.store.sql._Values): the stored values must be exactly what plain
bytes/None/bool would have stored.
"""

from __future__ import annotations

from sqlalchemy import select

from keyreg.registry import Registry
from keyreg.store import schema as t
from keyreg.store.sql import SqlStore
from tests.store.streams import DOMAIN, interleaved


def test_hot_rows_store_blobs_nulls_and_flags_exactly(sql_url: str) -> None:
    stream = interleaved(11, 4, 9)  # updates (keys without expiry), a rotation, revocations
    store = SqlStore(sql_url)
    try:
        registry = Registry(DOMAIN, store)
        results = registry.ingest([e.signed for e in stream], admission=False)
        assert {r.status for r in results} == {"accepted"}
        with store.engine.connect() as conn:
            keys = conn.execute(select(t.keys)).mappings().all()
            subjects = conn.execute(select(t.subjects)).mappings().all()
            events = conn.execute(select(t.events)).mappings().all()
            audit = conn.execute(select(t.audit)).mappings().all()
        assert keys
        for k in keys:
            assert k["not_after"] is None  # 0 = no expiry: NULL, not an empty blob
            assert (k["revoked_at"] is None) == (k["revoked_seq"] is None)
            assert len(bytes(k["subject"])) == 32
            assert len(bytes(k["public_key"])) == 32
        assert any(k["revoked_at"] is not None for k in keys)
        for s in subjects:
            assert s["revoked_at"] is None
            assert s["disputed"] in (False, 0)
            assert len(bytes(s["head"])) == 32
        digests = {(e.subject, e.seq): e.digest for e in stream}
        assert {(bytes(e["subject"]), e["seq"]): bytes(e["digest"]) for e in events} == digests
        assert all(len(bytes(a["hash"])) == 32 and len(bytes(a["prev_hash"])) == 32 for a in audit)
        if store.dialect == "sqlite":
            with store.engine.connect() as conn:
                types = conn.exec_driver_sql(
                    "SELECT DISTINCT typeof(subject), typeof(not_after), typeof(revoked_at) FROM keys"
                ).all()
                assert {row[0] for row in types} == {"blob"}
                assert {row[1] for row in types} == {"null"}
                assert {row[2] for row in types} <= {"null", "integer"}
                (flags,) = conn.exec_driver_sql("SELECT DISTINCT typeof(disputed) FROM subjects").one()
                assert flags == "integer"
    finally:
        store.close()
