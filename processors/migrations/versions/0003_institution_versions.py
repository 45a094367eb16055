"""processor_institutions: the 実施医療機関 changes staff recorded (hub.institutions.v1), every version kept

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "processor_institutions",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("code", sa.String(10), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kinds", sa.String(128), nullable=False),
        sa.Column("group_screening", sa.Boolean, nullable=False),
        sa.Column("follow_up", sa.Boolean, nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.UniqueConstraint("event_id", name="uq_processor_institutions_event"),
    )


def downgrade() -> None:
    op.drop_table("processor_institutions")
