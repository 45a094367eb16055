"""institution_versions: every 実施医療機関 change staff recorded (hub.institutions.v1)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "institution_versions",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("code", sa.String(10), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kinds", sa.String(128), nullable=False),
        sa.Column("group_screening", sa.Boolean, nullable=False),
        sa.Column("follow_up", sa.Boolean, nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "event_id", name="pk_institution_versions"),
    )
    op.create_index("ix_institution_versions_code", "institution_versions", ["tenant", "code"])


def downgrade() -> None:
    op.drop_index("ix_institution_versions_code", table_name="institution_versions")
    op.drop_table("institution_versions")
