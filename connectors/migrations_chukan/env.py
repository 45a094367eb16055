"""Alembic environment of the 中間サーバー's store (see :func:`sinks.db.run_migration_env`)."""

from __future__ import annotations

from connectors.stores import chukan_metadata
from sinks.db import run_migration_env

run_migration_env(chukan_metadata)
