"""reviewers enrolled per tenant, and the review decisions received

``chukan_reviewers``: the public key of each reviewer the 中間サーバー acts for, per tenant and staff id, ACTIVE or
DISABLED. ``chukan_review_decisions``: every signed decision that arrived on ``chukan.review-decisions.v1``, with
its outcome (ACCEPTED, or REJECTED and why).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chukan_reviewers",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("staff_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "staff_id", name="pk_chukan_reviewers"),
    )
    op.create_table(
        "chukan_review_decisions",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("staff_id", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "event_id", name="pk_chukan_review_decisions"),
    )
    op.create_index("ix_chukan_review_decisions_request", "chukan_review_decisions", ["tenant", "request_id"])


def downgrade() -> None:
    op.drop_index("ix_chukan_review_decisions_request", table_name="chukan_review_decisions")
    op.drop_table("chukan_review_decisions")
    op.drop_table("chukan_reviewers")
