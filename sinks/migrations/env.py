"""Alembic environment of the sinks' tables (see :func:`sinks.db.run_migration_env`)."""

from __future__ import annotations

from sinks.db import run_migration_env
from sinks.tables import metadata

run_migration_env(metadata)
