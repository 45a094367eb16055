"""notice_decisions: 繰越受診通知の申出 and the processors' decision on each (issued, or refused and why)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notice_decisions",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("request_event_id", sa.String(36), nullable=False),
        sa.Column("atena_no", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fiscal_year", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("issued", sa.Boolean, nullable=False),
        sa.Column("refusals", sa.String(256), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "request_event_id", name="pk_notice_decisions"),
    )
    op.create_index("ix_notice_decisions_person", "notice_decisions", ["tenant", "atena_no"])


def downgrade() -> None:
    op.drop_index("ix_notice_decisions_person", table_name="notice_decisions")
    op.drop_table("notice_decisions")
