"""Retention on PostgreSQL and the real broker: the unit tier's seeds (tests/unit/test_retention.py) in four databases
of one temporary cluster, one tenant's run, exactly that tenant's expired rows gone.

Kafka is the session's broker (``endpoints``), asked and written to as production does: the production
:class:`hub.retention.KafkaOffsets` and a ``confluent_kafka.Producer`` made with :func:`hub.kafka.producer_config`.
The runtime outbox rows name this test's own group and two topics of its own (``it-<unique>-t1`` / ``-t2``, kept
forever so that old timestamps stay), which hold what the unit tier's ``FakeKafka`` answers: the group committed
offset 20 on t1:0, and t2:1's first 5 records are older than the outbox cut-off (``NOW`` - 30 days), the rest not.
The tombstones go to the catalog's compacted topics (created with ``topics apply``'s function when missing) and are
read back from the offsets those topics had before the dry run: exactly the expected keys of tenant A, null values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors import stores as ct
from connectors.policy import load_retention
from hub.kafka import ClientConfig, consumer_config, producer_config
from hub.pii import PiiKeys
from hub.retention import Cutoffs, KafkaOffsets, Position, RetentionReport, record_run, run_retention
from hub.settings import Settings
from processors import store as pt
from sinks import tables as st
from sinks.db import make_engine, upgrade
from tests.integration import pg
from tests.integration.conftest import Endpoints
from tests.unit.test_retention import NOW, A, Stores, seed
from topics import catalog
from topics.admin import apply
from topics.catalog import FOREVER, TopicSpec

pytestmark = pytest.mark.integration

COMPACTED = tuple(catalog.own(t, A) for t in catalog.ALL_TOPICS if t.cleanup_policy == "compact")  # A's own
CUTOFF = Cutoffs.of(load_retention(), NOW).outbox_inputs_before  # the outbox's "inputs too old" (NOW - 30 days)
TIMEOUT_S = 60.0
OUTBOX = {  # each store's runtime outbox table
    "sinks": st.runtime_outbox.name,
    "processors": pt.runtime_outbox.name,
    "chukan": ct.chukan_runtime[1].name,
    "network": ct.network_runtime[1].name,
}

# Commit errors of a group coordinator that is not ready yet (a fresh broker loads __consumer_offsets first); librdkafka
# does not mark all of them retriable.
COORDINATOR_NOT_READY = (
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError._WAIT_COORD,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
)


@dataclass(frozen=True)
class Broker:
    """The session broker as the outbox rows see it: this test's group and topics, and a client configuration."""

    settings: Settings
    group: str
    t1: str
    t2: str


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _produce_at(settings: Settings, records: Sequence[tuple[str, int, datetime]]) -> None:
    """One record per ``(topic, partition, CreateTime)``, in order, every one acknowledged (acks=all).

    The timestamps are in the past (``NOW`` is 2026-06-01): Kafka 4 refuses records more than an hour in the future.
    """
    producer = Producer(producer_config(settings))
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.name())

    for i, (topic, partition, when) in enumerate(records):
        producer.produce(
            topic, value=f"input {i}".encode(), partition=partition, timestamp=_ms(when), on_delivery=delivered
        )
    assert producer.flush(TIMEOUT_S) == 0, "records not delivered"
    assert failures == [], failures


def _commit(settings: Settings, group: str, topic: str, partition: int, offset: int) -> None:
    """Commit ``offset`` for ``group`` with a consumer that never subscribes (synchronously, retried while the
    group's coordinator is not ready yet, within a deadline)."""
    consumer = Consumer(consumer_config(settings, group))
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while True:
            try:
                consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not (err.retriable() or err.code() in COORDINATOR_NOT_READY) or time.monotonic() >= deadline:
                    raise
                consumer.poll(0.2)  # a retry interval while the coordinator loads, not a condition
    finally:
        consumer.close()


def _reader(settings: Settings, group: str) -> Consumer:
    """A consumer that never subscribes, reading every record (tombstones are not transactional)."""
    extra: ClientConfig = {"isolation.level": "read_uncommitted", "enable.partition.eof": True}
    return Consumer(consumer_config(settings, group, **extra))


def _high_watermarks(settings: Settings, group: str, topics: Sequence[str]) -> dict[Position, int]:
    """The end offset of every partition of ``topics`` (the partitions the broker has, not the catalog's count)."""
    consumer = _reader(settings, group)
    try:
        out: dict[Position, int] = {}
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=TIMEOUT_S).topics[topic]
            assert meta.error is None, meta.error
            for p in sorted(meta.partitions):
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S)[1]
        return out
    finally:
        consumer.close()


def _read(
    settings: Settings, group: str, start: dict[Position, int], end: dict[Position, int]
) -> list[tuple[str, bytes | None, bytes | None]]:
    """``(topic, key, value)`` of every record from ``start`` (inclusive) to ``end`` (exclusive) per partition,
    read until each partition reached ``end`` (bounded)."""
    pending = {p for p, e in end.items() if e > start.get(p, 0)}
    got: list[tuple[str, bytes | None, bytes | None]] = []
    if not pending:
        return got
    consumer = _reader(settings, group)
    try:
        consumer.assign([TopicPartition(t, p, start.get((t, p), 0)) for t, p in sorted(pending)])
        deadline = time.monotonic() + TIMEOUT_S
        while pending:
            assert time.monotonic() < deadline, f"not read to their end offsets: {sorted(pending)}"
            for msg in consumer.consume(num_messages=500, timeout=1.0):
                where = (str(msg.topic()), int(msg.partition() or 0))
                offset = int(msg.offset() or 0)
                err = msg.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, err
                    if offset >= end[where]:
                        pending.discard(where)
                    continue
                if offset < end[where]:
                    got.append((where[0], msg.key(), msg.value()))
                if offset + 1 >= end[where]:
                    pending.discard(where)
    finally:
        consumer.close()
    return got


@pytest.fixture
def broker(endpoints: Endpoints, admin: AdminClient, unique: str) -> Broker:
    """This test's topics and group on the session broker, holding what ``FakeKafka`` answers in the unit tier."""
    b = Broker(endpoints.settings(), f"it-{unique}-retention", f"it-{unique}-t1", f"it-{unique}-t2")
    forever = [
        TopicSpec(
            name=name,
            key_fields=(),
            partitions=partitions,
            cleanup_policy="delete",
            retention_ms=FOREVER,
            doc="retention test inputs (old timestamps kept)",
        )
        for name, partitions in ((b.t1, 1), (b.t2, 2))
    ]
    apply(admin, [*forever, *COMPACTED])  # the catalog's compacted topics too: the tombstones' destination
    old, new = CUTOFF - timedelta(days=1), CUTOFF
    _produce_at(
        b.settings,
        [(b.t1, 0, new + timedelta(minutes=i)) for i in range(30)]
        + [(b.t2, 1, old + timedelta(minutes=i)) for i in range(5)]
        + [(b.t2, 1, new + timedelta(minutes=i)) for i in range(5)],  # the first exactly at the cut-off
    )
    _commit(b.settings, b.group, b.t1, 0, 20)
    # What the run will ask, through the production class: FakeKafka's answers exactly.
    kafka = KafkaOffsets(b.settings)
    positions = [(b.t1, 0), (b.t2, 1)]
    assert kafka.committed(b.group, positions) == {(b.t1, 0): 20}
    assert kafka.first_offsets_at(positions, CUTOFF) == {(b.t1, 0): 0, (b.t2, 1): 5}
    return b


@pytest.fixture
def pg_stores(broker: Broker) -> Iterator[Stores]:
    keys = PiiKeys.generate()
    with ExitStack() as stack:
        server = os.environ.get(pg.ENV_URL)
        if not server:
            server = stack.enter_context(pg._private_cluster())
        stack.enter_context(pytest.MonkeyPatch.context()).setenv(pg.ENV_URL, server)
        engines = {}
        for store, migrations in (
            ("sinks", None),
            ("processors", pt.PROCESSORS_MIGRATIONS),
            ("chukan", ct.CHUKAN_MIGRATIONS),
            ("network", ct.NETWORK_MIGRATIONS),
        ):
            engine = make_engine(stack.enter_context(pg.temporary_postgres()))
            stack.callback(engine.dispose)
            if migrations is None:
                upgrade(engine, pii_keys=keys)
            else:
                upgrade(engine, script_location=migrations, pii_keys=keys)
            engines[store] = engine
        s = Stores(engines, keys)
        seed(s, broker.group, broker.t1, broker.t2)
        yield s


def test_retention_deletes_exactly_one_tenants_expired_rows_on_postgresql(
    pg_stores: Stores, broker: Broker, unique: str
) -> None:
    settings = broker.settings
    reader = f"it-{unique}-tombstones"
    compacted = [t.name for t in COMPACTED]
    start = _high_watermarks(settings, reader, compacted)  # before the dry run: it must send nothing either
    before = pg_stores.snapshot()
    producer = Producer(producer_config(settings))

    def retention(*, dry_run: bool) -> RetentionReport:
        return run_retention(
            pg_stores.retention(),
            A,
            policy=load_retention(),
            now=NOW,
            kafka=KafkaOffsets(settings),
            producer=producer,
            pii_keys=pg_stores.keys,
            dry_run=dry_run,
        )

    dry = retention(dry_run=True)
    assert pg_stores.snapshot() == before
    try:
        report = retention(dry_run=False)
    finally:
        producer.flush(TIMEOUT_S)  # as RetentionSchedule.run does (run_retention waited for every tombstone)
    record_run(pg_stores.engines["chukan"], report, "admin1")
    after = pg_stores.snapshot()
    for where, rows in before.items():
        if where != ("chukan", ct.chukan_retention_runs.name):
            assert rows - after[where] == pg_stores.gone.get(where, set()), where
    # Kafka's answers were used: t1:0 below the committed 20 (two rows), t2:1 below the first recent input 5 (one)
    assert {r.store: r.counts[OUTBOX[r.store]] for r in report.results} == dict.fromkeys(OUTBOX, 3)
    assert report.counts() == dry.counts()
    assert (len(report.results), report.tables_checked) == (4, 32)
    # The tombstones, as the broker has them: every expected key of tenant A once, with a null value, nothing else
    # of A's (other tenants' records there belong to other tests: the pipelines each have a tenant of their own).
    end = _high_watermarks(settings, reader, compacted)
    arrived = _read(settings, reader, start, end)
    mine = [(t, k, v) for t, k, v in arrived if k is not None and k.startswith(f"{A}:".encode())]
    assert all(k.startswith(f"{A}:".encode()) for _, k in pg_stores.tombstones)
    assert sorted((t, k) for t, k, _ in mine) == sorted(pg_stores.tombstones)
    assert all(v is None for _, _, v in mine)
    assert {t for t, _, _ in mine} == set(compacted)  # every compacted topic got some
    assert report.tombstones_sent == dry.tombstones == len(pg_stores.tombstones)
