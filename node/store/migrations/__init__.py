"""Alembic migrations of the SQL store, run programmatically by :func:`node.store.sql.migrate`."""
