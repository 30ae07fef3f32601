"""Alembic migrations of the SQL store, run programmatically by :func:`keyreg.store.sql.migrate`."""
