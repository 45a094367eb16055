"""retention runs per tenant: the tenant, who ran it, and the counts per store and table

``chukan_retention_runs`` gains ``tenant``, ``run_by`` (a staff id, or ``schedule:<process>``) and ``counts``
(JSON: store -> table -> rows deleted) for :mod:`hub.retention`; rows from before this revision keep NULL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-20 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chukan_retention_runs") as batch:
        batch.add_column(sa.Column("tenant", sa.String(length=6), nullable=True))
        batch.add_column(sa.Column("run_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("counts", sa.Text(), nullable=True))
        batch.create_index("ix_chukan_retention_runs_tenant", ["tenant", "run_by", "ran_at"])


def downgrade() -> None:
    with op.batch_alter_table("chukan_retention_runs") as batch:
        batch.drop_index("ix_chukan_retention_runs_tenant")
        batch.drop_column("counts")
        batch.drop_column("run_by")
        batch.drop_column("tenant")
