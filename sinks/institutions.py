"""hub.institutions.v1 -> ``institution_versions``: every recorded 実施医療機関 change, as staff list and show them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from processors.rules.institutions import encode_kinds
from schemas.models import InstitutionChange
from sinks.base import Row, TableSink
from sinks.db import insert_or_ignore
from sinks.tables import institution_versions
from topics.catalog import INSTITUTION_CHANGES, Topic


def institution_row(change: InstitutionChange) -> Row:
    return {
        "tenant": change.tenant,
        "event_id": str(change.event_id),
        "code": change.code,
        "name": change.name,
        "kinds": encode_kinds(change.kinds),
        "group_screening": change.group,
        "follow_up": change.follow_up,
        "valid_from": change.valid_from,
        "valid_to": change.valid_to,
        "staff_id": change.staff_id,
        "reason": change.reason,
        "recorded_at": change.occurred_at,
    }


class InstitutionsSink(TableSink[InstitutionChange]):
    """Insert-or-ignore: a change is recorded once (a replay is the same event)."""

    table = institution_versions
    keep_first = True

    def __init__(self, topic: Topic = INSTITUTION_CHANGES, name: str = "sinks.institutions") -> None:
        super().__init__(topic, name)

    def to_row(self, event: InstitutionChange) -> Row:
        return institution_row(event)

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        insert_or_ignore(connection, self.table, rows, self.key_columns)
