"""The processors' own store: each person's state, the started fiscal years, and the runtime's offsets and outbox.

SQLite by default (a file under the state directory), PostgreSQL for more than one worker. State is read and
written per batch: the batch's people in one ``SELECT … IN``, their changed states in one upsert.

* ``processor_people``: per person (``tenant:宛名番号``, the topics' key) the 住基 change log and the ledger book,
  with the partition the person's events arrive on (the 年度開始 command walks one partition's people);
* ``processor_years``: per tenant and partition, the latest fiscal year whose 年度開始 was processed. Every batch
  locks the rows of the partitions it acts on (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite transactions are
  ``BEGIN IMMEDIATE``), so two workers never act on one partition's people at once, whatever topic brought them.
"""

from __future__ import annotations

import sqlalchemy as sa

from hub.engine import store as engine_store

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

STORE_PREFIX = "processor_"  # the runtime's tables: processor_runtime_offsets, processor_runtime_outbox
VERSION_TABLE = "alembic_version_processors"  # so the processors' store may share a database with the sinks'
runtime_offsets, runtime_outbox = engine_store.define(metadata, STORE_PREFIX)
