"""The sink contract, and the sinks as one handler of the hub's runtime (:mod:`hub.engine`).

The contract follows quix-streams' ``sinks/base/sink.py`` and Kafka Connect's ``SinkTask``:

* :meth:`Sink.setup` checks what the sink needs from the database (connections are the runner's engine);
* :meth:`Sink.add` buffers one decoded event, per partition;
* :meth:`Sink.flush` writes the buffered batch on the connection of the transaction the runtime opened;
* :meth:`Sink.committed` is told, with that batch's deliveries and outcomes, that a batch's transaction committed
  and its outputs were delivered (the runtime settles a batch after the next one is handled, so a sink must not
  count from its buffer);
* :meth:`Sink.clear` drops the buffer (before each batch, so nothing a failed attempt left behind is written).

:class:`SinkRunner` is the runtime's :class:`~hub.engine.runner.Runner` over a :class:`SinksHandler`: one consumer
for all sinks' topics, the whole batch written in ONE transaction together with the runtime's outbox and stored
offsets, outputs delivered, then offsets committed. Writes are idempotent upserts, and the stored offsets make a
replay after a crash (``kill -9`` at any point) re-send instead of write again. A sink refusing an event
dead-letters that event only; a row the database keeps refusing is isolated to the dead-letter topic by the runtime.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Connection, Engine

from hub.engine.handler import Delivery, Handler, Outcome, Output, Refusal
from hub.engine.retry import describe_error
from hub.engine.runner import Runner
from hub.settings import ProcessName, Settings
from monitoring.metrics import DeadLetterReason, HubMetrics
from schemas.models import Event
from sinks.db import SINKS_MIGRATIONS, DatabaseError, make_engine, require_head
from topics.catalog import Topic

log = logging.getLogger("kenshin_hub.sinks")

E = TypeVar("E", bound=Event)
Row = dict[str, Any]

SOURCE_SYSTEM = "kenshin-hub.sinks"
OUTPUT_STEP = "service.outputs"  # the step that produces a service's outputs (connectors.service)
Position = tuple[int, int]  # partition, offset of the input an output belongs to


# --- the contract --------------------------------------------------------------------------------------------


class Sink(ABC, Generic[E]):
    """One table-writing adapter of one topic.

    ``flush`` is called for every batch, also when this sink received nothing: it must then write nothing. It runs
    inside the runner's transaction and must not commit or roll back itself; raising makes the runner roll the
    whole batch back and replay it.
    """

    topic: Topic
    name: str

    def setup(self, engine: Engine) -> None:
        """Check (once, before consuming) that the database holds what the sink writes to."""

    @abstractmethod
    def add(self, event: E, key: bytes, partition: int, offset: int) -> None:
        """Buffer one decoded event; raising dead-letters this message and keeps the rest of the batch."""

    @abstractmethod
    def flush(self, connection: Connection) -> None:
        """Write the buffered batch on ``connection`` (inside the runner's transaction)."""

    @abstractmethod
    def clear(self) -> None:
        """Forget the buffered batch."""

    def take_outputs(self) -> list[tuple[Position, Output]]:
        """Events the last :meth:`flush` wants produced (a service's answers), each with the (partition, offset) of
        the input that caused it, handed over once.

        The runtime stores them in its outbox in the batch's transaction, produces them after the commit and waits
        until the broker has them all before the offsets move on. A replay re-sends the stored records.
        """
        return []

    def committed(self, done: Sequence[tuple[Delivery, Outcome]]) -> None:
        """A batch's transaction has committed and its outputs are acknowledged: ``done`` holds this sink's
        deliveries of it with their outcomes. It comes from the settled batch itself, not from what the sink
        buffered: the runtime settles a batch after the next one has been acted on (and buffered here).
        """


class TableSink(Sink[E]):
    """A sink that maps each event to one row of one table and writes the batch with one statement.

    Rows are buffered per partition and per primary key; of two rows with the same key in one batch the one with
    the greater :meth:`rank` is kept (the later one on a tie, or the first one when ``keep_first`` is set).
    """

    table: ClassVar[sa.Table]
    keep_first: ClassVar[bool] = False

    def __init__(self, topic: Topic, name: str) -> None:
        self.topic = topic
        self.name = name
        self.key_columns: tuple[str, ...] = tuple(c.name for c in self.table.primary_key.columns)
        self._buffers: dict[int, dict[tuple[Any, ...], Row]] = {}

    @abstractmethod
    def to_row(self, event: E) -> Row:
        """The table row of ``event`` (every column, always the same keys)."""

    @abstractmethod
    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        """Write ``rows`` (one per key) idempotently."""

    def rank(self, row: Row) -> tuple[Any, ...]:
        """Order of two rows of one key; the greater one is the newer state."""
        return ()

    def setup(self, engine: Engine) -> None:
        if not sa.inspect(engine).has_table(self.table.name):
            raise DatabaseError(f"table {self.table.name} does not exist: run the migrations (sinks.db.upgrade)")

    def add(self, event: E, key: bytes, partition: int, offset: int) -> None:
        row = self.to_row(event)
        pk = tuple(row[c] for c in self.key_columns)
        buffer = self._buffers.setdefault(partition, {})
        old = buffer.get(pk)
        if old is None or (not self.keep_first and self.rank(row) >= self.rank(old)):
            buffer[pk] = row

    def rows(self) -> list[Row]:
        return [row for buffer in self._buffers.values() for row in buffer.values()]

    def flush(self, connection: Connection) -> None:
        rows = self.rows()
        if rows:
            self.write(connection, rows)

    def clear(self) -> None:
        self._buffers.clear()


# --- the sinks as one handler of the runtime ----------------------------------------------------------------


class SinksHandler(Handler):
    """The sinks of one process as one :class:`~hub.engine.handler.Handler`: every sink of a message's topic buffers
    it, then every sink flushes its batch on the runtime's transaction.
    """

    name = "sinks"

    def __init__(self, sinks: Sequence[Sink[Any]], metrics: HubMetrics, migrations: str = SINKS_MIGRATIONS) -> None:
        if not sinks:
            raise ValueError("a SinkRunner needs at least one sink")
        self.sinks = list(sinks)
        self.migrations = migrations
        self.metrics = metrics
        self.by_topic: dict[str, list[Sink[Any]]] = {}
        for sink in self.sinks:
            self.by_topic.setdefault(sink.topic.name, []).append(sink)
        self.topics = tuple(dict.fromkeys(s.topic for s in self.sinks))

    def setup(self, engine: Engine) -> None:
        require_head(engine, self.migrations)
        for sink in self.sinks:
            sink.setup(engine)

    def steps(self, topic: Topic) -> tuple[str, ...]:
        return tuple(s.name for s in self.by_topic[topic.name])

    def output_step(self, topic: Topic) -> str:
        return OUTPUT_STEP

    def handle(self, conn: Connection, deliveries: Sequence[Delivery]) -> list[Outcome]:
        for sink in self.sinks:
            sink.clear()  # whatever a failed attempt left behind
        outcomes = [self._add(d) for d in deliveries]
        for sink in self.sinks:
            sink.flush(conn)
        # Outputs (services' answers) belong to the delivery that caused them; a plain table sink has none.
        taken: dict[tuple[str, int, int], list[Output]] = {}
        for sink in self.sinks:
            for (partition, offset), out in sink.take_outputs():
                taken.setdefault((sink.topic.name, partition, offset), []).append(out)
        return [
            o if isinstance(o, Refusal) else taken.get((d.topic.name, d.partition, d.offset), [])
            for d, o in zip(deliveries, outcomes, strict=True)
        ]

    def _add(self, d: Delivery) -> Outcome:
        for sink in self.by_topic[d.topic.name]:
            try:
                sink.add(d.event, d.key, d.partition, d.offset)
            except Exception as exc:  # noqa: BLE001 - a sink refusing one event dead-letters that event only
                reason = f"{sink.name} refused the event: {describe_error(exc)}"
                return Refusal(sink.name, reason, exc, DeadLetterReason.SINK_REFUSED)
        return []

    def committed(self, deliveries: Sequence[Delivery], outcomes: Sequence[Outcome]) -> None:
        written = Counter(d.topic.name for d in deliveries)
        for topic, count in written.items():
            for sink in self.by_topic[topic]:
                self.metrics.message_out(topic, sink.name, count)
        by_topic: dict[str, list[tuple[Delivery, Outcome]]] = {}
        for d, o in zip(deliveries, outcomes, strict=True):
            by_topic.setdefault(d.topic.name, []).append((d, o))
        for topic, done in by_topic.items():
            for sink in self.by_topic[topic]:
                sink.committed(done)


class SinkRunner(Runner):
    """A :class:`~hub.engine.runner.Runner` over table sinks (the `run sinks` process and the services)."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[Sink[Any]],
        *,
        group_id: str,
        registry_client: SchemaRegistryClient,
        dead_letter_topic: Topic,
        engine: Engine | None = None,
        migrations: str = SINKS_MIGRATIONS,
        process: ProcessName = "sinks",
        metrics: HubMetrics | None = None,
        **options: Any,
    ) -> None:
        metrics = metrics if metrics is not None else HubMetrics(CollectorRegistry(), process=process)
        handler = SinksHandler(sinks, metrics, migrations)
        owns = engine is None
        super().__init__(
            settings,
            handler,
            group_id=group_id,
            registry_client=registry_client,
            dead_letter_topic=dead_letter_topic,
            engine=engine if engine is not None else make_engine(settings.database_url.reveal()),
            process=process,
            source_system=SOURCE_SYSTEM,
            owns_engine=owns,
            metrics=metrics,
            **options,
        )
        self.sinks = handler.sinks
