"""エラー処理: an error row per 受付番号 and 宛名番号 (a 受付番号 sent under two 宛名番号 has an error in each person's
book); who decided a 台帳 version and why (ledger_entries, ledger_versions)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("screening_errors", recreate="auto") as batch:
        batch.drop_constraint("pk_screening_errors", type_="primary")
        batch.create_primary_key("pk_screening_errors", ["tenant", "reception_no", "atena_no"])
    for table in ("ledger_entries", "ledger_versions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("decided_by", sa.String(64), nullable=True))
            batch.add_column(sa.Column("decision_reason", sa.Text, nullable=True))


def downgrade() -> None:
    for table in ("ledger_entries", "ledger_versions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("decision_reason")
            batch.drop_column("decided_by")
    with op.batch_alter_table("screening_errors", recreate="auto") as batch:
        batch.drop_constraint("pk_screening_errors", type_="primary")
        batch.create_primary_key("pk_screening_errors", ["tenant", "reception_no"])
