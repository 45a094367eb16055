"""the store's own retention runs (``retention_runs``): each store records the runs over it

Until now every process recorded its daily run in the 中間サーバー's ``chukan_retention_runs``, a write into another
party's store.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_runs",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("run_by", sa.String(length=64), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_retention_runs"),
    )
    op.create_index("ix_retention_runs_tenant", "retention_runs", ["tenant", "run_by", "ran_at"])


def downgrade() -> None:
    op.drop_index("ix_retention_runs_tenant", table_name="retention_runs")
    op.drop_table("retention_runs")
