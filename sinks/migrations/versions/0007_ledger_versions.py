"""ledger_versions: every version of every 台帳 entry (the counter view shows them); filled from ledger_entries

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPIED = (
    "tenant",
    "atena_no",
    "kind",
    "fiscal_year",
    "version",
    "reception_no",
    "exam_date",
    "institution_code",
    "follow_up_required",
    "followup_judgement",
    "source_event_id",
)


def upgrade() -> None:
    op.create_table(
        "ledger_versions",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("atena_no", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fiscal_year", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("withdrawn", sa.Boolean, nullable=False),
        sa.Column("reception_no", sa.String(64), nullable=False),
        sa.Column("exam_date", sa.Date, nullable=False),
        sa.Column("institution_code", sa.String(16), nullable=False),
        sa.Column("follow_up_required", sa.Boolean, nullable=False),
        sa.Column("followup_judgement", sa.String(32), nullable=True),
        sa.Column("source_event_id", sa.String(36), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "atena_no", "kind", "fiscal_year", "version", name="pk_ledger_versions"),
    )
    # The versions that stand today are the first ones known: earlier ones were overwritten before this table.
    entries = sa.table("ledger_entries", *(sa.column(c) for c in (*COPIED, "updated_at")))
    versions = sa.table("ledger_versions", *(sa.column(c) for c in (*COPIED, "withdrawn", "recorded_at")))
    standing = sa.select(*(entries.c[c] for c in COPIED), sa.false(), entries.c.updated_at)
    op.execute(versions.insert().from_select([*COPIED, "withdrawn", "recorded_at"], standing))


def downgrade() -> None:
    op.drop_table("ledger_versions")
