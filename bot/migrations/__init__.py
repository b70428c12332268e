"""Alembic migrations for bot.store, applied in code by `Store.migrate` (no alembic.ini)."""
