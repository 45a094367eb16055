"""screening.errors.v1 -> ``screening_errors``: the latest state of each matching error, per 受付番号.

The state of an error is ordered by (``detected_at``, status with RESOLVED above OPEN, ``resolved_at``), and a
stored row is only replaced by a record of an equal or higher order. So a RESOLVED error stays resolved when an
older OPEN record of the same detection is replayed, and is only reopened by a new detection (a later
``detected_at``), e.g. the institution re-sending a result that fails again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from schemas.models import ErrorStatus, ScreeningError
from sinks.base import Row, TableSink
from sinks.db import Excluded, upsert
from sinks.tables import screening_errors
from topics.catalog import SCREENING_ERRORS, Topic

_EPOCH = datetime.min.replace(tzinfo=UTC)
RESOLVED = ErrorStatus.RESOLVED.value


def error_row(error: ScreeningError) -> Row:
    source = error.source
    return {
        "tenant": error.tenant,
        "reception_no": error.reception_no,
        "atena_no": error.atena_no,
        "kind": error.kind.value,
        "stage": error.stage.value,
        "reasons": ",".join(r.value for r in error.reasons),
        "mismatched_fields": ",".join(error.mismatched_fields),
        "status": error.status.value,
        "detected_at": error.detected_at,
        "resolved_at": error.resolved_at,
        "resolved_by": error.resolved_by,
        "resolution": error.resolution,
        "source_topic": source.topic if source is not None else None,
        "source_partition": source.partition if source is not None else None,
        "source_offset": source.offset if source is not None else None,
        "result_event_id": str(error.result_event_id),
    }


def error_rank(row: Row) -> tuple[Any, ...]:
    """(detected_at, 1 if RESOLVED else 0, resolved_at): the greater, the newer state."""
    return (row["detected_at"], 1 if row["status"] == RESOLVED else 0, row["resolved_at"] or _EPOCH)


def newer_or_same_state(table: sa.Table, excluded: Excluded) -> ColumnElement[bool]:
    """SQL of ``error_rank(incoming) >= error_rank(stored)``."""
    stored, incoming = table.c, excluded
    incoming_resolved = incoming["status"] == RESOLVED
    stored_resolved = stored.status == RESOLVED
    return sa.or_(
        incoming["detected_at"] > stored.detected_at,
        sa.and_(
            incoming["detected_at"] == stored.detected_at,
            sa.or_(
                sa.and_(incoming_resolved, sa.not_(stored_resolved)),
                sa.and_(
                    incoming_resolved == stored_resolved,
                    sa.or_(
                        stored.resolved_at.is_(None),
                        sa.and_(incoming["resolved_at"].is_not(None), incoming["resolved_at"] >= stored.resolved_at),
                    ),
                ),
            ),
        ),
    )


class ErrorsSink(TableSink[ScreeningError]):
    """Upsert guarded by :func:`newer_or_same_state` (see the module docstring)."""

    table = screening_errors

    def __init__(self, topic: Topic = SCREENING_ERRORS, name: str = "sinks.errors") -> None:
        super().__init__(topic, name)

    def to_row(self, event: ScreeningError) -> Row:
        return error_row(event)

    def rank(self, row: Row) -> tuple[Any, ...]:
        return error_rank(row)

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        kept: dict[tuple[Any, ...], Row] = {}
        for row in rows:
            key = tuple(row[c] for c in self.key_columns)
            if key not in kept or error_rank(row) >= error_rank(kept[key]):
                kept[key] = row
        upsert(connection, self.table, list(kept.values()), self.key_columns, guard=newer_or_same_state)
