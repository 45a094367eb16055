"""The processors' own store: each person's state, the started fiscal years, and the runtime's offsets and outbox.

SQLite by default (a file under the state directory), PostgreSQL for more than one worker. State is read and
written per batch: the batch's people in one ``SELECT … IN``, their changed states in one upsert.

* ``processor_people``: per person (``tenant:宛名番号``, the topics' key) the 住基 change log and the ledger book,
  with the partition the person's events arrive on (the 年度開始 command walks one partition's people);
  the change log sealed whole (:mod:`hub.pii`: AES-256-GCM, bound to the tenant, the column and the person's key),
  since its 住基 changes carry the 個人番号; :func:`seal_log` / :func:`open_log` are the only way in and out;
* ``processor_years``: per tenant and partition, the latest fiscal year whose 年度開始 was processed. Every batch
  locks the rows of the partitions it acts on (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions are
  ``BEGIN IMMEDIATE``), so two workers never act on one partition's people at once, whatever topic brought them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.engine import store as engine_store
from hub.pii import PREFIX, PiiError, PiiKeys, is_sealed, key_id_of
from sinks.tables import UtcDateTime, retention_runs_table

PROCESSORS_MIGRATIONS = "processors:migrations"

metadata = sa.MetaData()

people = sa.Table(
    "processor_people",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(6), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("log", sa.Text, nullable=True),
    sa.Column("book", sa.Text, nullable=True),
    sa.Index("ix_processor_people_partition", "tenant", "partition"),
)

years = sa.Table(
    "processor_years",
    metadata,
    sa.Column("tenant", sa.String(6), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("fiscal_year", sa.Integer, nullable=False),
)

# The 実施医療機関 changes of hub.institutions.v1, every version in the order recorded (seq): with institutions.toml,
# the registry every worker checks results against (processors.rules.institutions.InstitutionRegistry).
institution_versions = sa.Table(
    "processor_institutions",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("tenant", sa.String(6), nullable=False),
    sa.Column("code", sa.String(10), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kinds", sa.String(128), nullable=False),  # comma-separated ScreeningKind values
    sa.Column("group_screening", sa.Boolean, nullable=False),
    sa.Column("follow_up", sa.Boolean, nullable=False),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_to", sa.Date, nullable=True),
    sa.UniqueConstraint("event_id", name="uq_processor_institutions_event"),
)
# The reception index (processors.rules.receptions): per 受付番号, each 宛名番号's latest submission of it (no personal
# data but the two numbers). Deleted with the person by retention.
receptions = sa.Table(
    "processor_receptions",
    metadata,
    sa.Column("tenant", sa.String(6), primary_key=True),
    sa.Column("reception_no", sa.String(64), primary_key=True),
    sa.Column("atena_no", sa.String(32), primary_key=True),
    sa.Column("submitted_at", UtcDateTime, nullable=False),
    sa.Column("result_event_id", sa.String(36), nullable=False),
    sa.Column("staff_id", sa.String(64), nullable=True),
)

STORE_PREFIX = "processor_"  # the runtime's tables: processor_runtime_offsets, processor_runtime_outbox
VERSION_TABLE = "alembic_version_processors"  # so the processors' store may share a database with the sinks'
runtime_offsets, runtime_outbox = engine_store.define(metadata, STORE_PREFIX)
retention_runs = retention_runs_table(metadata, f"{STORE_PREFIX}retention_runs")  # since 0005

LOG_COLUMN = "processor_people.log"  # the associated data's column name
_REENCRYPT_BATCH = 500


def seal_log(text: str | None, keys: PiiKeys, tenant: str, key: str) -> str | None:
    """A person's encoded change log as stored: sealed, bound to ``tenant``, the column and the person's ``key``."""
    if text is None:
        return None
    return keys.encrypt(text, tenant=tenant, column=LOG_COLUMN, row=key)


def open_log(stored: str | None, keys: PiiKeys, tenant: str, key: str) -> str | None:
    """The encoded change log of a stored row (:class:`hub.pii.PiiError` if altered, moved, or never sealed)."""
    if stored is None:
        return None
    if not is_sealed(stored):
        raise PiiError("processor_people.log holds a change log in clear: run the processors' migrations")
    return keys.decrypt(stored, tenant=tenant, column=LOG_COLUMN, row=key)


def key_usage(conn: Connection) -> dict[str, int]:
    """The number of sealed change logs per key id."""
    head = sa.func.substr(people.c.log, 1, 48)
    counts: dict[str, int] = {}
    for (start,) in conn.execute(sa.select(head).where(people.c.log.is_not(None))):
        kid = key_id_of(str(start))  # "pii1.<key id>." fits in the head
        counts[kid] = counts.get(kid, 0) + 1
    return counts


def reencrypt_people(engine: Engine, keys: PiiKeys, batch: int = _REENCRYPT_BATCH) -> int:
    """Seal again, under the current key, every change log sealed under another; the number of rows changed.

    One transaction per ``batch`` rows; each update is a compare-and-set on the old sealed log, so a person the
    processors rewrote meanwhile (already under the current key) is left as they wrote it.
    """
    current = f"{PREFIX}.{keys.current}.%"
    changed, after = 0, ""
    while True:
        with engine.begin() as conn:
            query = (
                sa.select(people.c.key, people.c.tenant, people.c.log)
                .where(people.c.log.is_not(None), sa.not_(people.c.log.like(current)), people.c.key > after)
                .order_by(people.c.key)
                .limit(batch)
            )
            rows = conn.execute(query).all()
            for key, tenant, stored in rows:
                fresh = keys.reseal(stored, tenant=tenant, column=LOG_COLUMN, row=key)
                if fresh is not None:
                    update = sa.update(people).where(people.c.key == key, people.c.log == stored).values(log=fresh)
                    changed += conn.execute(update).rowcount
        if len(rows) < batch:
            return changed
        after = str(rows[-1][0])
