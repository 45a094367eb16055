"""The SQL sinks against the real broker and registry, on SQLite and on a real PostgreSQL server.

Every test uses its own topics and consumer group; the database of each backend is shared by the module and
emptied before each test.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Connection, Engine

from hub.engine.runner import BatchResult
from hub.pii import PiiKeys
from monitoring.metrics import HubMetrics
from processors.rules.eligibility import load_rules
from schemas import models as m
from schemas.serde import TopicSerde
from sinks.base import Row, Sink, SinkRunner
from sinks.db import current_revision, head_revision, make_engine, upgrade
from sinks.errors import ErrorsSink, error_row
from sinks.invitations import InvitationsSink, invitation_row
from sinks.ledger import LedgerSink, ledger_row
from sinks.residents import ResidentsSink, readable_row, resident_row
from sinks.staff import StaffActivitySink
from sinks.statistics import query_statistics, refresh_statistics
from sinks.tables import ALL_TABLES, invitations, ledger_entries, metadata, residents, screening_errors
from tests import samples
from tests.integration.conftest import Endpoints
from tests.integration.helpers import consume, create, private_topic, produce
from tests.integration.pg import temporary_postgres
from tests.unit.test_sinks import EXPECTED_NONZERO, FY, counts, population
from topics.catalog import (
    DLQ_RETENTION_MS,
    INVITATIONS,
    LEDGER_ENTRIES,
    RESIDENTS,
    SCREENING_ERRORS,
    STAFF_OPERATIONS,
    Topic,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
GIVE_UP_S = 120.0


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('sinks') / 'sinks.db'}"
        else:
            url = stack.enter_context(temporary_postgres())
        engine = make_engine(url)
        stack.callback(engine.dispose)
        upgrade(engine)
        yield engine


@pytest.fixture
def db(database: Engine) -> Engine:
    with database.begin() as conn:
        for table in ALL_TABLES:
            conn.execute(sa.delete(table))
    return database


@dataclass(frozen=True)
class Wiring:
    residents: Topic
    ledger: Topic
    errors: Topic
    invitations: Topic
    dlq: Topic
    group: str


@pytest.fixture
def wiring(endpoints: Endpoints, admin: AdminClient, unique: str) -> Wiring:
    dlq = Topic(
        name=f"it-{unique}-sinks.dlq.v1",
        value_type=m.DeadLetter,
        key_fields=("tenant", "source_topic", "source_partition", "source_offset"),
        partitions=3,
        cleanup_policy="delete",
        retention_ms=DLQ_RETENTION_MS,
        doc="dead letters of the SQL sinks",
    )
    w = Wiring(
        residents=private_topic(RESIDENTS, unique),
        ledger=private_topic(LEDGER_ENTRIES, unique),
        errors=private_topic(SCREENING_ERRORS, unique),
        invitations=private_topic(INVITATIONS, unique),
        dlq=dlq,
        group=f"it-{unique}-sinks",
    )
    create(admin, endpoints.registry_url, w.residents, w.ledger, w.errors, w.invitations, w.dlq)
    return w


def runner_for(
    endpoints: Endpoints,
    registry: SchemaRegistryClient,
    wiring: Wiring,
    engine: Engine,
    sinks: Sequence[Sink[Any]],
    **options: Any,
) -> SinkRunner:
    options = {"batch_timeout_s": 0.5, "backoff_initial_s": 0.2, "backoff_max_s": 2.0, **options}
    return SinkRunner(
        endpoints.settings(),
        sinks,
        group_id=wiring.group,
        registry_client=registry,
        dead_letter_topic=wiring.dlq,
        engine=engine,
        **options,
    )


# --- helpers -------------------------------------------------------------------------------------------------


def send(endpoints: Endpoints, registry: SchemaRegistryClient, topic: Topic, events: Sequence[m.Event]) -> None:
    serde: TopicSerde[m.Event] = TopicSerde(topic, registry)
    produce(endpoints.bootstrap, topic.name, [(serde.key(e), serde.value(e)) for e in events])


def drain(runner: SinkRunner, messages: int) -> list[BatchResult]:
    """Run batches until ``messages`` messages have been written (failed attempts do not count)."""
    results: list[BatchResult] = []
    deadline = time.monotonic() + GIVE_UP_S
    while sum(r.consumed for r in results if not r.failed) < messages:
        assert time.monotonic() < deadline, f"only {results} after {GIVE_UP_S}s"
        results.append(runner.run_once())
    return results


def run_until_idle(runner: SinkRunner, idle_s: float = 3.0) -> None:
    stop = threading.Event()
    guard = threading.Timer(GIVE_UP_S, stop.set)
    guard.start()
    try:
        runner.run(stop, idle_exit_s=idle_s)
    finally:
        guard.cancel()
    assert not stop.is_set(), "the runner never became idle"


def metric(runner: SinkRunner, name: str, **labels: str) -> float | None:
    """A sample of the runner's metrics bundle (its own registry)."""
    return runner.metrics.registry.get_sample_value(name, labels)


def snapshot(engine: Engine, table: sa.Table) -> list[dict[str, Any]]:
    """The rows of ``table``; residents with their sealed 個人番号 opened (the columns of ``resident_row``)."""
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
    return [readable_row(r) for r in rows] if table is residents else rows


def rows_sorted(table: sa.Table, rows: Sequence[Row]) -> list[Row]:
    keys = [c.name for c in table.primary_key.columns]
    return sorted(rows, key=lambda r: tuple(r[k] for k in keys))


def group_offsets(bootstrap: str, group: str, topic: Topic) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offset, high watermark) per partition of ``topic`` for ``group``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=30)}
        high = {tp.partition: consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in parts}
    finally:
        consumer.close()
    return committed, high


# --- events --------------------------------------------------------------------------------------------------


def resident(atena_no: str, version: int, **over: Any) -> m.ResidentState:
    fields: dict[str, Any] = {
        "atena_no": atena_no,
        "my_number": samples.my_number(),
        "person": samples.person(),
        "status": m.ResidentStatus.RESIDENT,
        "resident_since": date(2026, 4, 3),
        "support_measure": False,
        "version": version,
    }
    fields.update(over)
    return m.ResidentState(**samples.header("kenshin-hub.residents"), **fields)  # type: ignore[arg-type]


def error(reception_no: str, status: m.ErrorStatus, resolved_at: datetime | None = None) -> m.ScreeningError:
    return m.ScreeningError(
        **samples.header("kenshin-hub.matching"),  # type: ignore[arg-type]
        reception_no=reception_no,
        atena_no="0000999999",
        kind=m.ScreeningKind.LUNG,
        stage=m.ResultStage.PRIMARY,
        reasons=(m.ErrorReason.UNKNOWN_PERSON,),
        status=status,
        detected_at=T0,
        resolved_at=resolved_at,
        resolved_by="staff-001" if resolved_at else None,
        resolution="宛名番号を訂正" if resolved_at else None,
        source=m.SourcePointer(topic="institution.results.v1", partition=0, offset=5),
        result_event_id=uuid.uuid4(),
    )


def invitation(
    atena_no: str, kind: m.ScreeningKind, trigger: m.InvitationTrigger, kind_type: m.InvitationType
) -> m.Invitation:
    return m.Invitation(
        **samples.header("kenshin-hub.invitations"),  # type: ignore[arg-type]
        atena_no=atena_no,
        kind=kind,
        fiscal_year=2026,
        invitation_type=kind_type,
        trigger=trigger,
        age_at_fiscal_year_end=51,
        person=samples.person(),
    )


def all_sinks(w: Wiring) -> list[Sink[Any]]:
    return [ResidentsSink(w.residents), LedgerSink(w.ledger), ErrorsSink(w.errors), InvitationsSink(w.invitations)]


# --- tests ---------------------------------------------------------------------------------------------------


def test_four_topics_to_tables_exactly_and_redelivery_changes_nothing(
    endpoints: Endpoints, registry: SchemaRegistryClient, wiring: Wiring, db: Engine
) -> None:
    r1_old = resident("0000000001", 1, person=samples.person(address="旧住所"))
    r1 = resident("0000000001", 2)
    r2 = resident(
        "0000000002",
        4,
        person=samples.person(sex=m.Sex.MALE, name="旭川 太郎"),
        status=m.ResidentStatus.MOVED_OUT,
        ceased_on=date(2026, 6, 30),
        next_municipality="011002",
    )
    stomach_v1 = samples.ledger_entry("0000000001", m.ScreeningKind.STOMACH, 1)
    stomach_v2 = samples.ledger_entry("0000000001", m.ScreeningKind.STOMACH, 2, m.FollowUpJudgement.CANCER)
    lung = samples.ledger_entry("0000000001", m.ScreeningKind.LUNG, 1)
    breast = samples.ledger_entry("0000000002", m.ScreeningKind.BREAST, 1)
    e1_open = error("R-E1", m.ErrorStatus.OPEN)
    e1_resolved = error("R-E1", m.ErrorStatus.RESOLVED, resolved_at=T0 + timedelta(hours=3))
    e2_open = error("R-E2", m.ErrorStatus.OPEN)
    i1 = invitation(
        "0000000001", m.ScreeningKind.BREAST, m.InvitationTrigger.FISCAL_YEAR_START, m.InvitationType.INVITATION
    )
    i1_again = invitation(
        "0000000001", m.ScreeningKind.BREAST, m.InvitationTrigger.MOVE_IN, m.InvitationType.INVITATION
    )
    i2 = invitation(
        "0000000001", m.ScreeningKind.CERVICAL, m.InvitationTrigger.FISCAL_YEAR_START, m.InvitationType.CARRY_OVER
    )

    deliveries: list[tuple[Topic, list[m.Event]]] = [
        (wiring.residents, [r1_old, r1, r2]),
        (wiring.ledger, [stomach_v1, stomach_v2, lung, breast]),
        (wiring.errors, [e1_open, e1_resolved, e2_open]),
        (wiring.invitations, [i1, i1_again, i2]),
    ]
    for topic, events in deliveries:
        send(endpoints, registry, topic, events)
    with runner_for(endpoints, registry, wiring, db, all_sinks(wiring)) as runner:
        drain(runner, 13)
        run_until_idle(runner)

    expected = {
        # r1 and r2 carry their numbers in clear (records from before the sealing): no key is needed to read them
        residents: [resident_row(r1, PiiKeys.generate()), resident_row(r2, PiiKeys.generate())],
        ledger_entries: [ledger_row(stomach_v2), ledger_row(lung), ledger_row(breast)],
        screening_errors: [error_row(e1_resolved), error_row(e2_open)],
        invitations: [invitation_row(i1), invitation_row(i2)],
    }
    for table, rows in expected.items():
        assert snapshot(db, table) == rows_sorted(table, rows), table.name
    [resident_1, _] = snapshot(db, residents)
    assert (resident_1["version"], resident_1["address"]) == (2, samples.person().address)
    stomach = next(r for r in snapshot(db, ledger_entries) if r["kind"] == "STOMACH")
    assert (stomach["version"], stomach["followup_judgement"]) == (2, "CANCER")
    assert [r["status"] for r in snapshot(db, screening_errors)] == ["RESOLVED", "OPEN"]
    assert [r["trigger"] for r in snapshot(db, invitations)] == ["FISCAL_YEAR_START", "FISCAL_YEAR_START"]
    committed, high = group_offsets(endpoints.bootstrap, wiring.group, wiring.ledger)
    assert {p: o for p, o in committed.items() if o >= 0} == {p: h for p, h in high.items() if h > 0}

    # Re-delivery: the same events again, newest first (so every old version arrives after its successor).
    before = {table: snapshot(db, table) for table in expected}
    for topic, events in deliveries:
        send(endpoints, registry, topic, list(reversed(events)))
    with runner_for(endpoints, registry, wiring, db, all_sinks(wiring)) as runner:
        drain(runner, 13)
        run_until_idle(runner)
    assert {table: snapshot(db, table) for table in expected} == before


def test_a_poison_message_goes_to_the_dead_letter_topic_and_the_runner_keeps_going(
    endpoints: Endpoints, registry: SchemaRegistryClient, wiring: Wiring, db: Engine
) -> None:
    serde: TopicSerde[m.LedgerEntry] = TopicSerde(wiring.ledger, registry)
    v1 = samples.ledger_entry("0000000001", m.ScreeningKind.STOMACH, 1)
    v2 = samples.ledger_entry("0000000001", m.ScreeningKind.STOMACH, 2, m.FollowUpJudgement.NO_ABNORMALITY)
    key = serde.key(v1)  # one key: one partition, offsets 0..3 in order
    garbage = [b"\x00\x00\x00\x00\x07not avro", b"plain garbage \xff\xfe"]
    produce(
        endpoints.bootstrap,
        wiring.ledger.name,
        [(key, serde.value(v1)), (key, garbage[0]), (key, serde.value(v2)), (key, garbage[1])],
    )
    with runner_for(endpoints, registry, wiring, db, [LedgerSink(wiring.ledger)]) as runner:
        results = drain(runner, 4)
        run_until_idle(runner)
        assert runner.database_reachable()
    assert sum(r.dead_lettered for r in results) == 2
    topic = wiring.ledger.name
    assert metric(runner, "kenshin_hub_dead_letters_total", topic=topic, step="sinks.decode", reason="UNDECODABLE") == 2
    assert metric(runner, "kenshin_hub_messages_in_total", topic=topic, step="sinks.ledger") == 4
    assert metric(runner, "kenshin_hub_messages_out_total", topic=topic, step="sinks.ledger") == 2
    assert (metric(runner, "kenshin_hub_processing_duration_seconds_count", step="sinks.batch") or 0) >= 1
    assert not any(r.failed for r in results)
    [row] = snapshot(db, ledger_entries)
    assert (row["version"], row["followup_judgement"]) == (2, "NO_ABNORMALITY")

    dlq_serde: TopicSerde[m.DeadLetter] = TopicSerde(wiring.dlq, registry)
    got = consume(endpoints.bootstrap, wiring.dlq.name, f"{wiring.group}-dlq-reader", expected=2)
    letters = sorted((dlq_serde.decode(msg.value() or b"") for msg in got), key=lambda d: d.source_offset)
    assert len(letters) == 2
    partition = letters[0].source_partition
    for letter, offset, value in zip(letters, (1, 3), garbage, strict=True):
        assert letter.source_topic == wiring.ledger.name
        assert (letter.source_partition, letter.source_offset) == (partition, offset)
        assert letter.original_value == value
        assert letter.original_key == key
        assert letter.tenant == samples.TENANT
        assert letter.step == "sinks.decode"
        assert letter.error_type == "DecodeError"
        assert "not a valid LedgerEntry" in letter.reason
        assert letter.source_timestamp is not None
    committed, _ = group_offsets(endpoints.bootstrap, wiring.group, wiring.ledger)
    assert committed[partition] == 4


class FlakyLedgerSink(LedgerSink):
    """A ledger sink whose database 'fails' for the first ``failures`` flushes that have rows to write."""

    def __init__(self, topic: Topic, failures: int) -> None:
        super().__init__(topic)
        self.failures = failures
        self.attempts = 0

    def flush(self, connection: Connection) -> None:
        if self.rows():
            self.attempts += 1
            super().flush(connection)  # written, then rolled back by the failure below
            if self.failures > 0:
                self.failures -= 1
                raise RuntimeError("simulated failure after the rows were sent")


def test_a_failing_flush_commits_nothing_and_the_batch_is_written_on_retry(
    endpoints: Endpoints, registry: SchemaRegistryClient, wiring: Wiring, db: Engine
) -> None:
    events = [samples.ledger_entry(f"00000000{i:02d}", m.ScreeningKind.LUNG, 1) for i in range(6)]
    send(endpoints, registry, wiring.ledger, events)
    sink = FlakyLedgerSink(wiring.ledger, failures=1)
    with runner_for(endpoints, registry, wiring, db, [sink]) as runner:
        first: BatchResult | None = None
        deadline = time.monotonic() + GIVE_UP_S
        while first is None or not first.consumed:
            assert time.monotonic() < deadline
            first = runner.run_once()
        assert first.failed
        assert not first.committed
        assert snapshot(db, ledger_entries) == []  # the transaction was rolled back
        assert all(offset < 0 for offset in runner.committed_offsets().values())
        committed, _ = group_offsets(endpoints.bootstrap, wiring.group, wiring.ledger)
        assert all(offset < 0 for offset in committed.values())

        drain(runner, len(events))
        run_until_idle(runner)
    assert sink.attempts >= 2
    assert snapshot(db, ledger_entries) == rows_sorted(ledger_entries, [ledger_row(e) for e in events])
    # Out counts what was committed, once; in counts every delivery, the failed batch's included.
    labels = {"topic": wiring.ledger.name, "step": "sinks.ledger"}
    assert metric(runner, "kenshin_hub_messages_out_total", **labels) == len(events)
    assert (metric(runner, "kenshin_hub_messages_in_total", **labels) or 0) > len(events)
    committed, high = group_offsets(endpoints.bootstrap, wiring.group, wiring.ledger)
    assert sum(o for o in committed.values() if o >= 0) == sum(high.values()) == len(events)


class RejectingLedgerSink(LedgerSink):
    """A ledger sink whose database rejects, every time, the row of one person (like a constraint would)."""

    def write(self, connection: Connection, rows: Sequence[Row]) -> None:
        if any(r["atena_no"] == "0000000666" for r in rows):
            raise sa.exc.IntegrityError("INSERT", None, ValueError("check constraint violated"))
        super().write(connection, rows)


def test_a_row_the_database_always_rejects_is_isolated_to_the_dead_letter_topic(
    endpoints: Endpoints, registry: SchemaRegistryClient, wiring: Wiring, db: Engine
) -> None:
    good = [samples.ledger_entry(f"00000000{i:02d}", m.ScreeningKind.COLORECTAL, 1) for i in range(4)]
    bad = samples.ledger_entry("0000000666", m.ScreeningKind.COLORECTAL, 1)
    send(endpoints, registry, wiring.ledger, [*good[:2], bad, *good[2:]])
    with runner_for(endpoints, registry, wiring, db, [RejectingLedgerSink(wiring.ledger)], isolate_after=2) as runner:
        drain(runner, 5)
        run_until_idle(runner)
    assert snapshot(db, ledger_entries) == rows_sorted(ledger_entries, [ledger_row(e) for e in good])
    dlq_serde: TopicSerde[m.DeadLetter] = TopicSerde(wiring.dlq, registry)
    [msg] = consume(endpoints.bootstrap, wiring.dlq.name, f"{wiring.group}-dlq-reader", expected=1)
    letter = dlq_serde.decode(msg.value() or b"")
    assert (letter.step, letter.error_type) == ("sinks.write", "IntegrityError")
    refused = {"topic": wiring.ledger.name, "step": "sinks.write", "reason": "DATABASE_REFUSED"}
    assert metric(runner, "kenshin_hub_dead_letters_total", **refused) == 1
    assert metric(runner, "kenshin_hub_messages_out_total", topic=wiring.ledger.name, step="sinks.ledger") == 4
    assert letter.reason == "the database refused the row: IntegrityError (ValueError)"
    ledger_serde: TopicSerde[m.LedgerEntry] = TopicSerde(wiring.ledger, registry)
    assert letter.original_key == ledger_serde.key(bad)
    committed, high = group_offsets(endpoints.bootstrap, wiring.group, wiring.ledger)
    assert sum(o for o in committed.values() if o >= 0) == sum(high.values()) == 5


class FlakyStaffSink(StaffActivitySink):
    """Fails the first flush that holds staff operations, after they were buffered (a failed batch)."""

    def __init__(self, metrics: HubMetrics, topic: Topic) -> None:
        super().__init__(metrics, topic)
        self.failed = False
        self.buffered = 0

    def add(self, event: m.StaffOperation, key: bytes, partition: int, offset: int) -> None:
        super().add(event, key, partition, offset)
        self.buffered += 1

    def clear(self) -> None:
        super().clear()
        self.buffered = 0

    def flush(self, connection: Connection) -> None:
        if self.buffered and not self.failed:
            self.failed = True
            raise RuntimeError("simulated failure of the batch")


def test_staff_operations_are_counted_once_after_the_batch_commits(
    endpoints: Endpoints, admin: AdminClient, registry: SchemaRegistryClient, wiring: Wiring, db: Engine, unique: str
) -> None:
    staff_topic = private_topic(STAFF_OPERATIONS, unique)
    create(admin, endpoints.registry_url, staff_topic)
    operations = [
        (m.StaffOperationType.LOGIN, m.OperationOutcome.SUCCESS),
        (m.StaffOperationType.LOGIN_FAILED, m.OperationOutcome.DENIED),
        (m.StaffOperationType.LOGIN_FAILED, m.OperationOutcome.DENIED),
        (m.StaffOperationType.RESOLVE_ERROR, m.OperationOutcome.SUCCESS),
    ]
    events = [
        m.StaffOperation(
            **samples.header("kenshin-hub.staff"),  # type: ignore[arg-type]
            staff_id=f"h{i:03d}",
            operation=op,
            outcome=outcome,
            performed_at=T0,
        )
        for i, (op, outcome) in enumerate(operations)
    ]
    send(endpoints, registry, staff_topic, events)
    bundle = HubMetrics(CollectorRegistry(), process="sinks", runtime=False)
    sink = FlakyStaffSink(bundle, staff_topic)
    with runner_for(endpoints, registry, wiring, db, [sink], metrics=bundle) as runner:
        results = drain(runner, len(events))
        run_until_idle(runner)
    assert sink.failed
    assert any(r.failed for r in results)
    reg = bundle.registry
    assert reg.get_sample_value("kenshin_hub_staff_logins_total", {"outcome": "SUCCESS"}) == 1
    assert reg.get_sample_value("kenshin_hub_staff_logins_total", {"outcome": "FAILED"}) == 2
    resolved = {"operation": "RESOLVE_ERROR", "outcome": "SUCCESS"}
    assert reg.get_sample_value("kenshin_hub_staff_operations_total", resolved) == 1
    out = {"topic": staff_topic.name, "step": "sinks.staff"}
    assert reg.get_sample_value("kenshin_hub_messages_out_total", out) == len(events)


def test_the_migrations_build_exactly_the_tables_of_tables_py(database: Engine) -> None:
    with database.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    assert current_revision(database) == head_revision()


def test_statistics_on_this_backend(db: Engine) -> None:
    people, entries = population()
    residents_sink, ledger_sink = ResidentsSink(), LedgerSink()
    for offset, person in enumerate(people):
        residents_sink.add(person, b"", 0, offset)
    for offset, entry in enumerate(entries):
        ledger_sink.add(entry, b"", 0, offset)
    with db.begin() as conn:
        residents_sink.flush(conn)
        ledger_sink.flush(conn)
    with db.connect() as conn:  # not in a transaction: refresh_statistics opens its own
        computed = refresh_statistics(conn, samples.TENANT, FY, load_rules())
    with db.connect() as conn:
        stored = query_statistics(conn, samples.TENANT, FY)
    assert stored == computed
    assert {(r.kind.value, r.sex.value, r.age_band): counts(r) for r in stored if any(counts(r))} == EXPECTED_NONZERO


def test_the_runner_refuses_a_database_without_migrations(
    endpoints: Endpoints, registry: SchemaRegistryClient, wiring: Wiring, tmp_path: Any
) -> None:
    from sinks.db import DatabaseError

    bare = make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    try:
        with pytest.raises(DatabaseError, match="run the migrations"):
            runner_for(endpoints, registry, wiring, bare, [LedgerSink(wiring.ledger)])
    finally:
        bare.dispose()


# --- kill -9 -------------------------------------------------------------------------------------------------

CHILD = r"""
import dataclasses, json, sys, time
from confluent_kafka.schema_registry import SchemaRegistryClient
from hub.settings import load_settings
from schemas.models import DeadLetter
from sinks.base import SinkRunner
from sinks.db import make_engine
from sinks.ledger import LedgerSink
from topics.catalog import LEDGER_ENTRIES, Topic

class SlowLedgerSink(LedgerSink):
    def flush(self, connection):
        super().flush(connection)
        time.sleep(0.15)  # rows sent, transaction still open: a kill here must lose nothing

args = json.loads(sys.argv[1])
settings = load_settings({"KENSHIN_KAFKA_BOOTSTRAP_SERVERS": args["bootstrap"]})
dlq = Topic(name=args["dlq"], value_type=DeadLetter, key_fields=("tenant",), partitions=3, cleanup_policy="delete",
            retention_ms=1, doc="")
runner = SinkRunner(
    settings, [SlowLedgerSink(dataclasses.replace(LEDGER_ENTRIES, name=args["topic"], dlq=None))],
    group_id=args["group"], registry_client=SchemaRegistryClient({"url": args["registry"]}), dead_letter_topic=dlq,
    engine=make_engine(args["db"]), batch_size=8, batch_timeout_s=0.2, consumer_overrides=args["consumer"],
)
runner.run()
"""


# A killed member leaves the group after the session timeout; keep it short so the next member takes over quickly.
FAST_FAILOVER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def count_rows(engine: Engine, version: int | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(ledger_entries)
    if version is not None:
        query = query.where(ledger_entries.c.version == version)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


@pytest.mark.slow
def test_kill_9_at_any_point_converges_to_the_same_tables(
    endpoints: Endpoints, registry: SchemaRegistryClient, wiring: Wiring, db: Engine, tmp_path: Path
) -> None:
    people = [f"00000001{i:02d}" for i in range(30)]
    versions = {v: [samples.ledger_entry(a, m.ScreeningKind.COLORECTAL, v) for a in people] for v in (1, 2, 3)}
    for v in (1, 2, 3):  # every old version before every new one
        send(endpoints, registry, wiring.ledger, versions[v])
    args = {
        "bootstrap": endpoints.bootstrap,
        "registry": endpoints.registry_url,
        "db": db.url.render_as_string(hide_password=False),
        "topic": wiring.ledger.name,
        "dlq": wiring.dlq.name,
        "group": wiring.group,
        "consumer": FAST_FAILOVER,
    }
    rng = random.Random()
    # kill once some rows exist, then once some rows have their newest version
    for round_no, version in enumerate((None, 3)):
        with (tmp_path / f"child-{round_no}.log").open("w") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, json.dumps(args)], stdout=log_file, stderr=subprocess.STDOUT
            )
            try:
                deadline = time.monotonic() + GIVE_UP_S
                while count_rows(db, version) == 0 and child.poll() is None:
                    assert time.monotonic() < deadline, "the child made no progress"
                    time.sleep(0.05)
                time.sleep(rng.uniform(0.0, 0.3))
            finally:
                os.kill(child.pid, signal.SIGKILL)
                child.wait(30)
        assert child.returncode == -signal.SIGKILL

    sink = LedgerSink(wiring.ledger)
    with runner_for(endpoints, registry, wiring, db, [sink], consumer_overrides=FAST_FAILOVER) as runner:
        run_until_idle(runner)
    assert snapshot(db, ledger_entries) == rows_sorted(ledger_entries, [ledger_row(e) for e in versions[3]])
    committed, high = group_offsets(endpoints.bootstrap, wiring.group, wiring.ledger)
    assert sum(o for o in committed.values() if o >= 0) == sum(high.values()) == 3 * len(people)
