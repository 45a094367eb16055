"""chukan store

Revision ID: 0001
Revises:
Create Date: 2026-11-26 10:10:25.849506
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "chukan_fukuhon",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("integrated_no", sa.String(length=15), nullable=False),
        sa.Column("info_name_code", sa.String(length=16), nullable=False),
        sa.Column("dataset_item_code", sa.String(length=32), nullable=False),
        sa.Column("record_key", sa.Text(), nullable=False),
        sa.Column("parent_key", sa.Text(), nullable=True),
        sa.Column("publication_start", sa.Date(), nullable=False),
        sa.Column("publication_end", sa.Date(), nullable=True),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "record_id", "version", name="pk_chukan_fukuhon"),
    )
    with op.batch_alter_table("chukan_fukuhon", schema=None) as batch_op:
        batch_op.create_index("ix_chukan_fukuhon_person", ["tenant", "integrated_no", "info_name_code"], unique=False)

    op.create_table(
        "chukan_held",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("integrated_no", sa.String(length=15), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("hold_reasons", sa.Text(), nullable=False),
        sa.Column("flagged_items", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refusal_reason", sa.Text(), nullable=True),
        sa.Column("outputs", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "request_id", name="pk_chukan_held"),
    )
    with op.batch_alter_table("chukan_held", schema=None) as batch_op:
        batch_op.create_index("ix_chukan_held_status", ["tenant", "status", "held_at"], unique=False)

    op.create_table(
        "chukan_outgoing",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("integrated_no", sa.String(length=15), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "request_id", name="pk_chukan_outgoing"),
    )
    with op.batch_alter_table("chukan_outgoing", schema=None) as batch_op:
        batch_op.create_index("ix_chukan_outgoing_waiting", ["tenant", "integrated_no", "status"], unique=False)

    op.create_table(
        "chukan_persons",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("integrated_no", sa.String(length=15), nullable=False),
        sa.Column("person_token", sa.String(length=64), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_kana", sa.Text(), nullable=False),
        sa.Column("sex", sa.String(length=8), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("support_measure", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("fugo", sa.String(length=64), nullable=True),
        sa.Column("fugo_requested", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "integrated_no", name="pk_chukan_persons"),
        sa.UniqueConstraint("tenant", "fugo", name="uq_chukan_persons_fugo"),
    )
    op.create_table(
        "chukan_records",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("record_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "record_id", name="pk_chukan_records"),
        sa.Index("ix_chukan_records_request", "tenant", "request_id"),
    )
    op.create_table(
        "chukan_retention_runs",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("records_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fukuhon_ended_before", sa.Date(), nullable=False),
        sa.Column("records_deleted", sa.Integer(), nullable=False),
        sa.Column("fukuhon_deleted", sa.Integer(), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_chukan_retention_runs"),
    )
    op.create_table(
        "chukan_used_permits",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("permit_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "permit_id", name="pk_chukan_used_permits"),
    )
    op.create_table(
        "service_effects",
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("input_id", sa.String(length=160), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("acted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("service", "input_id", name="pk_service_effects"),
    )


def downgrade() -> None:

    op.drop_table("service_effects")
    op.drop_table("chukan_used_permits")
    op.drop_table("chukan_retention_runs")
    op.drop_table("chukan_records")
    op.drop_table("chukan_persons")
    with op.batch_alter_table("chukan_outgoing", schema=None) as batch_op:
        batch_op.drop_index("ix_chukan_outgoing_waiting")

    op.drop_table("chukan_outgoing")
    with op.batch_alter_table("chukan_held", schema=None) as batch_op:
        batch_op.drop_index("ix_chukan_held_status")

    op.drop_table("chukan_held")
    with op.batch_alter_table("chukan_fukuhon", schema=None) as batch_op:
        batch_op.drop_index("ix_chukan_fukuhon_person")

    op.drop_table("chukan_fukuhon")
