"""Alembic environment: runs on the connection `Store.migrate` passes in `config.attributes`."""

from __future__ import annotations

from alembic import context

from bot.store import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Briefbot's migrations run through bot.store.Store.migrate, with a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
