"""network store

Revision ID: 0001
Revises:
Create Date: 2026-11-26 10:10:25.883459
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
        "network_fugo",
        sa.Column("institution", sa.String(length=6), nullable=False),
        sa.Column("fugo", sa.String(length=64), nullable=False),
        sa.Column("person_token", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("institution", "fugo", name="pk_network_fugo"),
        sa.UniqueConstraint("institution", "person_token", name="uq_network_fugo_person"),
    )
    op.create_table(
        "network_log",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("requester", sa.String(length=6), nullable=False),
        sa.Column("provider", sa.String(length=6), nullable=False),
        sa.Column("info_name_code", sa.String(length=16), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("permit_id", sa.String(length=36), nullable=True),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_network_log"),
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
    op.drop_table("network_log")
    op.drop_table("network_fugo")
