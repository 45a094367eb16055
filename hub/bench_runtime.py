"""Benchmark of the hub's stream runtime against Quix Streams: same broker, same input, same run.

``python -m hub.bench_runtime --messages N [--partitions P] [--rounds R] [--report BENCHMARKS.md]`` fills a scratch
input topic with N values of ~475 bytes keyed over ~10,000 keys (``012041:<n>``), then reads all of it, each with
its own consumer group, four times (``--rounds R``: R times each, in rotated order, medians reported):

* **raw**: confluent-kafka consume → produce passthrough (no decode, no state, no commits);
* **hub**: :class:`hub.engine.runner.Runner` with a small stateful :class:`~hub.engine.handler.Handler`: per batch,
  the batch keys' counters are read from SQLite in one ``SELECT … IN``, incremented and upserted back, and one
  output is produced per input. It is the real runtime: Avro decode into the typed model, one SQL transaction
  with the outbox and the stored offsets, Avro encode, delivery acknowledged, then the offsets committed;
* **quix**: Quix Streams with a RocksDB per-key counter (changelog topic on), one output per input, at least once;
* **quix_eos**: the same with ``processing_guarantee="exactly-once"`` (transactional producer);
* **quix_avro**: Quix stateful as above, but decoding and encoding the values as the hub does (Confluent wire
  format, through the registry), with Quix's own ``AvroDeserializer`` / ``AvroSerializer`` given the registry: the
  same job as the hub's, the way Quix Streams does it.

The input values are the Confluent wire format of a small model (:class:`schemas.models.HubCommand`, whose string
field carries a padded JSON dict), so the hub decodes what it reads; the raw passthrough, ``quix`` and ``quix_eos``
carry them as opaque bytes, ``quix_avro`` decodes and encodes them. Quix Streams pins its own confluent-kafka,
so it is never a project dependency: it is installed once into its own venv (``<cache dir>/bench-quix``) and its
job (:data:`QUIX_JOB`) runs there as a subprocess.

Every rate is messages / seconds from the first message the code under test sees to the last output acknowledged
(and, for the hub and Quix, the offsets committed), so group joins, topic checks and recovery are not counted.
Scratch topics, registry subjects and the SQLite store are deleted at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from hub.demo import machine
from hub.engine import store
from hub.engine.handler import Delivery, Handler, Outcome
from hub.engine.runner import Runner
from hub.kafka import ClientConfig, producer_config
from hub.settings import Settings, SettingsError, load_settings
from schemas.models import CommandType, DeadLetter, HubCommand
from schemas.record import now_utc
from schemas.serde import TopicSerde, registry_client
from sinks.db import make_engine
from topics.catalog import DAY_MS, Topic

VALUE_BYTES = 475
KEYS = 10_000
QUIX_REQUIREMENT = "quixstreams"
RUN_TIMEOUT_S = 1800.0

# --- the Quix Streams job (runs in its own venv, never imported by the project) --------------------------------

QUIX_JOB = r'''
"""Quix Streams side of hub.bench_runtime: a per-key counter in RocksDB, one output per input; JSON on exit."""
import json
import os
import sys
import time

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig

inp, out, group, count, guarantee, state_dir, codec = sys.argv[1:8]
count = int(count)
conf = json.loads(os.environ["BENCH_KAFKA_CONFIG"])
if codec == "avro":  # the Confluent wire format through the registry, with Quix's own Avro serializers
    from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer
    from quixstreams.models.serializers.schema_registry import (
        SchemaRegistryClientConfig,
        SchemaRegistrySerializationConfig,
    )

    registry = json.loads(os.environ["BENCH_REGISTRY_CONFIG"])
    client = SchemaRegistryClientConfig(
        url=registry["url"],
        ssl_ca_location=registry.get("ssl.ca.location"),
        basic_auth_user_info=registry.get("basic.auth.user.info"),
    )
    value_deserializer = AvroDeserializer(schema_registry_client_config=client)
    value_serializer = AvroSerializer(
        json.loads(os.environ["BENCH_SCHEMA"]),
        schema_registry_client_config=client,
        schema_registry_serialization_config=SchemaRegistrySerializationConfig(
            auto_register_schemas=False, use_latest_version=True
        ),
    )
else:
    value_deserializer, value_serializer = "bytes", "bytes"
app = Application(
    broker_address=ConnectionConfig.from_librdkafka_dict(conf, ignore_extras=True),
    consumer_group=group,
    auto_offset_reset="earliest",
    processing_guarantee=guarantee,
    state_dir=state_dir,
    loglevel="WARNING",
)
marks = {"first": None, "last": None, "committed": None, "seen": 0}

ctx = app._processing_context  # noqa: SLF001 - to time the final checkpoint commit (outputs + offsets durable)
_commit = ctx.commit_checkpoint


def commit_checkpoint(force=False, revoking=False):
    _commit(force=force, revoking=revoking)
    if force and marks["last"] is not None and marks["committed"] is None:
        marks["committed"] = time.perf_counter()  # the final checkpoint: outputs flushed, offsets committed


ctx.commit_checkpoint = commit_checkpoint


def count_key(value, state):
    if marks["first"] is None:
        marks["first"] = time.perf_counter()
    state.set("count", state.get("count", 0) + 1)
    marks["seen"] += 1
    if marks["seen"] >= count:
        marks["last"] = time.perf_counter()
        app.stop()
    return value


sdf = app.dataframe(app.topic(inp, key_deserializer="bytes", value_deserializer=value_deserializer))
sdf = sdf.apply(count_key, stateful=True)
sdf.to_topic(app.topic(out, key_serializer="bytes", value_serializer=value_serializer))
app.run()
done = time.perf_counter()
first = marks["first"] or done
end = marks["committed"] or done
print(json.dumps({
    "seen": marks["seen"],
    "seconds": end - first,
    "to_last_s": (marks["last"] or done) - first,
    "to_exit_s": done - first,
}))
'''


# --- scratch topics and the input ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scratch:
    """The run's topic names (all under one prefix, so whatever a job creates beside them is found too)."""

    run_id: str

    @property
    def prefix(self) -> str:
        return f"bench.runtime.{self.run_id}"

    def name(self, what: str) -> str:
        return f"{self.prefix}.{what}"


def _topic(name: str, value_type: type[HubCommand] | type[DeadLetter], partitions: int, dlq: Topic | None) -> Topic:
    return Topic(
        name=name,
        value_type=value_type,
        key_fields=("tenant", "partition") if value_type is HubCommand else ("tenant", "event_id"),
        partitions=partitions,
        cleanup_policy="delete",
        retention_ms=DAY_MS,
        doc="bench_runtime scratch topic",
        replication_factor=1,
        min_insync_replicas=1,
        dlq=dlq,
    )


def _create_topics(admin: AdminClient, names: Sequence[str], partitions: int) -> None:
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    for future in futures.values():
        future.result(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # metadata catches up with the creation
        known = admin.list_topics(timeout=30).topics
        if all(n in known and len(known[n].partitions) == partitions for n in names):
            return
        time.sleep(0.2)
    raise RuntimeError("scratch topics did not appear in the metadata")


def _delete_topics(admin: AdminClient, prefix: str, groups: Sequence[str]) -> list[str]:
    """Delete the run's topics, and those a job derived from its groups (Quix changelogs)."""
    names = [n for n in admin.list_topics(timeout=30).topics if prefix in n or any(g in n for g in groups)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=60).values():
            try:
                future.result(timeout=60)
            except Exception as exc:  # noqa: BLE001 - best effort: say it and go on
                print(f"bench: could not delete a scratch topic: {exc}", file=sys.stderr)
    return sorted(names)


def _event(n: int, tenant: str, pad: int) -> HubCommand:
    """Input event ``n``: key ``<tenant>:<n % KEYS>``; its string field a small JSON dict padded with ``pad``."""
    key = n % KEYS
    return HubCommand(
        event_id=uuid.uuid4(),
        occurred_at=now_utc(),
        tenant=tenant,
        source_system=json.dumps({"n": n, "key": key, "kind": "bench", "pad": "x" * pad}),
        command=CommandType.OTHER,
        fiscal_year=2025,
        partition=key,
    )


def fill(settings: Settings, serde: TopicSerde[HubCommand], messages: int) -> int:
    """Produce ``messages`` input events (murmur2, like every hub producer); the mean value size in bytes."""
    probe = messages // 2
    pad = max(0, VALUE_BYTES - len(serde.value(_event(probe, settings.tenant, 0))))
    pad = max(0, pad - (len(serde.value(_event(probe, settings.tenant, pad))) - VALUE_BYTES))  # length prefixes
    producer = Producer(producer_config(settings))
    name = serde.topic.name
    total = 0
    for n in range(messages):
        event = _event(n, settings.tenant, pad)
        value = serde.value(event)
        total += len(value)
        while True:
            try:
                producer.produce(name, key=serde.key(event), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the input was not fully acknowledged")
    return total // max(1, messages)


def _end_offsets(conf: ClientConfig, topic: str) -> int:
    """The number of records in ``topic`` (sum of its partitions' high watermarks)."""
    consumer = Consumer({**conf, "group.id": f"bench-{uuid.uuid4().hex}", "log_level": 0})
    try:
        parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)[1] for p in parts)
    finally:
        consumer.close()


# --- a. raw passthrough ---------------------------------------------------------------------------------------


def bench_raw(settings: Settings, source: str, target: str, messages: int, partitions: int) -> float:
    """Raw confluent-kafka consume → produce of ``messages`` records: seconds, first message to last ack."""
    conf: ClientConfig = dict(settings.kafka_config())
    consumer = Consumer(
        {**conf, "group.id": f"bench-raw-{uuid.uuid4().hex}", "enable.auto.commit": False, "log_level": 0}
    )
    producer = Producer(producer_config(settings))
    consumer.assign([TopicPartition(source, p, OFFSET_BEGINNING) for p in range(partitions)])
    count = 0
    began: float | None = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while count < messages and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                if began is None:
                    began = time.perf_counter()
                while True:
                    try:
                        producer.produce(target, key=msg.key(), value=msg.value())
                        break
                    except BufferError:
                        producer.poll(0.1)
                count += 1
            producer.poll(0)
        if producer.flush(120):
            raise RuntimeError("raw passthrough: outputs not acknowledged")
        ended = time.perf_counter()
    finally:
        consumer.close()
    if count < messages or began is None:
        raise RuntimeError(f"raw passthrough saw {count} of {messages} messages")
    return ended - began


# --- b. the hub runtime ---------------------------------------------------------------------------------------

STATE_TABLE = "bench_state"


def _state_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        STATE_TABLE,
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )


class CountingPassthrough(Handler):
    """Per batch: the keys' counters in ONE ``SELECT … IN``, incremented, upserted back; one output per input."""

    name = "bench"

    def __init__(self, source: Topic, target: Topic, state: sa.Table) -> None:
        self.topics = (source,)
        self.target = target
        self.state = state
        self.first_at: float | None = None
        self.done = 0

    def setup(self, engine: Engine) -> None:
        if not sa.inspect(engine).has_table(STATE_TABLE):
            raise RuntimeError(f"the bench store has no table {STATE_TABLE}")

    def handle(self, conn: Connection, deliveries: Sequence[Delivery]) -> list[Outcome]:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        t = self.state
        keys = sorted({d.key.decode() for d in deliveries})
        counts: dict[str, int] = {
            str(k): int(c) for k, c in conn.execute(sa.select(t.c.key, t.c.count).where(t.c.key.in_(keys)))
        }
        for d in deliveries:
            k = d.key.decode()
            counts[k] = counts.get(k, 0) + 1
        stmt = sqlite.insert(t)
        conn.execute(
            stmt.on_conflict_do_update(index_elements=[t.c.key], set_={"count": stmt.excluded.count}),
            [{"key": k, "count": counts[k]} for k in keys],
        )
        return [[(self.target, d.event)] for d in deliveries]

    def committed(self, deliveries: Sequence[Delivery], outcomes: Sequence[Outcome]) -> None:
        self.done += len(deliveries)


def _register(client: SchemaRegistryClient, subjects: dict[str, str]) -> None:
    for subject, schema in subjects.items():
        client.register_schema(subject, Schema(schema, schema_type="AVRO"))


def bench_hub(
    settings: Settings,
    registry: SchemaRegistryClient,
    source: Topic,
    target: Topic,
    dlq: Topic,
    messages: int,
    workdir: Path,
    group_id: str,
) -> tuple[float, dict[str, int]]:
    """The hub runtime over the input: seconds (first ``handle`` to the last batch's offsets committed), checks."""
    engine = make_engine(f"sqlite:///{workdir / f'bench-hub-{group_id}.db'}")
    metadata = sa.MetaData()
    store.define(metadata)
    state = _state_table(metadata)
    metadata.create_all(engine)
    handler = CountingPassthrough(source, target, state)
    try:
        with Runner(
            settings,
            handler,
            group_id=group_id,
            registry_client=registry,
            dead_letter_topic=dlq,
            engine=engine,
            source_system="kenshin-hub.bench",
            batch_size=settings.stream_batch_size,  # as the processors and the sinks run
        ) as runner:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            letters = failed = 0
            while handler.done < messages and time.monotonic() < deadline:
                result = runner.run_once()
                letters += result.dead_lettered
                failed += int(result.failed)
            ended = time.perf_counter()
        with engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(state.c.count), 0))).scalar_one()
            keys = conn.execute(sa.select(sa.func.count()).select_from(state)).scalar_one()
    finally:
        engine.dispose()
    if handler.done < messages or handler.first_at is None:
        raise RuntimeError(f"hub runtime did {handler.done} of {messages} messages")
    checks = {"counted": int(total), "keys": int(keys), "dead_letters": letters, "failed_batches": failed}
    return ended - handler.first_at, checks


# --- c. Quix Streams ------------------------------------------------------------------------------------------


def quix_python(settings: Settings) -> Path:
    """The Python of the Quix venv under the cache directory, created (``pip install quixstreams``) once."""
    venv = settings.cache_dir / "bench-quix"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import quixstreams"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:  # noqa: S603
        return python
    base = shutil.which("python3") or sys.executable
    print(f"bench: creating the Quix Streams venv at {venv} (once)", file=sys.stderr)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)  # noqa: S603
    subprocess.run([str(python), "-m", "pip", "install", "-q", QUIX_REQUIREMENT], check=True)  # noqa: S603
    return python


def bench_quix(
    settings: Settings,
    python: Path,
    source: str,
    target: str,
    group: str,
    messages: int,
    guarantee: str,
    work: Path,
    codec: str = "bytes",
) -> dict[str, float]:
    """Run :data:`QUIX_JOB` in its venv over ``source``; its JSON report (``seconds``: first message to commit).

    ``codec`` "avro" has the job decode and encode the values through the registry (the output's subject must be
    registered: the job does not register schemas).
    """
    job = work / "bench_quix_job.py"
    job.write_text(QUIX_JOB, encoding="utf-8")
    state_dir = work / f"quix-state-{group}"
    env = {
        **os.environ,
        "BENCH_KAFKA_CONFIG": json.dumps(settings.kafka_config()),
        "BENCH_REGISTRY_CONFIG": json.dumps(settings.schema_registry_config()),
        "BENCH_SCHEMA": HubCommand.schema_str(),
    }
    proc = subprocess.run(  # noqa: S603 - our own interpreter and script
        [str(python), str(job), source, target, group, str(messages), guarantee, str(state_dir), codec],
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.splitlines()[-20:])
        raise RuntimeError(f"the Quix job ({guarantee}) failed with exit code {proc.returncode}:\n{tail}")
    report: dict[str, float] = json.loads(lines[-1])
    if report["seen"] < messages:
        raise RuntimeError(f"the Quix job ({guarantee}) saw {report['seen']} of {messages} messages")
    return report


# --- the benchmark --------------------------------------------------------------------------------------------


KINDS = ("raw", "hub", "quix", "quix_eos", "quix_avro")


def bench_runtime(
    settings: Settings, messages: int = 100_000, partitions: int = 6, rounds: int = 1
) -> dict[str, float]:
    """Raw passthrough, the hub runtime, Quix (stateful) and Quix (exactly-once) over one input: msgs/s each.

    With ``rounds`` > 1 each is measured that many times over the same input (the order rotated every round, so
    none always runs first), and the median is reported: on a shared machine single runs vary a lot.
    """
    scratch = Scratch(uuid.uuid4().hex[:8])
    conf: ClientConfig = dict(settings.kafka_config())
    admin = AdminClient({**conf, "log_level": 0, "socket.timeout.ms": 10_000})
    try:
        admin.list_topics(timeout=15)
    except KafkaException as exc:
        raise RuntimeError(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}; is the stack up?") from exc
    dlq = _topic(scratch.name("dlq"), DeadLetter, partitions, None)
    source = _topic(scratch.name("input"), HubCommand, partitions, dlq)
    outputs = {kind: scratch.name(f"out.{kind}") for kind in KINDS}
    target = _topic(outputs["hub"], HubCommand, partitions, None)
    quix_avro = _topic(outputs["quix_avro"], HubCommand, partitions, None)
    subjects = {t.value_subject: t.value_type.schema_str() for t in (source, target, dlq, quix_avro)}
    registry = registry_client(settings.schema_registry_config())
    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    load = [os.getloadavg()[0]]
    try:
        _create_topics(admin, [source.name, dlq.name, *outputs.values()], partitions)
        _register(registry, subjects)
        python = quix_python(settings)
        began = time.monotonic()
        size = fill(settings, TopicSerde(source, registry), messages)
        _say(
            f"{messages} messages of ~{size} bytes over {min(messages, KEYS)} keys into {source.name} "
            f"({partitions} partitions) in {time.monotonic() - began:.1f}s"
        )
        for r in range(rounds):
            for kind in KINDS[r % len(KINDS) :] + KINDS[: r % len(KINDS)]:
                group = f"{scratch.prefix}.{kind}.{r}"
                if kind == "raw":
                    seconds = bench_raw(settings, source.name, outputs[kind], messages, partitions)
                    detail = ""
                elif kind == "hub":
                    seconds, checks = bench_hub(settings, registry, source, target, dlq, messages, work, group)
                    if checks["counted"] != messages or checks["dead_letters"]:
                        raise RuntimeError(f"hub runtime state is off: {checks}")
                    detail = f" {checks}"
                else:
                    guarantee = "exactly-once" if kind == "quix_eos" else "at-least-once"
                    codec = "avro" if kind == "quix_avro" else "bytes"
                    job = bench_quix(
                        settings, python, source.name, outputs[kind], group, messages, guarantee, work, codec
                    )
                    seconds, detail = job["seconds"], f" (to the last message {job['to_last_s']:.2f}s)"
                rates[kind].append(messages / seconds)
                _say(f"round {r + 1}/{rounds}: {kind:<8} {seconds:7.2f}s {messages / seconds:9,.0f} msgs/s{detail}")
        produced = {kind: _end_offsets(conf, name) for kind, name in outputs.items() if kind != "quix_eos"}
        if any(n < messages * rounds for n in produced.values()):  # (transaction markers count in quix_eos)
            raise RuntimeError(f"an output topic holds fewer than {messages * rounds} records: {produced}")
        load.append(os.getloadavg()[0])
    finally:
        _delete_topics(admin, scratch.prefix, [])
        for subject in subjects:
            try:
                registry.delete_subject(subject, permanent=False)
                registry.delete_subject(subject, permanent=True)
            except Exception as exc:  # noqa: BLE001 - best effort
                _say(f"could not delete subject {subject}: {exc}")
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "messages": float(messages),
        "partitions": float(partitions),
        "rounds": float(rounds),
        "batch_size": float(settings.stream_batch_size),
        "value_bytes": float(size),
        "load_average": max(load),
        **{f"{kind}_msgs_s": statistics.median(rates[kind]) for kind in KINDS},
        **{f"{kind}_min_msgs_s": min(rates[kind]) for kind in KINDS},
        **{f"{kind}_max_msgs_s": max(rates[kind]) for kind in KINDS},
    }
    results["hub_over_quix"] = results["hub_msgs_s"] / results["quix_msgs_s"]
    results["hub_over_quix_eos"] = results["hub_msgs_s"] / results["quix_eos_msgs_s"]
    results["hub_over_quix_avro"] = results["hub_msgs_s"] / results["quix_avro_msgs_s"]
    results["hub_over_raw"] = results["hub_msgs_s"] / results["raw_msgs_s"]
    return results


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def report(results: dict[str, float], command: str) -> str:
    """The BENCHMARKS.md section of one run (``command``: how it was started)."""
    n, parts, rounds = int(results["messages"]), int(results["partitions"]), int(results["rounds"])
    rows = (
        ("raw confluent-kafka consume → produce passthrough", "raw"),
        ("**hub runtime** (`Runner` + SQLite per-key counter)", "hub"),
        ("Quix Streams, stateful (RocksDB per-key counter)", "quix"),
        ('Quix Streams, stateful, `processing_guarantee="exactly-once"`', "quix_eos"),
        ("Quix Streams, stateful, decoding and encoding the Avro through the registry (as the hub)", "quix_avro"),
    )
    spread = rounds > 1
    head = "| runtime | msgs/s" + (f" (median of {rounds}) | min–max |" if spread else " |")
    rule = "|---|---:|" + ("---:|" if spread else "")
    lines = [head, rule]
    for what, kind in rows:
        line = f"| {what} | {results[f'{kind}_msgs_s']:,.0f} |"
        if spread:
            line += f" {results[f'{kind}_min_msgs_s']:,.0f}–{results[f'{kind}_max_msgs_s']:,.0f} |"
        lines.append(line)
    table = "\n".join(lines)
    return (
        f"\n## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — `{command}`\n\n"
        f"- machine: {machine()}; load average up to {results['load_average']:.1f} during the run (shared); "
        "one local Kafka 4.1.1 node (the project's stack), the same broker and input for all\n"
        f"- input: {n:,} messages of ~{results['value_bytes']:.0f} bytes (the Avro wire format of `HubCommand`, "
        f"its string field a padded JSON dict), keyed over {min(n, KEYS):,} keys, {parts} partitions; each "
        "runtime reads all of it with its own consumer group"
        + (f", {rounds} rounds in rotated order" if spread else "")
        + "; msgs/s from the first message its code sees to the last output acknowledged and offsets committed\n\n"
        f"{table}\n\n"
        f"- ratio hub / Quix stateful: **{results['hub_over_quix']:.2f}**; hub / Quix exactly-once: "
        f"**{results['hub_over_quix_eos']:.2f}**; hub / Quix decoding the same Avro: "
        f"**{results['hub_over_quix_avro']:.2f}**; hub / raw: {results['hub_over_raw']:.2f}\n"
        "- raw: per message the bytes consumed and produced again (idempotent acks=all zstd producer); nothing "
        "decoded, no state, no commits\n"
        "- hub: per message an Avro decode into the typed model (registry wire format, model invariants checked) "
        f"and an Avro encode of its output; per batch (≤{int(results.get('batch_size', 500))}, "
        "`KENSHIN_STREAM_BATCH_SIZE` as the processors and sinks run) ONE SQLite transaction: the stored offsets read "
        "(fenced) and written, the keys' counters read in one `SELECT … IN` and upserted, every encoded output "
        "written to the outbox (and deleted once its commit is confirmed); then the outputs produced, their "
        "acknowledgements awaited after the next batch's transaction, then the offsets committed to Kafka "
        "(asynchronously), every batch\n"
        "- Quix stateful: per message the bytes as they are (no decode), the key's counter in RocksDB, the output "
        "produced; every 5 s a checkpoint (producer flushed, state written with its changelog records, offsets "
        "committed). No SQL, no outbox, no stored offsets, no decode/encode\n"
        "- Quix exactly-once: the same, with outputs, changelog records and offsets in one Kafka transaction per "
        "checkpoint\n"
        "- Quix decoding the Avro: Quix stateful, with `quixstreams.models.serializers.avro.AvroDeserializer` / "
        "`AvroSerializer` given the registry (what Quix offers for the Confluent wire format: confluent-kafka's "
        "registry-aware wrappers underneath), the output subject registered beforehand\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.bench_runtime", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages in the input (default 100,000)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the input topic (default 6)")
    parser.add_argument("--rounds", type=int, default=1, help="measure each runtime this many times (median)")
    parser.add_argument("--report", type=Path, default=None, help="append the results to this Markdown file")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.partitions < 1 or args.rounds < 1:
        parser.error("--messages, --partitions and --rounds must be at least 1")
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"bench_runtime: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results = bench_runtime(settings, args.messages, args.partitions, args.rounds)
    except KeyboardInterrupt:
        return 130
    except (KafkaException, SchemaRegistryError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench_runtime: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({k: round(v, 3) for k, v in results.items()}, indent=2))
    command = f"python -m hub.bench_runtime --messages {args.messages}"
    if args.partitions != 6:
        command += f" --partitions {args.partitions}"
    if args.rounds != 1:
        command += f" --rounds {args.rounds}"
    text = report(results, command)
    print(text)
    if args.report:
        with args.report.open("a", encoding="utf-8") as f:
            f.write(text)
        print(f"appended to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
