"""Alembic environment: always run programmatically with a connection handed in (no alembic.ini).

``keyreg.store.sql.migrate`` puts an open SQLAlchemy connection in ``config.attributes["connection"]``;
migrations run inside the caller's transaction.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("keyreg migrations run through keyreg.store.sql.migrate(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=None,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table rebuilds for ALTERs
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
