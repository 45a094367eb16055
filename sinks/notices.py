"""notice.decisions.v1 -> ``notice_decisions``: one row per 繰越受診通知の申出, with the processors' decision."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from schemas.models import NoticeDecision
from sinks.base import Row, TableSink
from sinks.db import insert_or_ignore
from sinks.tables import notice_decisions
from topics.catalog import NOTICE_DECISIONS, Topic


def decision_row(decision: NoticeDecision) -> Row:
    return {
        "tenant": decision.tenant,
        "request_event_id": str(decision.request_event_id),
        "atena_no": decision.atena_no,
        "kind": decision.kind.value,
        "fiscal_year": decision.fiscal_year,
        "channel": decision.channel.value,
        "staff_id": decision.staff_id,
        "issued": decision.issued,
        "refusals": ",".join(r.value for r in decision.refusals),
        "requested_at": decision.occurred_at,
    }


class NoticeDecisionsSink(TableSink[NoticeDecision]):
    """Insert-or-ignore: a request is decided once (its decision derives from the request; a replay is the same)."""

    table = notice_decisions
    keep_first = True

    def __init__(self, topic: Topic = NOTICE_DECISIONS, name: str = "sinks.notice-decisions") -> None:
        super().__init__(topic, name)

    def to_row(self, event: NoticeDecision) -> Row:
        return decision_row(event)

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        insert_or_ignore(connection, self.table, rows, self.key_columns)
