"""residents: the 個人番号 sealed (my_number_enc) with a keyed lookup hash (my_number_hash), no clear column

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:00:00

Rows an older version stored are sealed here, under the key file of the settings (``KENSHIN_PII_KEY_FILE``,
created when missing) or the keys given to ``sinks.db.upgrade``; without a usable key file the migration stops and
rolls back with what to do. On SQLite, ``secure_delete`` zeroes the pages the clear column leaves behind (the WAL
reaches the main file at the next checkpoint; backups taken before still hold clear text). The seal and the hash
are those of ``hub.pii`` and ``sinks.residents`` (column ``residents.my_number``, the 宛名番号 as the row).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMN = "residents.my_number"  # sinks.residents.MY_NUMBER_COLUMN (a migration does not import the live module)
BATCH = 2_000


def _residents(*columns: str) -> sa.TableClause:
    return sa.table("residents", *(sa.column(c) for c in ("tenant", "atena_no", *columns)))


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError(
            "migration 0006 seals the stored 個人番号 and cannot be rendered as SQL: run it online "
            "(`kenshin-hub run sinks` or sinks.db.upgrade), with the key file (KENSHIN_PII_KEY_FILE) in place"
        )
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed: no clear 個人番号 left in the file
    op.add_column("residents", sa.Column("my_number_enc", sa.String(length=128), nullable=True))
    op.add_column("residents", sa.Column("my_number_hash", sa.String(length=64), nullable=True))
    t = _residents("my_number", "my_number_enc", "my_number_hash")
    pending = sa.and_(t.c.my_number.is_not(None), t.c.my_number_enc.is_(None))
    if conn.execute(sa.select(sa.func.count()).select_from(t).where(pending)).scalar_one():
        from hub.pii import migration_keys

        keys = migration_keys()
        after: tuple[str, str] = ("", "")
        while True:
            rows = conn.execute(
                sa.select(t.c.tenant, t.c.atena_no, t.c.my_number)
                .where(pending, sa.tuple_(t.c.tenant, t.c.atena_no) > sa.tuple_(*after))
                .order_by(t.c.tenant, t.c.atena_no)
                .limit(BATCH)
            ).all()
            if not rows:
                break
            after = (rows[-1][0], rows[-1][1])
            conn.execute(
                sa.update(t)
                .where(t.c.tenant == sa.bindparam("k_tenant"), t.c.atena_no == sa.bindparam("k_atena_no"))
                .values(my_number_enc=sa.bindparam("enc"), my_number_hash=sa.bindparam("hash")),
                [
                    {
                        "k_tenant": tenant,
                        "k_atena_no": atena_no,
                        "enc": keys.encrypt(number, tenant=tenant, column=COLUMN, row=atena_no),
                        "hash": keys.lookup_hash(number, tenant=tenant, column=COLUMN),
                    }
                    for tenant, atena_no, number in rows
                ],
            )
    with op.batch_alter_table("residents") as batch:
        batch.drop_column("my_number")
    op.create_index("ix_residents_my_number_hash", "residents", ["tenant", "my_number_hash"])


def downgrade() -> None:
    conn = op.get_bind()
    op.add_column("residents", sa.Column("my_number", sa.String(length=12), nullable=True))
    t = _residents("my_number", "my_number_enc")
    sealed = conn.execute(
        sa.select(t.c.tenant, t.c.atena_no, t.c.my_number_enc).where(t.c.my_number_enc.is_not(None))
    ).all()
    if sealed:
        from hub.pii import migration_keys

        keys = migration_keys()
        conn.execute(
            sa.update(t)
            .where(t.c.tenant == sa.bindparam("k_tenant"), t.c.atena_no == sa.bindparam("k_atena_no"))
            .values(my_number=sa.bindparam("number")),
            [
                {
                    "k_tenant": tenant,
                    "k_atena_no": atena_no,
                    "number": keys.decrypt(enc, tenant=tenant, column=COLUMN, row=atena_no),
                }
                for tenant, atena_no, enc in sealed
            ],
        )
    op.drop_index("ix_residents_my_number_hash", table_name="residents")
    with op.batch_alter_table("residents") as batch:
        batch.drop_column("my_number_hash")
        batch.drop_column("my_number_enc")
