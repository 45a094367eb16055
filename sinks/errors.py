"""screening.errors.v1 -> ``screening_errors``: the latest state of each matching error, per 受付番号.

The state of an error is ordered by (``detected_at``, 1 for a staff resolution else 0, the staff resolution's
``resolved_at``), and a stored row is only replaced by a record of an equal or higher order; a WITHDRAWN record (the
error no longer stands) deletes the row under the same condition. ``detected_at`` is the 発生日時 of the 受付番号's
standing submission, so a new detection (the institution re-sending a result) outranks what came before it.

Only a staff resolution (RESOLVED with a staff id in ``resolved_by``) ranks above the processors' records of the
same detection: a replayed OPEN record does not reopen it, nor a withdrawal delete it. The processors' own records of
one detection — OPEN, RESOLVED by ``resubmission``, WITHDRAWN — rank equal, and the later one wins: the processors
settle an error again whenever the person's data changes (an OPEN error that waited for 住基 and then matched is
withdrawn; a resubmission's RESOLVED can turn OPEN again when a later 住基 change makes it fail).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
WITHDRAWN = ErrorStatus.WITHDRAWN.value
RESUBMISSION = "resubmission"  # resolved_by of the processors' RESOLVED records (processors.rules.ledger)


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


def staff_resolved(row: Row) -> bool:
    """Whether ``row`` is a resolution by staff (not the processors' ``resubmission``)."""
    return bool(row["status"] == RESOLVED and row["resolved_by"] != RESUBMISSION)


def error_rank(row: Row) -> tuple[Any, ...]:
    """(detected_at, 1 if staff-resolved else 0, resolved_at of a staff resolution): the greater, the newer state."""
    if staff_resolved(row):
        return (row["detected_at"], 1, row["resolved_at"] or _EPOCH)
    return (row["detected_at"], 0, _EPOCH)


Columns = Callable[[str], ColumnElement[Any]]


def _staff(side: Columns) -> ColumnElement[bool]:
    """SQL of :func:`staff_resolved` (never NULL: a NULL ``resolved_by`` is tested first)."""
    by = side("resolved_by")
    return sa.and_(side("status") == RESOLVED, sa.or_(by.is_(None), by != RESUBMISSION))


def _rank_at_least(stored: Columns, incoming: Columns) -> ColumnElement[bool]:
    """SQL of ``error_rank(incoming) >= error_rank(stored)``, the columns of each side given by name."""
    incoming_staff, stored_staff = _staff(incoming), _staff(stored)
    return sa.or_(
        incoming("detected_at") > stored("detected_at"),
        sa.and_(
            incoming("detected_at") == stored("detected_at"),
            sa.or_(
                sa.not_(stored_staff),  # the stored row ranks (detected_at, 0, epoch): anything of it is at least that
                sa.and_(
                    incoming_staff,
                    sa.or_(
                        stored("resolved_at").is_(None),
                        sa.and_(incoming("resolved_at").is_not(None), incoming("resolved_at") >= stored("resolved_at")),
                    ),
                ),
            ),
        ),
    )


def newer_or_same_state(table: sa.Table, excluded: Excluded) -> ColumnElement[bool]:
    """SQL of ``error_rank(incoming) >= error_rank(stored)`` (the ``WHERE`` of the upsert's update)."""
    return _rank_at_least(lambda c: table.c[c], lambda c: excluded[c])


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
        stands = [r for r in kept.values() if r["status"] != WITHDRAWN]
        gone = [r for r in kept.values() if r["status"] == WITHDRAWN]
        upsert(connection, self.table, stands, self.key_columns, guard=newer_or_same_state)
        if gone:
            # A withdrawal ranks (detected_at, 0, epoch): it outranks a stored row of an earlier detection, and one
            # of the same detection unless that is a staff resolution.
            t = self.table
            detected = sa.bindparam("in_detected_at", type_=t.c.detected_at.type)
            delete = sa.delete(t).where(
                *(t.c[c] == sa.bindparam(f"in_{c}", type_=t.c[c].type) for c in self.key_columns),
                sa.or_(
                    t.c.detected_at < detected,
                    sa.and_(t.c.detected_at == detected, sa.not_(_staff(lambda c: t.c[c]))),
                ),
            )
            names = (*self.key_columns, "detected_at")
            connection.execute(delete, [{f"in_{c}": r[c] for c in names} for r in gone])
