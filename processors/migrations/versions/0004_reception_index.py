"""processor_receptions: the reception index (each 宛名番号's latest submission of a 受付番号)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 19:00:00
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
    op.create_table(
        "processor_receptions",
        sa.Column("tenant", sa.String(6), primary_key=True),
        sa.Column("reception_no", sa.String(64), primary_key=True),
        sa.Column("atena_no", sa.String(32), primary_key=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result_event_id", sa.String(36), nullable=False),
        sa.Column("staff_id", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("processor_receptions")
