"""`kenshin-hub bench provision`: a provision's end-to-end latency at a steady request rate while an ingest runs.

All five processes are started supervised (processors, sinks, connector, 中間サーバー, network). The provider is set
up as the demo's second half does (:mod:`hub.provision_demo`): the simulated municipalities register the people they
know (:func:`connectors.simulators.municipalities.simulate_others`), then a small synthetic city of this tenant runs
through the pipeline, so its connector registers its residents and 副本 with the 中間サーバー. The requesters are
those municipalities, asking about the people they registered who are not under a support measure, with a permitted
query and no sensitive item: every answer is automatic.

Timed: a throw-away tenant's synthetic city (住基 population, 年度開始, 異動 and results, encoded beforehand) is
published at a steady pace through the processors and sinks; from a few seconds into it, provision requests
(``chukan.queries.v1``, each stamped with its publish time) go out at ``--rate`` per second for ``--seconds``. A
consumer on ``chukan.query-answers.v1`` (the requester's answers, from its 中間サーバー to its connector) takes the
receive time of each answer; latency = received − published, matched by request id. Every request must be answered
automatically within a bounded wait; a missing or other answer is a failure (exit 1).

Reported: p50/p90/p99/max latency against the target (p99 ≤ 250 ms), the achieved request rate, the hops' share
(from the Kafka timestamps of the intermediate records), the ingest's events/s in the window, CPU per process and the
machine. ``--profile DIR`` records the 中間サーバー, the network and the connector with py-spy during the window.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from connectors.keys import linkage_key, person_token
from connectors.policy import Policies, default_policies, network_tenants
from connectors.runner import GROUPS, chukan_engine
from connectors.service import Output
from connectors.simulators.city import City
from connectors.simulators.municipalities import (
    AFFAIR,
    PERMITTED_INFO,
    QUERY_ITEMS,
    SOURCE,
    simulate_others,
)
from connectors.stores import chukan_fukuhon, chukan_persons
from hub.bench import Encoded, _commands, _encode, _publish, _start_profiles, _stop_profiles
from hub.demo import end_offsets, machine, pipeline_processes
from hub.errors import CommandError
from hub.kafka import ClientConfig, producer_config
from hub.provision_demo import _publish as publish_outputs
from hub.provision_demo import settle
from hub.scenario import PROCESSOR_INPUTS, SINK_INPUTS, build, run_scenario
from hub.settings import Settings
from hub.supervise import check_running, wait_drained
from hub.validation import fiscal_year_start, tenant_check_digit
from processors.app import APP_ID
from schemas.models import ChukanPerson, ChukanQuery, Event, ProvisionOutcome, ProvisionResponse
from schemas.record import now_utc
from schemas.serde import TopicSerde, registry_client
from sinks.runner import GROUP_ID as SINKS_GROUP
from topics import catalog
from topics.catalog import Topic

YEAR = 2025
TARGET_P99_MS = 250.0
LEAD_S = 3.0  # the ingest runs this long before the first request
WARMUP_REQUESTS = 20
WARMUP_RATE = 10.0
ANSWER_TIMEOUT_S = 60.0  # after the last request, how long the missing answers are waited for
SETTLE_TIMEOUT_S = 900.0
DRAIN_AFTER_S = 300.0  # the ingest's backlog is drained (bounded) before the processes stop
ALL_PROCESSES = ("processors", "sinks", "connector", "chukan", "network")
PROVISION_PATH = ("chukan", "network")  # the processes a request goes through (the connector is the requester's)
PROFILED = ("chukan", "network", "connector")
# what a profile is summed over: the share of a process's busy samples with the frame on the stack
PROFILE_FRAMES = (
    ("Runner._decode", "decode (Avro)"),
    ("Runner._transact", "the batch's SQL transaction"),
    ("act_once", "  the service's act (service_effects lookup, handler, effects insert)"),
    (".handle (connectors/chukan.py", "    ChukanServer.handle"),
    (".handle (connectors/network.py", "    NetworkSimulator.handle"),
    (".handle (connectors/connector.py", "    Connector.handle"),
    ("encode_outputs", "    outputs as JSON for service_effects"),
    ("Connection.execute", "  SQLAlchemy statements (build, compile cache, execute)"),
    ("do_execute", "    of which inside sqlite3"),
    ("Runner._produce", "produce (queued, not awaited)"),
    ("Runner._settle", "the previous batch settled: flush (waiting for acks) and the offset commit"),
)
# the hops of one request, by the Kafka timestamp of the record each step produces
HOPS: tuple[tuple[str, Topic], ...] = (
    ("the requester's 中間サーバー sent it into the network (network.queries.v1)", catalog.NETWORK_QUERIES),
    ("the network checked it and issued the 提供許可証 (network.provision-requests.v1)", catalog.PROVISION_REQUESTS),
    ("the provider's 中間サーバー answered (network.provision-responses.v1)", catalog.PROVISION_RESPONSES),
    ("the requester's 中間サーバー handed the answer on (chukan.query-answers.v1)", catalog.QUERY_ANSWERS),
)


@dataclass(frozen=True)
class Requester:
    tenant: str
    integrated_no: str
    token: str  # the person's linkage token: which of the provider's registered persons it is


@dataclass
class Sent:
    """The requests published, by request id: wall-clock publish time (s)."""

    at: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    first: float = 0.0
    last: float = 0.0


# --- the provider and its requesters -------------------------------------------------------------------------


def _check_query(policies: Policies, requester: str, provider: str) -> str | None:
    """Why a query of the bench from ``requester`` to ``provider`` would not be answered automatically, or None."""
    network = policies.network
    asking, giving = network.body(requester), network.body(provider)
    if asking is None or giving is None:
        return f"{requester} or {provider} is not a body of the network (connectors/data/network.toml)"
    if asking.code == giving.code:
        return "a body does not query itself"
    if policies.permitted.match(asking.body_class, giving.body_class, AFFAIR, PERMITTED_INFO, QUERY_ITEMS) is None:
        return f"the permitted-query list does not allow {PERMITTED_INFO} {QUERY_ITEMS} to {provider}"
    if policies.sensitive.flagged(PERMITTED_INFO, QUERY_ITEMS):
        return f"{QUERY_ITEMS} holds a sensitive item"
    return None


def _requesters(city: City, registrations: Iterable[Output], key: bytes, policies: Policies) -> list[Requester]:
    """The persons the simulated municipalities registered who are this city's people without a support measure."""
    plain = {person_token(key, p.my_number) for p in city.residents.values() if not p.support_measure}
    out = []
    for _topic, event in registrations:
        if (
            isinstance(event, ChukanPerson)
            and event.person_token is not None
            and event.person_token in plain
            and _check_query(policies, event.tenant, city.tenant) is None
        ):
            out.append(Requester(event.tenant, event.integrated_atena_no, event.person_token))
    return out


def _registered(settings: Settings) -> set[str]:
    """The linkage tokens of the provider's persons with a 符号 in the 中間サーバー: whom a query can be answered
    about (the hub registers nobody below every kind's target age, so a child known elsewhere is no one here).
    """
    engine = chukan_engine(settings)
    try:
        with engine.connect() as conn:
            p = chukan_persons
            rows = conn.execute(
                sa.select(p.c.person_token).where(p.c.tenant == settings.tenant, p.c.fugo.is_not(None))
            ).scalars()
            return {str(t) for t in rows if t}
    finally:
        engine.dispose()


def _provider_counts(settings: Settings) -> tuple[int, int, int]:
    """(persons, with a 符号, 副本) of this tenant in the 中間サーバー."""
    engine = chukan_engine(settings)
    try:
        with engine.connect() as conn:
            p, f = chukan_persons, chukan_fukuhon
            persons = conn.execute(sa.select(sa.func.count()).where(p.c.tenant == settings.tenant)).scalar_one()
            fugo = conn.execute(
                sa.select(sa.func.count()).where(p.c.tenant == settings.tenant, p.c.fugo.is_not(None))
            ).scalar_one()
            fukuhon = conn.execute(sa.select(sa.func.count()).where(f.c.tenant == settings.tenant)).scalar_one()
    finally:
        engine.dispose()
    return int(persons), int(fugo), int(fukuhon)


# --- requests and answers --------------------------------------------------------------------------------------


def _query(requester: Requester, provider: str) -> ChukanQuery:
    now = now_utc()
    return ChukanQuery(
        event_id=uuid.uuid4(), occurred_at=now, tenant=requester.tenant, source_system=SOURCE,
        request_id=uuid.uuid4(), integrated_atena_no=requester.integrated_no, provider=provider, affair_code=AFFAIR,
        info_name_code=PERMITTED_INFO, items=QUERY_ITEMS, fiscal_year_from=YEAR - 4, fiscal_year_to=YEAR,
        requested_at=now,
    )  # fmt: skip


def _fire(
    producer: Producer,
    serde: TopicSerde[ChukanQuery],
    pool: Sequence[Requester],
    provider: str,
    rate: float,
    count: int,
    sent: Sent,
) -> None:
    """Publish ``count`` requests at ``rate`` per second, on a schedule (a late one does not shift the rest)."""
    interval = 1.0 / rate
    queries = {code: catalog.for_tenant(catalog.CHUKAN_QUERIES, code).name for code in network_tenants()}
    began = time.monotonic()
    for i in range(count):
        delay = began + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if i % 50 == 0:
            check_running()
        query = _query(pool[i % len(pool)], provider)
        key, value = serde.key(query), serde.value(query)
        request_id = str(query.request_id)

        def delivered(err: KafkaError | None, _msg: Message, rid: str = request_id) -> None:
            if err is not None:
                sent.failures.append(f"{rid}: {err.name()}")

        at = time.time()
        while True:
            try:
                producer.produce(queries[query.tenant], key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        sent.at[request_id] = at
        sent.first = sent.first or at
        sent.last = at
        producer.poll(0)
    if producer.flush(30):
        raise CommandError("the provision requests were not all delivered")


class Answers(threading.Thread):
    """Reads the requesters' answers from the given offsets on; keeps, per request id, the receive time and value."""

    def __init__(self, conf: ClientConfig, start: Mapping[tuple[str, int], int]) -> None:
        super().__init__(name="bench-answers", daemon=True)
        self.received: dict[str, tuple[float, int, bytes]] = {}  # request id -> (received, Kafka timestamp ms, value)
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._consumer = Consumer({**conf, "group.id": f"bench-provision-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "log_level": 0})  # fmt: skip
        self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in sorted(start.items())])

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                msg = self._consumer.poll(0.1)
                if msg is None or msg.error() is not None:
                    continue
                at = time.time()
                request_id = (msg.key() or b"").decode("utf-8", errors="replace").rpartition(":")[2]
                self.received.setdefault(request_id, (at, msg.timestamp()[1], msg.value() or b""))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def _await_answers(answers: Answers, wanted: Iterable[str], timeout_s: float) -> float:
    """Wait (bounded) until every wanted request is answered; the seconds waited."""
    ids = list(wanted)
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        check_running()
        if answers.error is not None:
            raise CommandError(f"the answers' consumer failed: {answers.error}")
        if all(i in answers.received for i in ids):
            break
        time.sleep(0.05)
    return time.monotonic() - started


def _outcomes(settings: Settings, answers: Answers, ids: Iterable[str]) -> Counter[str]:
    with registry_client(settings.schema_registry_config()) as registry:
        serde: TopicSerde[ProvisionResponse] = TopicSerde(catalog.QUERY_ANSWERS, registry)
        out: Counter[str] = Counter()
        for i in ids:
            got = answers.received.get(i)
            if got is None:
                out["(no answer)"] += 1
                continue
            response = serde.decode(got[2], catalog.QUERY_ANSWERS.name)
            out[response.outcome.value + (f": {response.message}" if response.message else "")] += 1
    return out


# --- the background ingest ---------------------------------------------------------------------------------------


class Ingest(threading.Thread):
    """Publishes pre-encoded records evenly over ``duration_s`` (a steady pace), from the moment it starts."""

    def __init__(self, settings: Settings, records: Sequence[Encoded], duration_s: float) -> None:
        super().__init__(name="bench-ingest", daemon=True)
        self.records = records
        self.pace = len(records) / duration_s
        self.published = 0
        self.error: BaseException | None = None
        self._producer = Producer(producer_config(settings))
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            began = time.monotonic()
            while self.published < len(self.records) and not self._halt.is_set():
                due = min(len(self.records), int((time.monotonic() - began) * self.pace) + 1)
                for topic, key, value, partition in self.records[self.published : due]:
                    while True:
                        try:
                            if partition is None:
                                self._producer.produce(topic, key=key, value=value)
                            else:
                                self._producer.produce(topic, key=key, value=value, partition=partition)
                            break
                        except BufferError:
                            self._producer.poll(0.05)
                self.published = max(self.published, due)
                self._producer.poll(0)
                time.sleep(0.01)
            if self._producer.flush(120):
                raise CommandError("the ingest's records were not all delivered")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(150)


def _committed(conf: ClientConfig, group: str, topics: Sequence[str]) -> int:
    """The sum of ``group``'s committed offsets over ``topics`` (what it has taken in so far)."""
    consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=30).topics
        partitions = [TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
        return sum(max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=30))
    finally:
        consumer.close()


def _sched(pid: int) -> tuple[float, float]:
    """(seconds on a CPU of all the threads of ``pid``, seconds its main thread was runnable but waited for a CPU)."""
    on = wait = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:  # the thread has just ended
            continue
        on += int(fields[0])
        if task.name == str(pid):
            wait = int(fields[1])
    return on / 1e9, wait / 1e9


def _machine_busy() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat (everyone's processes, not only ours)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])
    return total - fields[3] - fields[4], total


# --- figures --------------------------------------------------------------------------------------------------------


def _pct(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of ``values`` (sorted)."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def _every(*templates: Topic) -> tuple[str, ...]:
    """Every municipality's topic of each of ``templates``."""
    return tuple(catalog.for_tenant(t, code).name for t in templates for code in network_tenants())


def _hop_times(
    settings: Settings, conf: ClientConfig, start: Mapping[tuple[str, int], int], ids: set[str]
) -> dict[str, dict[str, int]]:
    """Per intermediate topic (its template: every municipality's topic of it), request id -> the Kafka timestamp
    (ms) of the record a step produced for it.
    """
    out: dict[str, dict[str, int]] = {}
    topics = _every(*(t for _, t in HOPS[:-1]))
    end = end_offsets(conf, topics)
    consumer = Consumer({**conf, "group.id": f"bench-provision-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "log_level": 0})  # fmt: skip
    want = sum(end[k] - start[k] for k in end)
    consumer.assign([TopicPartition(t, p, start[(t, p)]) for (t, p) in end if end[(t, p)] > start[(t, p)]])
    seen = 0
    deadline = time.monotonic() + 120
    try:
        with registry_client(settings.schema_registry_config()) as registry:
            serdes: dict[str, TopicSerde[Event]] = {t.name: TopicSerde(t, registry) for _, t in HOPS[:-1]}
            while seen < want and time.monotonic() < deadline:
                for msg in consumer.consume(500, timeout=0.5):
                    if msg.error() is not None:
                        continue
                    name, partition = str(msg.topic()), int(msg.partition() or 0)
                    if int(msg.offset() or 0) >= end[(name, partition)]:
                        continue
                    seen += 1
                    template = catalog.split_tenant(name)[1]
                    event = serdes[template].decode(msg.value() or b"", name)
                    request_id = str(getattr(event, "request_id", ""))
                    if request_id in ids:
                        out.setdefault(template, {}).setdefault(request_id, msg.timestamp()[1])
    finally:
        consumer.close()
    return out


def _profile_shares(path: Path) -> list[str]:
    """The share of the busy samples of a py-spy raw profile (collapsed stacks) with each of PROFILE_FRAMES."""
    if not path.exists():
        return ["(no profile written)"]
    hits: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "Runner.run_once" not in stack:
            continue  # the metrics server's thread, the interpreter's start
        samples += int(count)
        for frame, label in PROFILE_FRAMES:
            if frame in stack:
                hits[label] += int(count)
    if not samples:
        return ["(no samples)"]
    return [f"{100 * hits[label] / samples:5.1f}%  {label}" for _, label in PROFILE_FRAMES if hits[label]]


def _by_slice(sent: Sent, answers: Answers, slices: int = 5) -> str:
    """p50/p99 latency (ms) of the requests published in each successive part of the window."""
    span = max(sent.last - sent.first, 1e-9)
    parts: list[list[float]] = [[] for _ in range(slices)]
    for request_id, at in sent.at.items():
        got = answers.received.get(request_id)
        if got is not None:
            parts[min(slices - 1, int((at - sent.first) / span * slices))].append(1000 * (got[0] - at))
    for values in parts:
        values.sort()
    return ", ".join(f"{_pct(v, 50):.0f} / {_pct(v, 99):.0f}" for v in parts)


def _hop_lines(sent: Sent, answers: Answers, hops: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Median and p99 of each hop, over the requests whose every step was seen."""
    stages: list[list[float]] = [[] for _ in range(len(HOPS) + 1)]
    for request_id, at in sent.at.items():
        got = answers.received.get(request_id)
        if got is None:
            continue
        marks = [at * 1000]
        for _, topic in HOPS[:-1]:
            marks.append(float(hops.get(topic.name, {}).get(request_id, -1)))
        marks += [float(got[1]), got[0] * 1000]
        if min(marks) < 0:
            continue
        for n in range(len(stages)):
            stages[n].append(marks[n + 1] - marks[n])
    names = [name for name, _ in HOPS] + ["the requester's consumer received it"]
    first = ["published → "] + ["→ "] * len(HOPS)
    lines = []
    for n, values in enumerate(stages):
        values.sort()
        if not values:
            continue
        lines.append(f"{first[n]}{names[n]}: median {_pct(values, 50):.0f} ms, p99 {_pct(values, 99):.0f} ms")
    return lines


# --- the command ----------------------------------------------------------------------------------------------------


def cmd_bench_provision(settings: Settings, args: argparse.Namespace, prepare: Callable[[], int]) -> int:
    if args.rate <= 0 or args.seconds <= 0 or args.size < 1 or args.provider_size < 1:
        raise CommandError("--rate and --seconds must be positive, --size and --provider-size at least 1")
    policies = default_policies()
    provider = settings.tenant
    body = policies.network.body(provider)
    if body is None:
        raise CommandError(f"KENSHIN_TENANT {provider} is not a body of the network (connectors/data/network.toml)")
    rc = prepare()
    if rc:
        return rc
    conf: ClientConfig = dict(settings.kafka_config())
    key = linkage_key(settings.state_dir)
    year_start = fiscal_year_start(YEAR)

    print(f"bench: provider {provider} {body.name}, a synthetic city of {args.provider_size} residents (seed "
          f"{args.seed}); the simulated municipalities that know its people request")  # fmt: skip
    city, _plan = build(args.seed, args.provider_size, provider, YEAR, 0.05)  # the city run_scenario will publish
    others = simulate_others(city, key, args.seed, year_start)
    pool = _requesters(city, others.registrations, key, policies)
    if not pool:
        raise CommandError(f"a city of {args.provider_size} residents has nobody the municipalities could ask about")

    tenant_body = f"{random.Random().randrange(10000, 99999):05d}"  # noqa: S311 - a throw-away tenant
    ingest_tenant = tenant_body + str(tenant_check_digit(tenant_body))
    ingest_settings = replace(settings, tenant=ingest_tenant)
    ingest_city, ingest_plan = build(args.seed + 1, args.size, ingest_tenant, YEAR, 0.05)
    records = (
        _encode(ingest_settings, catalog.RESIDENT_CHANGES, ingest_city.initial)
        + _commands(ingest_settings, YEAR)
        + _encode(ingest_settings, catalog.RESIDENT_CHANGES, ingest_city.changes)
        + _encode(ingest_settings, catalog.INSTITUTION_RESULTS, ingest_plan.results)
    )
    print(f"bench: ingest of tenant {ingest_tenant}: {len(records)} events ({args.size} residents) encoded")

    env = {**os.environ, "KENSHIN_CONNECTOR_MOVE_IN_SINCE": year_start.isoformat()}
    producer = Producer(producer_config(settings))
    requests = Producer(producer_config(settings, **{"linger.ms": 0}))  # a request goes out at once
    with (
        pipeline_processes(settings, env, ALL_PROCESSES) as children,
        registry_client(settings.schema_registry_config()) as registry,
    ):
        started = time.monotonic()
        wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=SETTLE_TIMEOUT_S)  # an earlier run's backlog
        publish_outputs(settings, others.registrations)
        settle(conf, [GROUPS["chukan"], GROUPS["network"]], settings.tenant, SETTLE_TIMEOUT_S)
        run_scenario(settings, seed=args.seed, size=args.provider_size, fiscal_year=YEAR, progress=False,
                     start_fiscal_year=lambda: _publish(producer, _commands(settings, YEAR)),
                     timeout_s=SETTLE_TIMEOUT_S, echo=lambda line: print(f"  provider, {line.strip()}"))  # fmt: skip
        settle(conf, list(GROUPS.values()), settings.tenant, SETTLE_TIMEOUT_S)
        wait_drained(conf, SINKS_GROUP, SINK_INPUTS, timeout_s=SETTLE_TIMEOUT_S)
        persons, with_fugo, fukuhon = _provider_counts(settings)
        registered = _registered(settings)
        pool = [r for r in pool if r.token in registered]
        if not pool:
            raise CommandError("none of the persons the municipalities know is registered with the provider")
        print(f"bench: provider set up in {time.monotonic() - started:.0f}s: {persons} persons ({with_fugo} with a "
              f"符号) and {fukuhon} 副本 in the 中間サーバー; {len(pool)} persons to ask about, known to "
              f"{len({r.tenant for r in pool})} municipalities")  # fmt: skip

        serde: TopicSerde[ChukanQuery] = TopicSerde(catalog.CHUKAN_QUERIES, registry)
        answers = Answers(conf, end_offsets(conf, _every(catalog.QUERY_ANSWERS)))
        answers.start()
        ingest: Ingest | None = None
        profiles: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        try:
            warm = Sent()
            _fire(requests, serde, pool, provider, WARMUP_RATE, WARMUP_REQUESTS, warm)
            _await_answers(answers, warm.at, ANSWER_TIMEOUT_S)
            got = _outcomes(settings, answers, warm.at)
            if set(got) != {ProvisionOutcome.PROVIDED_AUTOMATICALLY.value}:
                raise CommandError(f"warm-up requests were not all answered automatically: {dict(got)}")
            print(f"bench: {WARMUP_REQUESTS} warm-up requests answered automatically")

            hop_start = end_offsets(conf, _every(*(t for _, t in HOPS[:-1])))
            pids = {child.name: child.pid for child in children.children}
            ingest = Ingest(settings, records, LEAD_S + args.seconds)
            print(f"bench: ingest at {ingest.pace:.0f} events/s; in {LEAD_S:.0f}s, {args.rate:g} requests/s for "
                  f"{args.seconds:g}s")  # fmt: skip
            ingest.start()
            time.sleep(LEAD_S)
            profiles = _start_profiles({n: pids[n] for n in PROFILED}, args.profile) if args.profile else []
            pids["this bench"] = os.getpid()
            sched_before = {name: _sched(pid) for name, pid in pids.items()}
            busy_before = _machine_busy()
            processed_before = _committed(conf, APP_ID, PROCESSOR_INPUTS)
            written_before = _committed(conf, SINKS_GROUP, SINK_INPUTS)
            window_began = time.monotonic()
            sent = Sent()
            _fire(requests, serde, pool, provider, args.rate, max(1, round(args.rate * args.seconds)), sent)
            window_s = time.monotonic() - window_began
            processed = _committed(conf, APP_ID, PROCESSOR_INPUTS) - processed_before
            written = _committed(conf, SINKS_GROUP, SINK_INPUTS) - written_before
            sched = {name: _sched(pid) for name, pid in pids.items()}
            busy_after, load = _machine_busy(), os.getloadavg()[0]
            lag_end = sum(end_offsets(conf, PROCESSOR_INPUTS).values()) - _committed(conf, APP_ID, PROCESSOR_INPUTS)
            waited = _await_answers(answers, sent.at, ANSWER_TIMEOUT_S)
            path_cpu = {name: _sched(pids[name])[0] - sched_before[name][0] for name in PROVISION_PATH}
            _stop_profiles(profiles)
            profiles = []
            ingest.stop()
            if ingest.error is not None:
                raise CommandError(f"the background ingest failed: {ingest.error}")
            outcomes = _outcomes(settings, answers, sent.at)
            hops = _hop_times(settings, conf, hop_start, set(sent.at))
        finally:
            answers.stop()
            if ingest is not None:
                ingest.stop()
            _stop_profiles(profiles)
        drained = True
        try:
            wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=DRAIN_AFTER_S)
            wait_drained(conf, SINKS_GROUP, SINK_INPUTS, timeout_s=DRAIN_AFTER_S)
        except TimeoutError:
            drained = False

    latencies = sorted(1000 * (answers.received[i][0] - at) for i, at in sent.at.items() if i in answers.received)
    automatic = outcomes.get(ProvisionOutcome.PROVIDED_AUTOMATICALLY.value, 0)
    missing = len(sent.at) - len(latencies)
    other = {k: v for k, v in outcomes.items() if k not in (ProvisionOutcome.PROVIDED_AUTOMATICALLY.value,
                                                              "(no answer)")}  # fmt: skip
    achieved = (len(sent.at) - 1) / (sent.last - sent.first) if sent.last > sent.first else math.nan
    p99 = _pct(latencies, 99)
    worst = latencies[-1] if latencies else math.nan
    met = "met" if p99 <= TARGET_P99_MS else "**missed**"
    busy = busy_after[0] - busy_before[0], busy_after[1] - busy_before[1]
    cores = os.cpu_count() or 1
    procs = ", ".join(
        f"{name} {100 * (sched[name][0] - sched_before[name][0]) / window_s:.0f}% "
        f"(+{100 * (sched[name][1] - sched_before[name][1]) / window_s:.0f}%)"
        for name in pids
    )
    command = (f"kenshin-hub bench provision --rate {args.rate:g} --seconds {args.seconds:g} --size {args.size} "
               f"--provider-size {args.provider_size}")  # fmt: skip
    report = (
        f"\n## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — `{command}`\n\n"
        f"- machine: {machine()}; one local Kafka 4.1.1 node (the project's stack), SQLite stores; load "
        f"(everyone's) during the window {100 * busy[0] / max(1, busy[1]):.0f}% of {cores} cores, load "
        f"average {load:.1f} at its end\n"
        f"- provider {provider} ({body.name}): a {args.provider_size}-resident city through the pipeline, "
        f"{persons} persons ({with_fugo} with a 符号) and {fukuhon} 副本 in the 中間サーバー; requesters: "
        f"{len({r.tenant for r in pool})} simulated municipalities asking about {len(pool)} persons "
        f"({PERMITTED_INFO} {','.join(QUERY_ITEMS)}: permitted, no sensitive item, no support-measure person)\n"
        f"- requests: {len(sent.at)} at {args.rate:g}/s for {args.seconds:g} s, achieved **{achieved:.2f}/s**; "
        f"answered automatically {automatic}, otherwise {sum(other.values())}, missing {missing} "
        f"(waited {waited:.1f} s after the last)\n"
        f"- latency, published → answer received on {catalog.QUERY_ANSWERS.name}: p50 **{_pct(latencies, 50):.0f} "
        f"ms**, p90 **{_pct(latencies, 90):.0f} ms**, p99 **{p99:.0f} ms**, max **{worst:.0f} ms**; "
        f"target p99 ≤ {TARGET_P99_MS:.0f} ms: {met}\n"
        f"- p50 / p99 by fifth of the window (does a queue build?): {_by_slice(sent, answers)}\n"
        f"- hops (Kafka timestamps of each step's record, ms resolution):\n"
        + "".join(f"    - {line}\n" for line in _hop_lines(sent, answers, hops))
        + f"- concurrent ingest (tenant {ingest_tenant}, {args.size} residents, {len(records)} events offered at "
        f"{ingest.pace:.0f}/s): the processors took **{processed / window_s:.0f} events/s** in the window, the sinks "
        f"{written / window_s:.0f} records/s; processors' lag at the window's end {lag_end}"
        f"{'' if drained else '; not drained within ' + str(int(DRAIN_AFTER_S)) + ' s after it'}\n"
        f"- CPU in the window, share of one core (+ share of the window its main thread was runnable but waited "
        f"for a core, /proc/<pid>/schedstat): "
        f"{procs}; CPU per request until the last answer: "
        + ", ".join(f"{name} {1000 * path_cpu[name] / max(1, len(sent.at)):.1f} ms" for name in PROVISION_PATH)
        + "\n"
    )
    if other:
        report += "- answers other than automatic: " + "; ".join(f"{k} × {v}" for k, v in sorted(other.items()))
        report += "\n"
    for name in PROFILED if args.profile else ():
        report += f"\n  py-spy, {name}, share of its busy samples with the frame on the stack:\n\n"
        report += "".join(f"      {line}\n" for line in _profile_shares(args.profile / f"{name}.txt"))
    print(report)
    if args.report:
        with args.report.open("a", encoding="utf-8") as f:
            f.write(report)
        print(f"appended to {args.report}")
    failures = missing + sum(other.values()) + len(sent.failures)
    if failures:
        for line in sent.failures[:10]:
            print(f"  undelivered request {line}")
        raise CommandError(f"{failures} of {len(sent.at)} requests were not answered automatically")
    return 0
