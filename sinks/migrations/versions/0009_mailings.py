"""residents.postcode (郵便番号 from the 住基), notice_mailings (which notices went out, in which batch) and
mailing_decisions (staff's decision on where a 支援措置 person's notices may be sent)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("residents") as batch:
        batch.add_column(sa.Column("postcode", sa.String(8), nullable=True))
    op.create_table(
        "notice_mailings",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("atena_no", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fiscal_year", sa.Integer, nullable=False),
        sa.Column("invitation_type", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("sent_to", sa.String(16), nullable=False),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("mailed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "atena_no", "kind", "fiscal_year", "invitation_type", name="pk_notice_mailings"
        ),
    )
    op.create_index("ix_notice_mailings_batch", "notice_mailings", ["tenant", "batch_id"])
    op.create_table(
        "mailing_decisions",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("atena_no", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("postcode", sa.String(8), nullable=True),
        sa.Column("address", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("staff_id", sa.String(64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "atena_no", name="pk_mailing_decisions"),
    )


def downgrade() -> None:
    op.drop_table("mailing_decisions")
    op.drop_index("ix_notice_mailings_batch", table_name="notice_mailings")
    op.drop_table("notice_mailings")
    with op.batch_alter_table("residents") as batch:
        batch.drop_column("postcode")
