"""chukan.staff-operations.v1 -> metrics: staff logins and operations counted for Prometheus.

Staff work through short-lived CLI commands, which record every login and operation in SQL themselves (the
``staff_operations`` table: the audit trail must not depend on the broker) and then on this topic. The sinks
process is the long-running consumer of the hub's topics, so it is where they are counted: this sink writes
nothing, and counts a batch's operations once the batch's transaction has committed (a replayed batch that had
not committed is not counted twice).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from hub.engine.handler import Delivery, Outcome
from monitoring.metrics import HubMetrics
from schemas.models import StaffOperation
from sinks.base import Sink
from topics.catalog import STAFF_OPERATIONS, Topic


class StaffActivitySink(Sink[StaffOperation]):
    """Counts ``kenshin_hub_staff_logins_total`` and ``kenshin_hub_staff_operations_total``."""

    def __init__(self, metrics: HubMetrics, topic: Topic = STAFF_OPERATIONS, name: str = "sinks.staff") -> None:
        self.topic = topic
        self.name = name
        self.metrics = metrics

    def add(self, event: StaffOperation, key: bytes, partition: int, offset: int) -> None:
        """Nothing to buffer: the operations are counted from the committed batch itself."""

    def flush(self, connection: Connection) -> None:
        """Nothing to write: the staff commands wrote the row before they published the event."""

    def committed(self, done: Sequence[tuple[Delivery, Outcome]]) -> None:
        for delivery, _outcome in done:
            event = delivery.event
            if isinstance(event, StaffOperation):
                self.metrics.staff_operation(event.operation, event.outcome)

    def clear(self) -> None:
        """Nothing buffered."""
