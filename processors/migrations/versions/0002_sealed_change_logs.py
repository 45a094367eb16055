"""processor_people.log sealed (the 住基 change logs carry the 個人番号)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 12:00:00

Every change log an older version stored in clear is sealed here (``hub.pii``: AES-256-GCM, the tenant, the column
``processor_people.log`` and the person's key as associated data), under the key file of the settings
(``KENSHIN_PII_KEY_FILE``, created when missing) or the keys given to ``sinks.db.upgrade``; without a usable key
file the migration stops and rolls back with what to do. On SQLite, ``secure_delete`` zeroes the pages the clear
logs leave behind. No column changes: the column stays text.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMN = "processor_people.log"  # processors.store.LOG_COLUMN (a migration does not import the live module)
SEALED = "pii1.%"  # hub.pii.PREFIX: a sealed value
BATCH = 500

people = sa.table("processor_people", sa.column("key"), sa.column("tenant"), sa.column("log"))


def _seal_all(keys_seal: bool) -> None:
    conn = op.get_bind()
    if keys_seal:
        pending = sa.and_(people.c.log.is_not(None), sa.not_(people.c.log.like(SEALED)))
    else:
        pending = people.c.log.like(SEALED)
    if not conn.execute(sa.select(sa.func.count()).select_from(people).where(pending)).scalar_one():
        return
    from hub.pii import migration_keys

    keys = migration_keys()
    after = ""
    while True:
        rows = conn.execute(
            sa.select(people.c.key, people.c.tenant, people.c.log)
            .where(pending, people.c.key > after)
            .order_by(people.c.key)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        if keys_seal:
            values = [{"k": k, "v": keys.encrypt(log, tenant=t, column=COLUMN, row=k)} for k, t, log in rows]
        else:
            values = [{"k": k, "v": keys.decrypt(log, tenant=t, column=COLUMN, row=k)} for k, t, log in rows]
        conn.execute(sa.update(people).where(people.c.key == sa.bindparam("k")).values(log=sa.bindparam("v")), values)
        after = str(rows[-1][0])


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError(
            "processors migration 0002 seals the stored change logs and cannot be rendered as SQL: run it online "
            "(`kenshin-hub run processors` or sinks.db.upgrade), with the key file (KENSHIN_PII_KEY_FILE) in place"
        )
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed: no clear 個人番号 left in the file
    _seal_all(True)


def downgrade() -> None:
    _seal_all(False)
