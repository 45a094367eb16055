"""``{団体コード}.chukan.provision-records.v1`` -> ``provision_records``: the city's own 情報提供等記録, append-only
(a replay changes nothing). The sinks' principal may read the city's own records topic only, so another
municipality's records never reach this store.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from schemas.models import ProvisionRecord
from schemas.record import now_utc
from sinks.base import Row, TableSink
from sinks.db import insert_or_ignore
from sinks.tables import provision_records
from topics.catalog import PROVISION_RECORDS, for_tenant


class ProvisionRecordsSink(TableSink[ProvisionRecord]):
    """Insert-or-ignore by record id: a record is never updated, only deleted by the retention job."""

    table = provision_records
    keep_first = True

    def __init__(self, tenant: str, name: str = "sinks.provision_records") -> None:
        super().__init__(for_tenant(PROVISION_RECORDS, tenant), name)

    def to_row(self, event: ProvisionRecord) -> Row:
        return {
            "record_id": str(event.record_id),
            "tenant": event.tenant,
            "request_id": str(event.request_id),
            "side": event.side.value,
            "requester": event.requester,
            "provider": event.provider,
            "affair_code": event.affair_code,
            "info_name_code": event.info_name_code,
            "items": ",".join(event.items),
            "requested_at": event.requested_at,
            "provided_at": event.provided_at,
            "non_disclosure": event.non_disclosure,
            "outcome": event.outcome.value,
            "request_body": event.request_body,
            "response_body": event.response_body,
            "reason": event.reason,
            "recorded_at": now_utc(),
        }

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        insert_or_ignore(connection, self.table, rows, self.key_columns)
