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
