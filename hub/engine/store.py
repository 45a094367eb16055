"""The runtime's two tables, kept in each process's own store beside its data (same transactions).

* ``runtime_offsets``: per consumer group and partition, the next offset not yet acted on. Written in the batch's
  transaction, so the store knows exactly which messages its state already contains, whatever Kafka's committed
  offsets say. Updates are fenced (compare-and-set on the old value): a worker that lost its partition to another
  cannot commit over the new owner's work. Each row carries the Kafka topic id it counts in: offsets of a topic
  that was deleted and created again (``stack down --purge``) are not taken for the new topic's.
* ``runtime_outbox``: the encoded records a batch's inputs produced, one row per partition and batch (the inputs'
  offset range, each record framed with its input's offset), until Kafka has the offsets. A replayed input below
  the stored offset re-sends its records instead of acting again.

Every store's migrations create them through :func:`create_tables`, so the columns are declared once.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

Record = tuple[str, bytes, bytes]  # topic name, key, value (the encoded bytes the producer sends)
Framed = tuple[int, str, bytes, bytes]  # the input's offset, then the record

_HEADER = struct.Struct(">qHII")


def _columns() -> dict[str, list[sa.Column[Any]]]:
    return {
        "runtime_offsets": [
            sa.Column("group_id", sa.String(200), primary_key=True),
            sa.Column("topic", sa.String(249), primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("next_offset", sa.BigInteger, nullable=False),
            sa.Column("topic_id", sa.String(36), nullable=False),
        ],
        "runtime_outbox": [
            sa.Column("group_id", sa.String(200), primary_key=True),
            sa.Column("topic", sa.String(249), primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("first_offset", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("last_offset", sa.BigInteger, nullable=False),
            sa.Column("records", sa.LargeBinary, nullable=False),
        ],
    }


def define(metadata: sa.MetaData, prefix: str = "") -> tuple[sa.Table, sa.Table]:
    """The two tables on ``metadata`` (a store's table module calls this once).

    ``prefix`` keeps two stores apart when an operator puts them in one database (the processors' tables are
    ``processor_runtime_*``, so the processors and the sinks may share one PostgreSQL database).
    """
    cols = _columns()
    return (
        sa.Table(f"{prefix}runtime_offsets", metadata, *cols["runtime_offsets"]),
        sa.Table(f"{prefix}runtime_outbox", metadata, *cols["runtime_outbox"]),
    )


@dataclass(frozen=True)
class Statements:
    """The statements every batch runs on the two tables, built once per runner with bound parameters (``w_*`` in
    the WHERE clauses): building a SQLAlchemy statement and its cache key each time cost more CPU than running it,
    in the small batches of a provision service. All take ``w_group`` and ``w_topic``.
    """

    read_offsets: sa.Select[Any]  # w_partitions (a list): partition, next_offset, topic_id; locked for the batch
    insert_offsets: sa.Insert  # a row's columns
    advance_offsets: sa.Update  # w_partition, w_old → next_offset (compare-and-set: rowcount 0 when it moved on)
    insert_outbox: sa.Insert  # a row's columns
    delete_outbox_below: sa.Delete  # w_partition, w_below: the rows wholly below a committed offset


def statements(offsets: sa.Table, outbox: sa.Table) -> Statements:
    def where(t: sa.Table, *more: sa.ColumnElement[bool]) -> list[sa.ColumnElement[bool]]:
        return [t.c.group_id == sa.bindparam("w_group"), t.c.topic == sa.bindparam("w_topic"), *more]

    o, b = offsets, outbox
    return Statements(
        read_offsets=sa.select(o.c.partition, o.c.next_offset, o.c.topic_id)
        .where(*where(o, o.c.partition.in_(sa.bindparam("w_partitions", expanding=True))))
        .order_by(o.c.partition)
        .with_for_update(),  # PostgreSQL: the partitions' rows are locked for the batch (SQLite: IMMEDIATE)
        insert_offsets=sa.insert(o),
        advance_offsets=sa.update(o)
        .where(*where(o, o.c.partition == sa.bindparam("w_partition"), o.c.next_offset == sa.bindparam("w_old")))
        .values(next_offset=sa.bindparam("next_offset")),
        insert_outbox=sa.insert(b),
        delete_outbox_below=sa.delete(b).where(
            *where(b, b.c.partition == sa.bindparam("w_partition"), b.c.last_offset < sa.bindparam("w_below"))
        ),
    )


def create_tables(op: Any, prefix: str = "") -> None:
    """Create the two tables from an Alembic migration (``op`` is ``alembic.op``)."""
    for name, cols in _columns().items():
        op.create_table(f"{prefix}{name}", *cols)


def drop_tables(op: Any, prefix: str = "") -> None:
    for name in _columns():
        op.drop_table(f"{prefix}{name}")


def pack(records: Iterable[Framed]) -> bytes:
    """Frame records as one blob: per record a header (input offset; topic, key and value lengths), then the bytes."""
    parts: list[bytes] = []
    for offset, topic, key, value in records:
        name = topic.encode()
        parts += (_HEADER.pack(offset, len(name), len(key), len(value)), name, key, value)
    return b"".join(parts)


def unpack(blob: bytes) -> list[Framed]:
    out: list[Framed] = []
    view = memoryview(blob)
    i = 0
    while i < len(view):
        if i + _HEADER.size > len(view):
            raise ValueError("a truncated outbox record")
        offset, t, k, v = _HEADER.unpack_from(view, i)
        i += _HEADER.size
        if i + t + k + v > len(view):
            raise ValueError("a truncated outbox record")
        topic = bytes(view[i : i + t]).decode()
        i += t
        key = bytes(view[i : i + k])
        i += k
        value = bytes(view[i : i + v])
        i += v
        out.append((offset, topic, key, value))
    return out


def chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    """``items`` in slices of ``size`` (SQL ``IN`` lists stay well under every driver's parameter limit)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
