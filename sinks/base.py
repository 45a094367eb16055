"""The sink contract and the runner that ties SQL transactions to Kafka offset commits.

The contract follows quix-streams' ``sinks/base/sink.py`` and Kafka Connect's ``SinkTask``:

* :meth:`Sink.setup` checks what the sink needs from the database (connections are the runner's engine);
* :meth:`Sink.add` buffers one decoded event, per partition;
* :meth:`Sink.flush` writes the buffered batch on the connection of the transaction the runner opened;
* :meth:`Sink.committed` is told that the batch's transaction committed (before :meth:`Sink.clear`);
* :meth:`Sink.clear` drops the buffer (after a successful flush, and after a failed one before the replay).

:class:`SinkRunner` consumes all sinks' topics with one consumer (auto commit off), decodes each message with its
topic's serde, hands it to the sinks, then writes the whole batch in ONE database transaction. Only after that
transaction has committed (and the batch's dead letters are acknowledged by the broker) are the batch's offsets
committed, synchronously. A failing transaction commits nothing: the runner seeks back to the start of the batch
and re-consumes it after a bounded exponential back-off. Writes are idempotent upserts, so a replay after a crash
(``kill -9`` at any point) converges to the same tables.

Bad input never stops the runner: a message that does not decode, or that a sink refuses, becomes a
:class:`~schemas.models.DeadLetter` (reason, source topic/partition/offset, original bytes) on the source topic's
dead-letter topic, or on the runner's ``dead_letter_topic`` when the source topic has none. A batch that keeps
failing for a reason other than a lost connection is retried one message per transaction, so that a single row
the database rejects goes to the dead-letter topic instead of blocking its partition forever.

Logs name topics, partitions, offsets and error types only; never values, which hold personal data.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Connection, Engine

from hub.failpoints import failpoint
from hub.kafka import consumer_config, producer_config
from hub.settings import Settings
from hub.validation import is_valid_tenant_code
from monitoring.metrics import DeadLetterReason, HubMetrics
from schemas.models import DeadLetter, Event
from schemas.record import now_utc
from schemas.serde import DecodeError, TopicSerde
from sinks.db import SINKS_MIGRATIONS, DatabaseError, make_engine, require_head
from topics.catalog import Topic

log = logging.getLogger("kenshin_hub.sinks")

E = TypeVar("E", bound=Event)
Row = dict[str, Any]

SOURCE_SYSTEM = "kenshin-hub.sinks"
OUTPUT_STEP = "service.outputs"  # the step that produces a service's outputs (connectors.service)
DECODE_STEP = "sinks.decode"
WRITE_STEP = "sinks.write"
BATCH_STEP = "sinks.batch"  # the processing-time histogram's step: one batch written and committed
# Dead letters get a deterministic event id per source position, so a replayed batch re-sends the same letter.
_DEAD_LETTER_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:kenshin-hub:sinks:dead-letter")


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

    def take_outputs(self) -> list[tuple[Topic, Event]]:
        """Events the last :meth:`flush` wants produced (a service's answers), handed over once.

        The runner produces them after the transaction has committed and before the offsets are committed, and waits
        until the broker has them all. A crash in between replays the batch: services keep the outputs of each input
        with its effects, so the replay re-sends the same events (same ``event_id``) instead of acting twice.
        """
        return []

    def committed(self) -> None:
        """The transaction that flushed the buffered batch has committed (called before :meth:`clear`)."""


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


# --- the runner ----------------------------------------------------------------------------------------------


class DeadLetterDeliveryError(RuntimeError):
    """The broker did not acknowledge the batch's dead letters; the batch is replayed."""


@dataclass(frozen=True)
class BatchResult:
    """What one :meth:`SinkRunner.run_once` did."""

    consumed: int = 0
    dead_lettered: int = 0
    committed: bool = False
    failed: bool = False


@dataclass(frozen=True)
class _Letter:
    topic: Topic
    letter: DeadLetter
    reason: DeadLetterReason


def describe_error(exc: BaseException) -> str:
    """A log-safe description of ``exc``: class names and SQLSTATE, never the message (it may hold row values)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return f"KafkaException ({exc.args[0].name()})"
    text = type(exc).__name__
    orig = getattr(exc, "orig", None)
    if orig is not None:
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        text += f" ({type(orig).__name__}" + (f", SQLSTATE {sqlstate}" if sqlstate else "") + ")"
    return text


def is_transient(exc: BaseException) -> bool:
    """True for failures of the connection or the broker (retry as is), False for failures of the data."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | KafkaException
        | DeadLetterDeliveryError
        | ConnectionError
        | TimeoutError,
    )


class SinkRunner:
    """Consume the sinks' topics and write them to SQL, committing offsets only after the data is durable.

    ``dead_letter_topic`` receives the dead letters of source topics that have no ``dlq`` of their own (the
    catalog's ``sinks.dlq.v1``). The engine is built from ``settings.database_url`` unless one is given; the
    database must already be migrated to head (:func:`sinks.db.upgrade`): the runner never creates tables.

    ``metrics`` receives messages in (per delivery), out (per message committed to SQL), batch times and dead
    letters (once delivered); ``heartbeat`` is called at every turn of :meth:`run`'s loop.
    """

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[Sink[Any]],
        *,
        group_id: str,
        registry_client: SchemaRegistryClient,
        dead_letter_topic: Topic,
        engine: Engine | None = None,
        batch_size: int = 500,
        batch_timeout_s: float = 1.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        isolate_after: int = 3,
        dead_letter_timeout_s: float = 30.0,
        consumer_overrides: Mapping[str, str | int | float | bool] | None = None,
        migrations: str = SINKS_MIGRATIONS,
        close_registry: bool = False,
        metrics: HubMetrics | None = None,
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        if not sinks:
            raise ValueError("a SinkRunner needs at least one sink")
        if batch_size < 1 or batch_timeout_s <= 0 or backoff_initial_s < 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("batch_size >= 1, batch_timeout_s > 0 and 0 <= backoff_initial_s <= backoff_max_s")
        if dead_letter_topic.value_type is not DeadLetter:
            raise ValueError(f"{dead_letter_topic.name} does not carry DeadLetter records")
        self.settings = settings
        self.sinks = list(sinks)
        self.group_id = group_id
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.isolate_after = isolate_after
        self.dead_letter_timeout_s = dead_letter_timeout_s
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else make_engine(settings.database_url.reveal())
        self._consumer_overrides = dict(consumer_overrides or {})
        self._registry = registry_client
        self._close_registry = close_registry
        self._output_serdes: dict[str, TopicSerde[Any]] = {}
        self.metrics = metrics if metrics is not None else HubMetrics(CollectorRegistry(), process="sinks")
        self._heartbeat = heartbeat

        self._sinks_by_topic: dict[str, list[Sink[Any]]] = {}
        self._serdes: dict[str, TopicSerde[Any]] = {}
        self._dead_letter_serdes: dict[str, TopicSerde[DeadLetter]] = {}
        for sink in self.sinks:
            name = sink.topic.name
            self._sinks_by_topic.setdefault(name, []).append(sink)
            if name not in self._serdes:
                self._serdes[name] = TopicSerde(sink.topic, registry_client)
                dlq = sink.topic.dlq or dead_letter_topic
                self._dead_letter_serdes[name] = TopicSerde(dlq, registry_client, DeadLetter)

        try:
            require_head(self.engine, migrations)
            for sink in self.sinks:
                sink.setup(self.engine)
        except BaseException:
            if self._owns_engine:
                self.engine.dispose()
            raise

        self._stop = threading.Event()
        self._assignment: set[tuple[str, int]] = set()
        self._assigned_at = time.monotonic()
        self._failures = 0
        self._isolate = False
        self._retry_at = 0.0
        self._closed = False
        self._producer = Producer(producer_config(settings))
        self._consumer = self._new_consumer()

    # --- lifecycle -------------------------------------------------------------------------------------------

    def _new_consumer(self) -> Consumer:
        consumer = Consumer(consumer_config(self.settings, self.group_id, **self._consumer_overrides))
        consumer.subscribe(
            sorted(self._sinks_by_topic), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        return consumer

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment.update((tp.topic, tp.partition) for tp in partitions)
        self._assigned_at = time.monotonic()
        log.info("sinks %s: assigned %d partition(s)", self.group_id, len(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Nothing is buffered between batches (each batch is written and committed before the next poll), so a
        # revocation needs no flush.
        self._assignment.difference_update((tp.topic, tp.partition) for tp in partitions)
        self._assigned_at = time.monotonic()

    @property
    def assignment(self) -> frozenset[tuple[str, int]]:
        return frozenset(self._assignment)

    @property
    def topics(self) -> list[str]:
        """The topics the runner consumes."""
        return sorted(self._sinks_by_topic)

    def database_reachable(self) -> bool:
        """One ``SELECT 1`` on a pooled connection, outside SQLAlchemy's transactions (no SQLite write lock)."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute("SELECT 1")
                return bool(cursor.fetchone())
            finally:
                cursor.close()
        finally:
            connection.close()

    def close(self) -> None:
        """Leave the group, flush pending dead letters and release the engine (if the runner built it)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        finally:
            try:
                if self._producer.flush(self.dead_letter_timeout_s):
                    # Undelivered letters belong to batches whose offsets were not committed: they are re-sent.
                    self._producer.purge()
                self._producer.close()
            finally:
                if self._close_registry:
                    self._registry.close()
                if self._owns_engine:
                    self.engine.dispose()

    def __enter__(self) -> SinkRunner:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch (thread- and signal-handler-safe)."""
        self._stop.set()

    # --- loop ------------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, idle_exit_s: float | None = None) -> None:
        """Process batches until ``stop`` is set (or :meth:`stop` is called).

        With ``idle_exit_s``, also return once partitions are assigned and no message has arrived for that many
        seconds (since the last message or the last change of assignment): "until idle", for tests and one-shot
        catch-up runs.
        """
        if stop is not None:
            self._stop = stop
        last_message = time.monotonic()
        while not self._stop.is_set():
            if self._heartbeat is not None:
                self._heartbeat()
            result = self.run_once()
            now = time.monotonic()
            if result.consumed:
                last_message = now
            elif (
                idle_exit_s is not None
                and self._assignment
                and not result.failed
                and now - max(last_message, self._assigned_at) >= idle_exit_s
            ):
                return

    def run_once(self) -> BatchResult:
        """Consume one batch, write it in one transaction, then commit its offsets; never raises for bad data."""
        wait = self._retry_at - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return BatchResult()
        batch = self._consume()
        if not batch:
            return BatchResult()
        started = time.perf_counter()
        try:
            outputs: list[tuple[Topic, Event]] = []
            letters = self._write_isolated(batch, outputs) if self._isolate else self._write_batch(batch, outputs)
            failpoint("sink.after_commit")  # fault tests: die between the transaction and the outputs
            self._send_outputs(outputs)
            self._send_dead_letters(letters)
            self._count(batch, letters)
        except Exception as exc:  # noqa: BLE001 - any failure: roll back, replay the batch, keep running
            self._on_failure(batch, exc)
            return BatchResult(consumed=len(batch), failed=True)
        finally:
            for sink in self.sinks:
                sink.clear()
        if self._failures:
            log.info("sinks %s: batch written after %d failed attempt(s)", self.group_id, self._failures)
        self._failures = 0
        self._isolate = False
        self._retry_at = 0.0
        committed = self._commit(batch)
        self.metrics.processing_time(BATCH_STEP, time.perf_counter() - started)
        return BatchResult(consumed=len(batch), dead_lettered=len(letters), committed=committed)

    def _count(self, batch: Sequence[Message], letters: Sequence[_Letter]) -> None:
        """Messages out (written and committed) per topic and sink, and the dead letters, once delivered."""
        lettered = {(x.letter.source_topic, x.letter.source_partition, x.letter.source_offset) for x in letters}
        written = Counter(_position(msg)[0] for msg in batch if _position(msg) not in lettered)
        for topic, count in written.items():
            for sink in self._sinks_by_topic[topic]:
                self.metrics.message_out(topic, sink.name, count)
        for item in letters:
            self.metrics.dead_letter(item.letter.source_topic, item.letter.step, item.reason)

    def _consume(self) -> list[Message]:
        batch: list[Message] = []
        for msg in self._consumer.consume(num_messages=self.batch_size, timeout=self.batch_timeout_s):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("sinks %s: consumer error %s", self.group_id, err.name())
                continue
            if msg.topic() is None or msg.partition() is None or msg.offset() is None:
                continue
            batch.append(msg)
        return batch

    # --- writing ---------------------------------------------------------------------------------------------

    def _dispatch(self, msg: Message) -> _Letter | None:
        """Decode ``msg`` and add it to its sinks; a dead letter when that fails."""
        topic, partition, offset = _position(msg)
        serde = self._serdes[topic]
        for sink in self._sinks_by_topic[topic]:
            self.metrics.message_in(topic, sink.name)
        try:
            event = serde.decode(msg.value() or b"", topic)
        except DecodeError as exc:
            return self._letter(msg, DECODE_STEP, str(exc), exc, DeadLetterReason.UNDECODABLE)
        for sink in self._sinks_by_topic[topic]:
            try:
                sink.add(event, msg.key() or b"", partition, offset)
            except Exception as exc:  # noqa: BLE001 - a sink refusing one event dead-letters that event only
                reason = f"{sink.name} refused the event: {describe_error(exc)}"
                return self._letter(msg, sink.name, reason, exc, DeadLetterReason.SINK_REFUSED)
        return None

    def _committed(self) -> None:
        for sink in self.sinks:
            sink.committed()

    def _flush_all(self, connection: Connection) -> list[tuple[Topic, Event]]:
        for sink in self.sinks:
            sink.flush(connection)
        return [out for sink in self.sinks for out in sink.take_outputs()]

    def _write_batch(self, batch: Sequence[Message], outputs: list[tuple[Topic, Event]]) -> list[_Letter]:
        letters = [letter for msg in batch if (letter := self._dispatch(msg)) is not None]
        with self.engine.begin() as connection:
            produced = self._flush_all(connection)
        self._committed()
        outputs.extend(produced)
        return letters

    def _write_isolated(self, batch: Sequence[Message], outputs: list[tuple[Topic, Event]]) -> list[_Letter]:
        """One transaction per message: a message whose row the database rejects becomes a dead letter."""
        log.warning("sinks %s: writing %d message(s) one by one to isolate a failing one", self.group_id, len(batch))
        letters: list[_Letter] = []
        for msg in batch:
            for sink in self.sinks:
                sink.clear()
            letter = self._dispatch(msg)
            if letter is not None:
                letters.append(letter)
                continue
            try:
                with self.engine.begin() as connection:
                    produced = self._flush_all(connection)
                outputs.extend(produced)
            except Exception as exc:
                if is_transient(exc):
                    raise
                reason = f"the database refused the row: {describe_error(exc)}"
                letters.append(self._letter(msg, WRITE_STEP, reason, exc, DeadLetterReason.DATABASE_REFUSED))
            else:
                self._committed()
        return letters

    # --- dead letters ----------------------------------------------------------------------------------------

    def _letter(self, msg: Message, step: str, reason: str, exc: BaseException, category: DeadLetterReason) -> _Letter:
        topic, partition, offset = _position(msg)
        log.warning(
            "sinks %s: %s[%d]@%d dead-lettered at step %s: %s",
            self.group_id,
            topic,
            partition,
            offset,
            step,
            describe_error(exc),
        )
        key = msg.key()
        ts_type, ts_ms = msg.timestamp()
        serde = self._dead_letter_serdes[topic]
        letter = DeadLetter(
            event_id=uuid.uuid5(_DEAD_LETTER_NAMESPACE, f"{self.group_id}:{topic}:{partition}:{offset}"),
            occurred_at=now_utc(),
            tenant=_tenant_of(key, self.settings.tenant),
            source_system=SOURCE_SYSTEM,
            step=step,
            reason=reason,
            error_type=type(exc).__name__,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            source_timestamp=datetime.fromtimestamp(ts_ms / 1000, tz=UTC) if ts_type != 0 else None,
            original_key=key,
            original_value=msg.value(),
        )
        return _Letter(serde.topic, letter, category)

    def _send_dead_letters(self, letters: Iterable[_Letter]) -> None:
        """Produce the batch's dead letters and wait until the broker has them all (before offsets move on)."""
        records = []
        for item in letters:
            serde = self._dead_letter_serdes[item.letter.source_topic]
            records.append((item.topic.name, serde.key(item.letter), serde.value(item.letter)))
        self._produce_all(records, "dead letter")

    def _send_outputs(self, outputs: Sequence[tuple[Topic, Event]]) -> None:
        """Produce the batch's outputs (services' answers), in order, and wait until the broker has them all."""
        records = []
        for topic, event in outputs:
            serde = self._output_serdes.get(topic.name)
            if serde is None:
                serde = self._output_serdes[topic.name] = TopicSerde(topic, self._registry)
            records.append((topic.name, serde.key(event), serde.value(event)))
        self._produce_all(records, "output")
        for (name, count), letter in self._output_counts(outputs):
            self.metrics.message_out(name, OUTPUT_STEP, count)
            if letter is not None:  # a dead letter a service wrote itself (e.g. a 副本 the 中間サーバー refused)
                for _ in range(count):
                    self.metrics.dead_letter(letter.source_topic, letter.step, DeadLetterReason.INVALID)

    @staticmethod
    def _output_counts(
        outputs: Sequence[tuple[Topic, Event]],
    ) -> list[tuple[tuple[str, int], DeadLetter | None]]:
        counted: Counter[str] = Counter(t.name for t, e in outputs if not isinstance(e, DeadLetter))
        result: list[tuple[tuple[str, int], DeadLetter | None]] = [((t, n), None) for t, n in sorted(counted.items())]
        result += [((t.name, 1), e) for t, e in outputs if isinstance(e, DeadLetter)]
        return result

    def _produce_all(self, records: Sequence[tuple[str, bytes, bytes]], what: str) -> None:
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        for name, key, value in records:
            try:
                self._producer.produce(name, key=key, value=value, on_delivery=on_delivery)
            except BufferError:
                self._producer.flush(self.dead_letter_timeout_s)
                self._producer.produce(name, key=key, value=value, on_delivery=on_delivery)
            self._producer.poll(0)
        if not records:
            return
        remaining = self._producer.flush(self.dead_letter_timeout_s)
        if remaining or failures:
            names = sorted({f.name() for f in failures})
            raise DeadLetterDeliveryError(f"{remaining} {what}(s) undelivered, errors: {names or 'timeout'}")

    # --- offsets ---------------------------------------------------------------------------------------------

    def _commit(self, batch: Sequence[Message]) -> bool:
        """Commit the positions after ``batch``, synchronously.

        A failure here loses nothing: the rows are written, and replaying them (after a rebalance) is harmless.
        """
        last: dict[tuple[str, int], int] = {}
        for msg in batch:
            topic, partition, offset = _position(msg)
            last[(topic, partition)] = max(last.get((topic, partition), -1), offset)
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning(
                "sinks %s: offset commit failed (%s); batch may be replayed", self.group_id, describe_error(exc)
            )
            return False
        failed = [tp for tp in result if tp.error is not None]
        for tp in failed:
            log.warning("sinks %s: offset commit of %s[%d] failed", self.group_id, tp.topic, tp.partition)
        return not failed

    def committed_offsets(self, timeout_s: float = 10.0) -> dict[tuple[str, int], int]:
        """The group's committed offsets of the assigned partitions (negative when none)."""
        partitions = [TopicPartition(t, p) for t, p in sorted(self._assignment)]
        if not partitions:
            return {}
        return {(tp.topic, tp.partition): tp.offset for tp in self._consumer.committed(partitions, timeout_s)}

    # --- failures --------------------------------------------------------------------------------------------

    def _on_failure(self, batch: Sequence[Message], exc: BaseException) -> None:
        self._failures += 1
        transient = is_transient(exc)
        if not transient and self._failures >= self.isolate_after:
            self._isolate = True
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        log.error(
            "sinks %s: batch of %d message(s) not written (%s, attempt %d); nothing committed, replaying in %.1fs",
            self.group_id,
            len(batch),
            describe_error(exc),
            self._failures,
            delay,
        )
        self._rewind(batch)

    def _rewind(self, batch: Sequence[Message]) -> None:
        """Seek every partition of ``batch`` back to its first message, so the batch is consumed again."""
        first: dict[tuple[str, int], int] = {}
        for msg in batch:
            topic, partition, offset = _position(msg)
            first[(topic, partition)] = min(first.get((topic, partition), offset), offset)
        try:
            for (topic, partition), offset in first.items():
                self._consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            # Without the seek, later commits could pass over the failed batch; a new consumer resumes from the
            # committed offsets instead.
            log.warning("sinks %s: seek failed (%s); restarting the consumer", self.group_id, describe_error(exc))
            self._consumer.close()
            self._assignment.clear()
            self._consumer = self._new_consumer()


def _position(msg: Message) -> tuple[str, int, int]:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("message without a position")
    return topic, partition, offset


def _tenant_of(key: bytes | None, default: str) -> str:
    """The 団体コード a record key starts with (``012041:…``), or ``default`` when it does not start with one."""
    if key:
        head = key.split(b":", 1)[0]
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            return default
        if is_valid_tenant_code(text):
            return text
    return default
