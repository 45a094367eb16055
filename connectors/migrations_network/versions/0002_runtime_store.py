"""the runtime's stored offsets and outbox (hub.engine.store)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from hub.engine import store

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    store.create_tables(op)


def downgrade() -> None:
    store.drop_tables(op)
