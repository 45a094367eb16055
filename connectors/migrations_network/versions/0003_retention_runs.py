"""the store's own retention runs (``network_retention_runs``): each store records the runs over it

Until now every process recorded its daily run in the 中間サーバー's ``chukan_retention_runs``, a write into another
party's store.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from sinks.migration_steps import create_retention_runs_v1, drop_retention_runs_v1

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_retention_runs_v1("network_retention_runs")


def downgrade() -> None:
    drop_retention_runs_v1("network_retention_runs")
