"""processor store

Revision ID: 0001
Revises:
Create Date: 2026-12-01 20:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.engine import store

STORE_PREFIX = "processor_"  # processors.store.STORE_PREFIX (a migration does not import the live module)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "processor_people",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("book", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_processor_people_partition", "processor_people", ["tenant", "partition"])
    op.create_table(
        "processor_years",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fiscal_year", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "partition"),
    )
    store.create_tables(op, STORE_PREFIX)


def downgrade() -> None:
    store.drop_tables(op, STORE_PREFIX)
    op.drop_table("processor_years")
    op.drop_index("ix_processor_people_partition", table_name="processor_people")
    op.drop_table("processor_people")
