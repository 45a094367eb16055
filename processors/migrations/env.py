"""Alembic environment of the processors' state store (see :func:`sinks.db.run_migration_env`)."""

from __future__ import annotations

from processors.store import VERSION_TABLE, metadata
from sinks.db import run_migration_env

run_migration_env(metadata, VERSION_TABLE)
