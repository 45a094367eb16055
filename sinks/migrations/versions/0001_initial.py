"""Initial tables: residents, ledger_entries, screening_errors, invitations, statistics.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "residents",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("atena_no", sa.String(32), nullable=False),
        sa.Column("my_number", sa.String(12), nullable=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("name_kana", sa.Text, nullable=False),
        sa.Column("sex", sa.String(8), nullable=False),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resident_since", sa.Date, nullable=True),
        sa.Column("ceased_on", sa.Date, nullable=True),
        sa.Column("support_measure", sa.Boolean, nullable=False),
        sa.Column("household_no", sa.String(32), nullable=True),
        sa.Column("previous_municipality", sa.String(6), nullable=True),
        sa.Column("next_municipality", sa.String(6), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "atena_no", name="pk_residents"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("atena_no", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fiscal_year", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("sex", sa.String(8), nullable=False),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("reception_no", sa.String(64), nullable=False),
        sa.Column("exam_date", sa.Date, nullable=False),
        sa.Column("exam_age", sa.Integer, nullable=False),
        sa.Column("institution_code", sa.String(16), nullable=False),
        sa.Column("institution_name", sa.Text, nullable=False),
        sa.Column("setting", sa.String(16), nullable=False),
        sa.Column("follow_up_required", sa.Boolean, nullable=False),
        sa.Column("primary_findings", _json(), nullable=False),
        sa.Column("follow_up", _json(), nullable=True),
        sa.Column("followup_exam_date", sa.Date, nullable=True),
        sa.Column("followup_exam_age", sa.Integer, nullable=True),
        sa.Column("followup_judgement", sa.String(32), nullable=True),
        sa.Column("history_from", sa.String(6), nullable=True),
        sa.Column("source_event_id", sa.String(36), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "atena_no", "kind", "fiscal_year", name="pk_ledger_entries"),
    )
    op.create_index("ix_ledger_entries_fiscal_year_kind", "ledger_entries", ["tenant", "fiscal_year", "kind"])
    op.create_index("ix_ledger_entries_reception_no", "ledger_entries", ["tenant", "reception_no"])
    op.create_table(
        "screening_errors",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("reception_no", sa.String(64), nullable=False),
        sa.Column("atena_no", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("mismatched_fields", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detected_at", _ts(), nullable=False),
        sa.Column("resolved_at", _ts(), nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.Column("resolution", sa.Text, nullable=True),
        sa.Column("source_topic", sa.String(255), nullable=True),
        sa.Column("source_partition", sa.Integer, nullable=True),
        sa.Column("source_offset", sa.BigInteger, nullable=True),
        sa.Column("result_event_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "reception_no", name="pk_screening_errors"),
    )
    op.create_index("ix_screening_errors_status", "screening_errors", ["tenant", "status", "detected_at"])
    op.create_table(
        "invitations",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("atena_no", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fiscal_year", sa.Integer, nullable=False),
        sa.Column("invitation_type", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("age_at_fiscal_year_end", sa.Integer, nullable=False),
        sa.Column("issued_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "atena_no", "kind", "fiscal_year", "invitation_type", name="pk_invitations"),
    )
    op.create_index("ix_invitations_fiscal_year_kind", "invitations", ["tenant", "fiscal_year", "kind"])
    op.create_table(
        "statistics",
        sa.Column("tenant", sa.String(6), nullable=False),
        sa.Column("fiscal_year", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sex", sa.String(8), nullable=False),
        sa.Column("age_band", sa.String(8), nullable=False),
        sa.Column("targets", sa.Integer, nullable=False),
        sa.Column("attendees", sa.Integer, nullable=False),
        sa.Column("follow_up_required", sa.Integer, nullable=False),
        sa.Column("follow_up_attended", sa.Integer, nullable=False),
        sa.Column("cancer_found", sa.Integer, nullable=False),
        sa.Column("computed_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "fiscal_year", "kind", "sex", "age_band", name="pk_statistics"),
    )


def downgrade() -> None:
    op.drop_table("statistics")
    op.drop_index("ix_invitations_fiscal_year_kind", table_name="invitations")
    op.drop_table("invitations")
    op.drop_index("ix_screening_errors_status", table_name="screening_errors")
    op.drop_table("screening_errors")
    op.drop_index("ix_ledger_entries_reception_no", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_fiscal_year_kind", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_table("residents")
