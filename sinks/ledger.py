"""ledger.entries.v1 -> ``ledger_entries``: the がん検診台帳, one row per person × kind × fiscal year.

Rows are upserted guarded by the entry's ``version``. A withdrawn entry (``withdrawn``: the entry no longer stands,
e.g. a 転出 dated before the exam arrived late) deletes the row when the stored version is at most the withdrawal's;
within a batch the record of the highest version of each key stands for it, whether an entry or a withdrawal.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from schemas.models import LedgerEntry
from sinks.base import Row, TableSink
from sinks.db import insert_or_ignore, upsert
from sinks.tables import ledger_entries, ledger_versions
from topics.catalog import LEDGER_ENTRIES, Topic

WITHDRAWN = "withdrawn"  # a buffered row's mark of a withdrawal (not a column: the row is deleted)


def jsonable(value: Any) -> Any:
    """``to_dict()`` output made JSON-safe: dates and times as ISO strings, UUIDs and enums as strings."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | enum.Enum):
        return str(value.value if isinstance(value, enum.Enum) else value)
    return value


def primary_findings_json(entry: LedgerEntry) -> dict[str, Any]:
    """The kind-specific block of the primary findings with the findings common to every kind."""
    primary = entry.primary
    block = getattr(primary, entry.kind.block)
    return {
        entry.kind.block: jsonable(block.to_dict()),
        "other_findings": primary.other_findings,
        "benefit_status": primary.benefit_status,
        "national_health_insurance": primary.national_health_insurance,
    }


def ledger_row(entry: LedgerEntry) -> Row:
    follow_up = entry.follow_up
    return {
        "tenant": entry.tenant,
        "atena_no": entry.atena_no,
        "kind": entry.kind.value,
        "fiscal_year": entry.fiscal_year,
        "version": entry.version,
        "sex": entry.person.sex.value,
        "birth_date": entry.person.birth_date,
        "reception_no": entry.reception_no,
        "exam_date": entry.exam_date,
        "exam_age": entry.exam_age,
        "institution_code": entry.institution_code,
        "institution_name": entry.institution_name,
        "setting": entry.setting.value,
        "follow_up_required": entry.primary.follow_up_required,
        "primary_findings": primary_findings_json(entry),
        "follow_up": jsonable(follow_up.to_dict()) if follow_up is not None else None,
        "followup_exam_date": follow_up.exam_date if follow_up is not None else None,
        "followup_exam_age": follow_up.exam_age if follow_up is not None else None,
        "followup_judgement": follow_up.findings.judgement.value if follow_up is not None else None,
        "history_from": entry.history_from,
        "source_event_id": str(entry.source_event_id),
        "updated_at": entry.occurred_at,
        "decided_by": entry.decided_by,
        "decision_reason": entry.decision_reason,
    }


VERSION_KEY = ("tenant", "atena_no", "kind", "fiscal_year", "version")


_VERSION_COLUMNS = (
    *VERSION_KEY,
    "reception_no",
    "exam_date",
    "institution_code",
    "follow_up_required",
    "followup_judgement",
    "source_event_id",
    "decided_by",
    "decision_reason",
)


def version_row(entry: LedgerEntry) -> Row:
    """One version of an entry as ``ledger_versions`` keeps it (a withdrawal too: the entry no longer stands)."""
    row = ledger_row(entry)
    return {
        **{c: row[c] for c in _VERSION_COLUMNS},
        "withdrawn": entry.withdrawn,
        "recorded_at": row["updated_at"],
    }


class LedgerSink(TableSink[LedgerEntry]):
    """Upsert guarded by the entry's ``version``: a replayed older entry never overwrites a newer one; a withdrawal
    deletes the row unless the stored version is newer (see the module docstring).
    """

    table = ledger_entries

    def __init__(self, topic: Topic = LEDGER_ENTRIES, name: str = "sinks.ledger") -> None:
        super().__init__(topic, name)
        self._versions: list[Row] = []  # every version of the batch (the buffer keeps the highest of each key)

    def to_row(self, event: LedgerEntry) -> Row:
        return {**ledger_row(event), WITHDRAWN: event.withdrawn}

    def add(self, event: LedgerEntry, key: bytes, partition: int, offset: int) -> None:
        super().add(event, key, partition, offset)
        self._versions.append(version_row(event))

    def flush(self, connection: Connection) -> None:
        super().flush(connection)
        insert_or_ignore(connection, ledger_versions, self._versions, VERSION_KEY)

    def clear(self) -> None:
        super().clear()
        self._versions.clear()

    def rank(self, row: Row) -> tuple[Any, ...]:
        return (row["version"],)

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        kept: dict[tuple[Any, ...], Row] = {}
        for row in rows:  # one per key: the highest version (the later one on a tie)
            key = tuple(row[c] for c in self.key_columns)
            if key not in kept or self.rank(row) >= self.rank(kept[key]):
                kept[key] = row
        stands = [{k: v for k, v in r.items() if k != WITHDRAWN} for r in kept.values() if not r.get(WITHDRAWN)]
        gone = [r for r in kept.values() if r.get(WITHDRAWN)]
        upsert(connection, self.table, stands, self.key_columns, version_column="version")
        if gone:
            t = self.table
            delete = sa.delete(t).where(
                *(t.c[c] == sa.bindparam(f"k_{c}", type_=t.c[c].type) for c in self.key_columns),
                t.c.version <= sa.bindparam("k_version", type_=t.c.version.type),
            )
            connection.execute(delete, [{f"k_{c}": r[c] for c in (*self.key_columns, "version")} for r in gone])
