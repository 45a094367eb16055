"""permits used on every outcome; the support-measure flag may be unknown; a note on each hold

* ``chukan_used_permits.outcome``: the outcome of the presentation that used the permit (answered, held, refused,
  error); rows from before this revision keep NULL.
* ``chukan_persons.support_measure`` becomes nullable: NULL is an unknown 支援措置 state, which holds every
  provision about the person for staff (never answered automatically). Existing rows keep their value.
* ``chukan_held.hold_note``: the reason of a hold in words, for the reviewer.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chukan_used_permits") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=32), nullable=True))
    with op.batch_alter_table("chukan_held") as batch:
        batch.add_column(sa.Column("hold_note", sa.Text(), nullable=True))
    with op.batch_alter_table("chukan_persons") as batch:
        batch.alter_column("support_measure", existing_type=sa.Boolean(), nullable=True)


def downgrade() -> None:
    # an unknown state cannot go back to NOT NULL as "not under a support measure": it goes back as "under one"
    op.execute(sa.text("UPDATE chukan_persons SET support_measure = :flagged WHERE support_measure IS NULL").bindparams(
        flagged=True))  # fmt: skip
    with op.batch_alter_table("chukan_persons") as batch:
        batch.alter_column("support_measure", existing_type=sa.Boolean(), nullable=False)
    with op.batch_alter_table("chukan_held") as batch:
        batch.drop_column("hold_note")
    with op.batch_alter_table("chukan_used_permits") as batch:
        batch.drop_column("outcome")
