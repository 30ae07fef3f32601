"""Persistence behind one seam (:class:`keyreg.store.base.Store`): the SQL store (SQLite or
PostgreSQL, ``sql.py``), the in-memory store for tests (``memory.py``), the audit chain
(``audit.py``) and the row/JSON forms of the derived state (``serialize.py``)."""
