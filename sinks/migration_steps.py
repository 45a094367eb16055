"""Migration steps that several stores' Alembic histories share, each frozen as of the revision that uses it.

A step here is never changed once a revision calls it (a later schema change is a new step and a new revision), so
replaying an old revision always builds what it built.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def create_retention_runs_v1(name: str) -> None:
    """The store's own retention-runs table (``sinks.tables.retention_runs_table``): sinks 0012, processors 0005,
    network 0003.
    """
    op.create_table(
        name,
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("run_by", sa.String(length=64), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_tenant", name, ["tenant", "run_by", "ran_at"])


def drop_retention_runs_v1(name: str) -> None:
    op.drop_index(f"ix_{name}_tenant", table_name=name)
    op.drop_table(name)
