"""The runner: consume, decode, act in one transaction with the outbox and offsets, deliver, then commit offsets.

Effectively once, by stored effects (see ``hub/engine/README.md`` for the argument):

* the batch's state changes, its encoded outputs (``runtime_outbox``) and the next offset of every partition it
  read (``runtime_offsets``) are written in ONE transaction of the process's own store;
* only after that transaction commits are the outputs produced, and only after the broker has acknowledged every
  one of them are the offsets committed to Kafka;
* a message below its partition's stored offset has been acted on already (a crash after the commit, a rebalance):
  it is not acted on again, and its stored outputs are re-sent instead. Outbox rows are deleted once Kafka has
  their offsets.

Bad data never stops the runner: a message that does not decode, or that the handler refuses, becomes a dead letter
(its outbox record) on its topic's dead-letter topic. Outages (broker, registry, database, a concurrent worker) roll
the batch back and read it again after a back-off; they never dead-letter. Logs name topics, partitions, offsets
and error types only: values hold personal data.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc as sa_exc
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Connection, Engine

from hub.engine import deadletter, store
from hub.engine.handler import Delivery, Handler, Outcome, Refusal
from hub.engine.retry import Backoff, DeliveryFailed, StaleOffsets, describe_error, is_transient
from hub.failpoints import failpoint
from hub.kafka import consumer_config, producer_config
from hub.settings import ProcessName, Settings
from monitoring.metrics import DeadLetterReason, HubMetrics
from schemas.models import DeadLetter
from schemas.serde import DecodeError, TopicSerde
from sinks.db import DatabaseError
from topics.catalog import Topic

log = logging.getLogger("kenshin_hub.engine")

Position = tuple[str, int]  # topic name, partition
MAX_MESSAGE_BYTES = 1_000_000  # the largest record the hub produces (the broker's default limit is 1 MiB)
RECOMMIT_AFTER_S = 1.0  # an idle runner commits again what was not confirmed, this long after the last commit


@dataclass(frozen=True)
class BatchResult:
    """What one :meth:`Runner.run_once` did."""

    consumed: int = 0
    dead_lettered: int = 0
    replayed: int = 0
    committed: bool = False
    failed: bool = False


@dataclass
class _Item:
    """One consumed message on its way through a batch."""

    msg: Message
    topic: Topic
    partition: int
    offset: int
    delivery: Delivery | None = None
    letter: DeadLetter | None = None
    letter_reason: DeadLetterReason | None = None
    records: list[store.Record] | None = None
    outcome: Outcome | None = None


@dataclass
class _InFlight:
    """A batch whose transaction committed and whose outputs are produced, awaiting acknowledgement: its offsets
    are committed once the broker has acknowledged every record (:meth:`Runner._settle`).
    """

    msgs: list[Message]
    items: list[_Item]
    failures: list[KafkaError]
    sent: int


class Runner:
    """Run ``handler`` over its topics on ``engine`` (the process's own store, migrated to head beforehand).

    ``dead_letter_topic`` receives the dead letters of source topics without a ``dlq`` of their own. ``metrics``
    counts messages in/out, batch times, retries and dead letters; ``heartbeat`` is called at every turn of
    :meth:`run`. ``batch_timeout_s`` bounds how long an idle poll waits: a batch is returned as soon as one message
    is there, with whatever else has already been fetched (up to ``batch_size``).
    """

    def __init__(
        self,
        settings: Settings,
        handler: Handler,
        *,
        group_id: str,
        registry_client: SchemaRegistryClient,
        dead_letter_topic: Topic,
        engine: Engine,
        process: ProcessName = "sinks",
        source_system: str | None = None,
        batch_size: int = 500,
        batch_timeout_s: float = 0.5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        isolate_after: int = 3,
        delivery_timeout_s: float = 30.0,
        consumer_overrides: Mapping[str, str | int | float | bool] | None = None,
        owns_engine: bool = False,
        close_registry: bool = False,
        metrics: HubMetrics | None = None,
        heartbeat: Callable[[], None] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        store_prefix: str = "",
    ) -> None:
        if batch_size < 1 or batch_timeout_s <= 0 or backoff_initial_s < 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("batch_size >= 1, batch_timeout_s > 0 and 0 <= backoff_initial_s <= backoff_max_s")
        if dead_letter_topic.value_type is not DeadLetter:
            raise ValueError(f"{dead_letter_topic.name} does not carry DeadLetter records")
        self.settings = settings
        self.handler = handler
        self.group_id = group_id
        self.engine = engine
        self.source_system = source_system or f"kenshin-hub.{process}"
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.isolate_after = isolate_after
        self.delivery_timeout_s = delivery_timeout_s
        self.max_message_bytes = max_message_bytes
        self.metrics = metrics if metrics is not None else HubMetrics(CollectorRegistry(), process=process)
        self._heartbeat = heartbeat
        self._registry = registry_client
        self._close_registry = close_registry
        self._owns_engine = owns_engine
        self._consumer_overrides = dict(consumer_overrides or {})
        self._topics = {t.name: t for t in handler.topics}
        self._dead_letter_topic = dead_letter_topic
        self._serdes: dict[str, TopicSerde[Any]] = {}
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._isolate = False
        self._cleanup: dict[Position, int] = {}  # outbox rows below these offsets are committed in Kafka
        self._inflight: _InFlight | None = None  # the previous batch, its outputs not yet acknowledged
        self._requested: dict[Position, int] = {}  # offsets asked to commit and not confirmed yet
        self._undelivered: list[Message] = []  # a settled batch whose outputs failed: to be read again
        self._last_commit_at = 0.0  # monotonic time of the last commit asked for
        self._topic_ids: dict[str, str] = {}
        self._stop = threading.Event()
        self._assignment: set[Position] = set()
        self._assigned_at = time.monotonic()
        self._closed = False
        try:
            handler.setup(engine)
            self._offsets, self._outbox = _tables(engine, store_prefix)
            self._sql = store.statements(self._offsets, self._outbox)
        except BaseException:
            if owns_engine:
                engine.dispose()
            raise
        # Sent after 5 ms rather than 20: the batch in flight is settled when the next one is done, which takes
        # about as long, so a longer linger would be waited for.
        self._producer = Producer(producer_config(settings, **{"linger.ms": 5}))
        self._consumer = self._new_consumer()

    # --- lifecycle -------------------------------------------------------------------------------------------

    def _new_consumer(self) -> Consumer:
        conf = consumer_config(self.settings, self.group_id, **self._consumer_overrides)
        consumer = Consumer({**conf, "on_commit": self._on_commit})
        consumer.subscribe(
            sorted(self._topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        return consumer

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment.update((tp.topic, tp.partition) for tp in partitions)
        self._assigned_at = time.monotonic()
        log.info("%s: assigned %d partition(s)", self.group_id, len(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Nothing of a partition is buffered between batches but the in-flight batch, whose state is durable; its
        # offsets are committed now if its outputs are acknowledged (else the partitions' next owner replays it).
        self._settle_quietly()
        gone = [(tp.topic, tp.partition) for tp in partitions]
        for pos in gone:
            self._requested.pop(pos, None)
        self._assignment.difference_update(gone)
        self._assigned_at = time.monotonic()
        self.handler.revoked(gone)

    @property
    def assignment(self) -> frozenset[Position]:
        return frozenset(self._assignment)

    @property
    def topics(self) -> list[str]:
        """The topics the runner consumes."""
        return sorted(self._topics)

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
        """Leave the group, flush what is in flight and release the engine (if the runner owns it)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._settle_quietly()
            self._consumer.close()
        finally:
            try:
                if self._producer.flush(self.delivery_timeout_s):
                    # Undelivered records belong to batches whose offsets were not committed: the outbox re-sends.
                    self._producer.purge()
            finally:
                if self._close_registry:
                    self._registry.close()
                if self._owns_engine:
                    self.engine.dispose()

    def __enter__(self) -> Runner:
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
        """One batch, start to end; never raises for bad data or an outage (it rolls back and replays)."""
        wait = self._backoff.wait_s()
        if wait > 0 and self._stop.wait(wait):
            return BatchResult()
        # While a batch's outputs are in flight, only what is already fetched is taken: when nothing is, the
        # batch is settled at once instead of after an idle poll's timeout.
        if self._undelivered:  # a batch settled while partitions were revoked, and its outputs failed
            self._on_failure([], DeliveryFailed("the outputs of a batch settled at a rebalance failed"))
            return BatchResult(failed=True)
        msgs = self._consume(0.0 if self._inflight is not None else self.batch_timeout_s)
        if not msgs:
            if self._inflight is None:
                return BatchResult(committed=self._recommit())
            try:
                return BatchResult(committed=self._settle())
            except Exception as exc:  # noqa: BLE001 - undelivered: replay the batch, keep running
                self._on_failure([], exc)
                return BatchResult(failed=True)
        started = time.perf_counter()
        items: list[_Item] = []
        try:
            items = self._decode(msgs)
            replayed = sum(self._transact_isolated(items)) if self._isolate else self._transact(items)
            failpoint("sink.after_commit")  # fault tests: die between the transaction and the outputs
            committed = self._settle()
            self._produce(msgs, items)
        except Exception as exc:  # noqa: BLE001 - roll back, replay the batch, keep running
            with contextlib.suppress(Exception):  # the previous batch is done unless its own delivery failed
                self._settle()
            self._on_failure(msgs, exc)
            return BatchResult(consumed=len(msgs), failed=True)
        if self._backoff.failures:
            log.info("%s: batch done after %d failed attempt(s)", self.group_id, self._backoff.failures)
        self._backoff.succeeded()
        self._isolate = False
        self.metrics.processing_time(f"{self.handler.name}.batch", time.perf_counter() - started)
        letters = sum(1 for i in items if i.letter is not None)
        return BatchResult(consumed=len(msgs), dead_lettered=letters, replayed=replayed, committed=committed)

    def _consume(self, timeout_s: float) -> list[Message]:
        """What is there: the first message as soon as it arrives, then whatever else is already fetched."""
        first = self._consumer.poll(timeout_s)
        if first is None:
            return []
        raw = [first]
        if self.batch_size > 1:
            raw += self._consumer.consume(num_messages=self.batch_size - 1, timeout=0)
        batch: list[Message] = []
        for msg in raw:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error %s", self.group_id, err.name())
                continue
            if msg.topic() is None or msg.partition() is None or msg.offset() is None:
                continue
            batch.append(msg)
        return batch

    # --- decoding --------------------------------------------------------------------------------------------

    def _serde(self, topic: Topic) -> TopicSerde[Any]:
        serde = self._serdes.get(topic.name)
        if serde is None:
            serde = self._serdes[topic.name] = TopicSerde(topic, self._registry)
        return serde

    def _decode(self, msgs: Sequence[Message]) -> list[_Item]:
        """Decode every message; one that is not a valid event becomes a dead letter. An outage raises."""
        items: list[_Item] = []
        for name, count in Counter(str(msg.topic()) for msg in msgs).items():
            for step in self.handler.steps(self._topics[name]):
                self.metrics.message_in(name, step, count)
        for msg in msgs:
            name, partition, offset = _position(msg)
            topic = self._topics[name]
            item = _Item(msg, topic, partition, offset)
            if msg.value() is None and topic.cleanup_policy == "compact":
                # A tombstone (retention deleted the key, hub/retention.py): nothing to act on; its offset is stored
                # with the batch like any other.
                items.append(item)
                continue
            try:
                event = self._serde(topic).decode(msg.value() or b"", name)
            except DecodeError as exc:
                self._letter(item, self.handler.decode_step(topic), str(exc), exc, DeadLetterReason.UNDECODABLE)
            else:
                item.delivery = Delivery(topic, partition, offset, msg.key() or b"", event)
            items.append(item)
        return items

    # --- the transaction -------------------------------------------------------------------------------------

    def _transact(self, items: Sequence[_Item], failed: BaseException | None = None) -> int:
        """Act on ``items`` in one transaction with their outbox and offsets; the number of replayed messages.

        With ``failed`` (isolation), the handler is not called: the one item becomes a dead letter of ``failed``.
        """
        with self.engine.begin() as conn:
            positions = sorted({(i.topic.name, i.partition) for i in items})
            stored = self._stored_offsets(conn, positions)
            self._delete_committed(conn)
            fresh = [i for i in items if i.offset >= stored.get((i.topic.name, i.partition), -1)]
            replays = [i for i in items if i.offset < stored.get((i.topic.name, i.partition), -1)]
            self._load_outbox(conn, replays)
            for i in replays:
                i.letter = None  # a replayed message is not acted on: its stored records stand for it
            if failed is not None:
                for i in fresh:
                    reason = f"the database refused the row: {describe_error(failed)}"
                    self._letter(i, f"{self.handler.name}.write", reason, failed, DeadLetterReason.DATABASE_REFUSED)
            else:
                self._act(conn, [i for i in fresh if i.delivery is not None and i.letter is None])
            for i in fresh:
                i.records = self._encode(i)
            rows = [
                {
                    "group_id": self.group_id,
                    "topic": topic,
                    "partition": partition,
                    "first_offset": min(i.offset for i in group),
                    "last_offset": max(i.offset for i in group),
                    "records": store.pack((i.offset, *r) for i in group for r in i.records or ()),
                }
                for (topic, partition), group in sorted(_by_position(fresh).items())
                if any(i.records for i in group)
            ]
            if rows:
                conn.execute(self._sql.insert_outbox, rows)
            self._store_offsets(conn, stored, fresh)
        return len(replays)

    def _transact_isolated(self, items: Sequence[_Item]) -> Iterable[int]:
        """One transaction per message: a message whose writes the database refuses becomes a dead letter."""
        log.warning("%s: acting on %d message(s) one by one to isolate a failing one", self.group_id, len(items))
        for item in items:
            try:
                yield self._transact([item])
            except Exception as exc:
                if is_transient(exc):
                    raise
                yield self._transact([item], failed=exc)

    def _act(self, conn: Connection, items: Sequence[_Item]) -> None:
        if not items:
            return
        outcomes = self.handler.handle(conn, [i.delivery for i in items if i.delivery is not None])
        if len(outcomes) != len(items):
            raise RuntimeError(f"{self.handler.name} returned {len(outcomes)} outcomes for {len(items)} deliveries")
        for item, outcome in zip(items, outcomes, strict=True):
            item.outcome = outcome
            if isinstance(outcome, Refusal):
                self._letter(item, outcome.step, outcome.reason, outcome.error, outcome.category)

    def _encode(self, item: _Item) -> list[store.Record]:
        if item.letter is not None:
            serde = self._serde(self._dlq_of(item.topic))
            return [(serde.topic.name, serde.key(item.letter), serde.value(item.letter))]
        if item.outcome is None or isinstance(item.outcome, Refusal):
            return []
        records = []
        for topic, event in item.outcome:
            serde = self._serde(topic)
            records.append((topic.name, serde.key(event), serde.value(event)))
        return records

    def _topic_id(self, topic: str) -> str:
        """The Kafka id of ``topic`` (asked once; a topic deleted and created again has a new one)."""
        known = self._topic_ids.get(topic)
        if known is None:
            admin = AdminClient(dict(self.settings.kafka_config()))
            futures = admin.describe_topics(TopicCollection(sorted(self._topics)), request_timeout=30)
            for name, future in futures.items():
                self._topic_ids[name] = str(future.result(timeout=60).topic_id)
            known = self._topic_ids[topic]
        return known

    def _stored_offsets(self, conn: Connection, positions: Sequence[Position]) -> dict[Position, int]:
        t, box = self._offsets, self._outbox
        out: dict[Position, int] = {}
        for topic in sorted({p[0] for p in positions}):
            parts = [p[1] for p in positions if p[0] == topic]
            current = self._topic_id(topic)
            found = conn.execute(
                self._sql.read_offsets, {"w_group": self.group_id, "w_topic": topic, "w_partitions": parts}
            )
            for partition, next_offset, topic_id in found:
                if topic_id == current:
                    out[(topic, int(partition))] = int(next_offset)
                    continue
                log.warning("%s: %s was created again; its old stored offsets are dropped", self.group_id, topic)
                for table in (t, box):
                    conn.execute(
                        sa.delete(table).where(
                            table.c.group_id == self.group_id, table.c.topic == topic, table.c.partition == partition
                        )
                    )
        return out

    def _store_offsets(self, conn: Connection, stored: Mapping[Position, int], fresh: Sequence[_Item]) -> None:
        """The next offset of every partition acted on, compare-and-set against what the batch read."""
        upto: dict[Position, int] = {}
        for i in fresh:
            pos = (i.topic.name, i.partition)
            upto[pos] = max(upto.get(pos, -1), i.offset + 1)
        for (topic, partition), next_offset in sorted(upto.items()):
            old = stored.get((topic, partition))
            if old is None:
                row = {"group_id": self.group_id, "topic": topic, "partition": partition, "next_offset": next_offset}
                try:
                    with conn.begin_nested():
                        conn.execute(self._sql.insert_offsets, {**row, "topic_id": self._topic_id(topic)})
                except sa_exc.IntegrityError as exc:
                    raise StaleOffsets(f"{topic}[{partition}] was first acted on by another worker") from exc
            else:
                where = {"w_group": self.group_id, "w_topic": topic, "w_partition": partition, "w_old": old}
                done = conn.execute(self._sql.advance_offsets, {**where, "next_offset": next_offset})
                if done.rowcount != 1:
                    raise StaleOffsets(f"{topic}[{partition}] moved on since the batch read it")

    def _load_outbox(self, conn: Connection, replays: Sequence[_Item]) -> None:
        """The stored records of replayed messages (none when they produced nothing)."""
        if not replays:
            return
        t = self._outbox
        wanted = {(i.topic.name, i.partition, i.offset): i for i in replays}
        for (topic, partition), group in _by_position(replays).items():
            low, high = min(i.offset for i in group), max(i.offset for i in group)
            query = sa.select(t.c.records).where(
                t.c.group_id == self.group_id,
                t.c.topic == topic,
                t.c.partition == partition,
                t.c.first_offset <= high,
                t.c.last_offset >= low,
            )
            for (blob,) in conn.execute(query):
                for offset, name, key, value in store.unpack(bytes(blob)):
                    item = wanted.get((topic, partition, offset))
                    if item is not None:
                        item.records = [*(item.records or ()), (name, key, value)]
        for i in replays:
            if i.records is None:
                i.records = []

    def _delete_committed(self, conn: Connection) -> None:
        """Drop outbox rows whose offsets Kafka has (committed by an earlier batch)."""
        for (topic, partition), below in sorted(self._cleanup.items()):
            where = {"w_group": self.group_id, "w_topic": topic, "w_partition": partition, "w_below": below}
            conn.execute(self._sql.delete_outbox_below, where)
        self._cleanup.clear()

    # --- delivery and offsets --------------------------------------------------------------------------------

    def _produce(self, msgs: list[Message], items: list[_Item]) -> None:
        """Produce every record of the batch in order, without waiting: the batch is in flight until
        :meth:`_settle`, which the next batch calls after its own transaction (the broker's acknowledgements of one
        batch arrive while the next is decoded and acted on).
        """
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err)

        sent = 0
        for item in items:
            for name, key, value in item.records or ():
                while True:
                    try:
                        self._producer.produce(name, key=key, value=value, on_delivery=on_delivery)
                        break
                    except BufferError:
                        self._producer.poll(0.1)
                sent += 1
        self._inflight = _InFlight(msgs, items, failures, sent)

    def _settle(self, *, final: bool = False) -> bool:
        """Wait until the broker has acknowledged every record of the batch in flight, then commit its offsets
        (asynchronously; synchronously when ``final``: closing or giving partitions away). True when a commit was
        made. Undelivered records raise :class:`DeliveryFailed` (the caller replays the batch: its stored records
        are re-sent) and commit nothing.
        """
        batch, self._inflight = self._inflight, None
        if batch is None:
            if final and self._requested:
                self._commit_sync()
            return False
        remaining = self._producer.flush(self.delivery_timeout_s) if batch.sent else 0
        if remaining or batch.failures:
            names = sorted({f.name() for f in batch.failures})
            self._undelivered = batch.msgs
            raise DeliveryFailed(f"{remaining} record(s) undelivered, errors: {names or 'timeout'}")
        committed = self._commit(batch.msgs, final=final)
        self._count(batch.items)
        return committed

    def _settle_quietly(self) -> None:
        """Settle the batch in flight with a synchronous commit (a rebalance, closing); undelivered outputs are
        logged, and the batch is read again on the next turn (the partitions' next owner replays it otherwise).
        """
        try:
            self._settle(final=True)
        except DeliveryFailed as exc:
            log.warning("%s: %s; the batch will be read again", self.group_id, exc)

    def _commit(self, msgs: Sequence[Message], *, final: bool = False) -> bool:
        """Commit the positions after the batch. Asynchronously: the store knows what is done, so a commit that is
        lost only makes a restart re-read (and skip) a batch; the outbox rows go once the commit is confirmed
        (:meth:`_on_commit`).
        """
        for msg in msgs:
            topic, partition, offset = _position(msg)
            self._requested[(topic, partition)] = max(self._requested.get((topic, partition), -1), offset + 1)
        if final:
            return self._commit_sync()
        return self._commit_async()

    def _recommit(self) -> bool:
        """When idle: commit again what was asked for and not confirmed (a commit refused during a rebalance, say
        ILLEGAL_GENERATION). The consumer's position has moved past those messages, so nothing else would commit
        them and the group would lag for ever. At most once a second; True when a commit was asked for.
        """
        if not self._requested or time.monotonic() - self._last_commit_at < RECOMMIT_AFTER_S:
            return False
        return self._commit_async()

    def _commit_async(self) -> bool:
        """Every position asked for and not confirmed yet (the batch's and any refused earlier), asynchronously."""
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(self._requested.items())]
        self._last_commit_at = time.monotonic()
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.warning(
                "%s: offset commit failed (%s); the batch may be read again", self.group_id, describe_error(exc)
            )
            return False
        return True

    def _commit_sync(self) -> bool:
        """Every position asked for and not confirmed yet, synchronously. What is refused stays asked for: an idle
        runner commits it again (:meth:`_recommit`).
        """
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(self._requested.items())]
        if not offsets:
            return False
        self._last_commit_at = time.monotonic()
        try:
            result = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning(
                "%s: offset commit failed (%s); the batch may be read again", self.group_id, describe_error(exc)
            )
            return False
        self._on_commit(None, result)
        return all(tp.error is None for tp in result)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of a commit (served by ``poll``): the outbox rows below it can go."""
        if err is not None:
            log.warning("%s: offset commit failed (%s); the batch may be read again", self.group_id, err.name())
            return
        for tp in partitions:
            if tp.error is not None:
                log.warning("%s: offset commit of %s[%d] failed", self.group_id, tp.topic, tp.partition)
                continue
            pos = (tp.topic, tp.partition)
            self._cleanup[pos] = max(self._cleanup.get(pos, -1), tp.offset)
            if self._requested.get(pos, -1) <= tp.offset:
                self._requested.pop(pos, None)

    def committed_offsets(self, timeout_s: float = 10.0) -> dict[Position, int]:
        """The group's committed offsets of the assigned partitions (negative when none)."""
        partitions = [TopicPartition(t, p) for t, p in sorted(self._assignment)]
        if not partitions:
            return {}
        return {(tp.topic, tp.partition): tp.offset for tp in self._consumer.committed(partitions, timeout_s)}

    # --- dead letters, metrics, failures ---------------------------------------------------------------------

    def _dlq_of(self, topic: Topic) -> Topic:
        return topic.dlq or self._dead_letter_topic

    def _letter(self, item: _Item, step: str, reason: str, exc: BaseException, category: DeadLetterReason) -> None:
        log.warning(
            "%s: %s[%d]@%d dead-lettered at step %s: %s",
            self.group_id,
            item.topic.name,
            item.partition,
            item.offset,
            step,
            describe_error(exc),
        )
        ts_type, ts_ms = item.msg.timestamp()
        item.letter = deadletter.build(
            group_id=self.group_id,
            source_system=self.source_system,
            default_tenant=self.settings.tenant,
            step=step,
            reason=reason,
            exc=exc,
            topic=item.topic.name,
            partition=item.partition,
            offset=item.offset,
            key=item.msg.key(),
            value=item.msg.value(),
            timestamp_ms=ts_ms if ts_type != 0 else None,
            max_bytes=self.max_message_bytes,
        )
        item.letter_reason = category

    def _count(self, items: Sequence[_Item]) -> None:
        done = [i for i in items if i.delivery is not None and i.letter is None and i.outcome is not None]
        out: Counter[tuple[str, str]] = Counter()
        for item in items:
            if item.letter is not None and item.letter_reason is not None:
                self.metrics.dead_letter(item.topic.name, item.letter.step, item.letter_reason)
                out[(self._dlq_of(item.topic).name, self.handler.output_step(item.topic))] += 1
            elif item.outcome is not None and not isinstance(item.outcome, Refusal):
                step = self.handler.output_step(item.topic)
                for topic, event in item.outcome:
                    if isinstance(event, DeadLetter):  # a dead letter the handler wrote itself
                        self.metrics.dead_letter(event.source_topic, event.step, DeadLetterReason.INVALID)
                    else:
                        out[(topic.name, step)] += 1
        for (name, step), count in out.items():
            self.metrics.message_out(name, step, count)
        if done:
            self.handler.committed(
                [i.delivery for i in done if i.delivery is not None],
                [i.outcome for i in done if i.outcome is not None],
            )

    def _on_failure(self, msgs: Sequence[Message], exc: BaseException) -> None:
        msgs = [*self._undelivered, *msgs]  # a batch whose outputs failed is read again with the current one
        self._undelivered = []
        transient = is_transient(exc)
        delay = self._backoff.failed()
        if not transient and self._backoff.failures >= self.isolate_after:
            self._isolate = True
        self.metrics.retry(self.handler.name)
        log.error(
            "%s: batch of %d message(s) not done (%s, attempt %d); nothing committed, reading again in %.1fs",
            self.group_id,
            len(msgs),
            describe_error(exc),
            self._backoff.failures,
            delay,
        )
        if not transient:  # a bug or the data's fault: where it happened (frames only, never the message's values)
            frames = traceback.extract_tb(exc.__traceback__)[-6:]
            log.error(
                "%s: at %s",
                self.group_id,
                " <- ".join(f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in reversed(frames)),
            )
        self._rewind(msgs)

    def _rewind(self, msgs: Sequence[Message]) -> None:
        """Seek every partition of the batch back to its first message, so the batch is consumed again."""
        first: dict[Position, int] = {}
        for msg in msgs:
            topic, partition, offset = _position(msg)
            if (topic, partition) in self._assignment:  # a partition given away: its next owner replays it
                first[(topic, partition)] = min(first.get((topic, partition), offset), offset)
        try:
            for (topic, partition), offset in first.items():
                self._consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            # Without the seek, later commits could pass over the failed batch; a new consumer resumes from the
            # committed offsets instead.
            log.warning("%s: seek failed (%s); restarting the consumer", self.group_id, describe_error(exc))
            self._consumer.close()
            self._assignment.clear()
            self._consumer = self._new_consumer()


def _position(msg: Message) -> tuple[str, int, int]:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("message without a position")
    return topic, partition, offset


def _by_position(items: Iterable[_Item]) -> dict[Position, list[_Item]]:
    out: dict[Position, list[_Item]] = {}
    for i in items:
        out.setdefault((i.topic.name, i.partition), []).append(i)
    return out


def _tables(engine: Engine, prefix: str) -> tuple[sa.Table, sa.Table]:
    """The runtime tables of the store (every store's migrations create them)."""
    inspector = sa.inspect(engine)
    tables = store.define(sa.MetaData(), prefix)
    for table in tables:
        if not inspector.has_table(table.name):
            raise DatabaseError(f"the store has no table {table.name}: run its migrations first")
    return tables
