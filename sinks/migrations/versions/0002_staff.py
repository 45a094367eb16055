"""Staff accounts, sessions and the record of their operations (職員認証・権限管理, 操作記録).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "staff_accounts",
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("roles", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked", sa.Boolean, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("staff_id", name="pk_staff_accounts"),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_staff_sessions"),
        sa.ForeignKeyConstraint(["staff_id"], ["staff_accounts.staff_id"], name="fk_staff_sessions_staff_id"),
    )
    op.create_table(
        "staff_operations",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("performed_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_staff_operations"),
    )
    op.create_index("ix_staff_operations_staff_time", "staff_operations", ["tenant", "staff_id", "performed_at"])


def downgrade() -> None:
    op.drop_index("ix_staff_operations_staff_time", table_name="staff_operations")
    op.drop_table("staff_operations")
    op.drop_table("staff_sessions")
    op.drop_table("staff_accounts")
