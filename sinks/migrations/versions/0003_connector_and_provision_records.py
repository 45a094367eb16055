"""connector and provision records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:10:25.761892
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "connector_queries",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("atena_no", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=6), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "request_id", name="pk_connector_queries"),
    )
    op.create_table(
        "fukuhon_outbox",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("integrated_no", sa.String(length=15), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exported_to", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "record_id", "version", name="pk_fukuhon_outbox"),
    )
    with op.batch_alter_table("fukuhon_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_fukuhon_outbox_status", ["tenant", "status"], unique=False)

    op.create_table(
        "integrated_atena",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("atena_no", sa.String(length=32), nullable=False),
        sa.Column("integrated_no", sa.String(length=15), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "atena_no", name="pk_integrated_atena"),
        sa.UniqueConstraint("tenant", "integrated_no", name="uq_integrated_atena_no"),
    )
    op.create_table(
        "integrated_atena_seq",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("last_no", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name="pk_integrated_atena_seq"),
    )
    op.create_table(
        "ledger_history",
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("atena_no", sa.String(length=32), nullable=False),
        sa.Column("from_tenant", sa.String(length=6), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("fiscal_year", sa.Integer(), nullable=True),
        sa.Column(
            "items",
            sa.JSON(none_as_null=True).with_variant(
                postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "atena_no", "from_tenant", "record_id", name="pk_ledger_history"),
    )
    op.create_table(
        "provision_records",
        sa.Column("record_id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=6), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("requester", sa.String(length=6), nullable=False),
        sa.Column("provider", sa.String(length=6), nullable=False),
        sa.Column("affair_code", sa.String(length=16), nullable=False),
        sa.Column("info_name_code", sa.String(length=16), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("non_disclosure", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("request_body", sa.Text(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name="pk_provision_records"),
    )
    with op.batch_alter_table("provision_records", schema=None) as batch_op:
        batch_op.create_index("ix_provision_records_tenant_time", ["tenant", "requested_at"], unique=False)

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
    with op.batch_alter_table("provision_records", schema=None) as batch_op:
        batch_op.drop_index("ix_provision_records_tenant_time")

    op.drop_table("provision_records")
    op.drop_table("ledger_history")
    op.drop_table("integrated_atena_seq")
    op.drop_table("integrated_atena")
    with op.batch_alter_table("fukuhon_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_fukuhon_outbox_status")

    op.drop_table("fukuhon_outbox")
    op.drop_table("connector_queries")
