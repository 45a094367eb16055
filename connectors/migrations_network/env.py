"""Alembic environment of the network simulator's store (see :func:`sinks.db.run_migration_env`)."""

from __future__ import annotations

from connectors.stores import network_metadata
from sinks.db import run_migration_env

run_migration_env(network_metadata)
