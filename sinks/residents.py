"""residents.v1 -> ``residents``: the current state of each person, newest version wins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from schemas.models import ResidentState
from sinks.base import Row, TableSink
from sinks.db import upsert
from sinks.tables import residents
from topics.catalog import RESIDENTS, Topic


def resident_row(state: ResidentState) -> Row:
    person = state.person
    return {
        "tenant": state.tenant,
        "atena_no": state.atena_no,
        "my_number": state.my_number,
        "name": person.name,
        "name_kana": person.name_kana,
        "sex": person.sex.value,
        "birth_date": person.birth_date,
        "address": person.address,
        "status": state.status.value,
        "resident_since": state.resident_since,
        "ceased_on": state.ceased_on,
        "support_measure": state.support_measure,
        "household_no": state.household_no,
        "previous_municipality": state.previous_municipality,
        "next_municipality": state.next_municipality,
        "version": state.version,
        "updated_at": state.occurred_at,
    }


class ResidentsSink(TableSink[ResidentState]):
    """Upsert guarded by the state's ``version``: a replayed older state never overwrites a newer one."""

    table = residents

    def __init__(self, topic: Topic = RESIDENTS, name: str = "sinks.residents") -> None:
        super().__init__(topic, name)

    def to_row(self, event: ResidentState) -> Row:
        return resident_row(event)

    def rank(self, row: Row) -> tuple[Any, ...]:
        return (row["version"],)

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        upsert(connection, self.table, rows, self.key_columns, version_column="version")
