"""Alembic migrations of the sinks' tables, run programmatically by :func:`sinks.db.upgrade` (no alembic.ini)."""
