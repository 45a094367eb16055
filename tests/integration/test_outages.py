"""Outages of the infrastructure under a load: the schema registry down for 30 s, one broker of three killed.

Both run the real pipeline (processors and sinks as separate processes) on a stack of their own (own state
directory, free ports): the registry test stops and restarts that stack's registry, which the session's cluster
(shared by other tests, or not ours at all when it comes from the environment or testcontainers) cannot afford;
the broker test needs three nodes. The tables must end identical to a calm run of the same scenario (the
comparison of test_kill.py), nothing may be dead-lettered and no process may exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from hub.kafka import ClientConfig
from hub.lag import group_lag
from hub.runtime.process import running_pid, stop
from hub.runtime.stack import LocalStack
from hub.scenario import SINK_INPUTS, ScenarioRun, run_scenario
from processors.app import APP_ID
from schemas.models import DeadLetter
from schemas.serde import TopicSerde, registry_client
from sinks.runner import GROUP_ID as SINKS_GROUP
from tests.integration.conftest import Endpoints, local_stack_settings
from tests.integration.pipeline import (
    Pipeline,
    Snapshot,
    assert_same_tables,
    running_pipeline,
    snapshot,
    tenant_code,
)
from topics.admin import describe
from topics.catalog import (
    ALL_TOPICS,
    INSTITUTION_RESULTS,
    INVITATIONS,
    LEDGER_ENTRIES,
    RESIDENT_CHANGES,
    RESIDENTS,
    SCREENING_ERRORS,
    Topic,
    cluster_topics,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

SEED, SIZE, YEAR, CHUNKS = 11, 2500, 2025, 4  # 4,437 events
OUTAGE_S = 30.0  # how long the registry stays down at least (the scenario, not an assertion)
CALM, REGISTRY_OUT, BROKER_DOWN = tenant_code("01215"), tenant_code("01216"), tenant_code("01217")


def dlq_topics(tenant: str) -> tuple[Topic, ...]:
    """Every dead-letter topic that can hold ``tenant``'s letters: the hub's own and its tenant topics'."""
    return tuple(t for t in cluster_topics([tenant]) if t.value_type is DeadLetter)


Fault = Callable[[Pipeline, str, int], None]


# --- stacks, runs, comparisons -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _own_stack(state_dir: Path, nodes: int) -> Iterator[tuple[LocalStack, Endpoints]]:
    local = LocalStack(local_stack_settings(state_dir, nodes=nodes), echo=lambda _line: None)
    try:
        info = local.up(nodes=nodes)
        yield local, Endpoints(info.bootstrap, info.registry_url, f"own {nodes}-node stack")
    finally:
        local.down(purge=True)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Endpoints]]:
    with _own_stack(tmp_path_factory.mktemp("outage-stack"), nodes=1) as stack:
        yield stack


@pytest.fixture(scope="module")
def calm(single: tuple[LocalStack, Endpoints], tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """The tables of the scenario run without any fault (both tests compare against it)."""
    _local, endpoints = single
    tables, _run = _run_pipeline(endpoints, tmp_path_factory.mktemp("calm"), CALM, None)
    assert _dead_letters(endpoints, CALM) == []
    return tables


def _run_pipeline(
    endpoints: Endpoints, workdir: Path, tenant: str, fault: Fault | None
) -> tuple[Snapshot, ScenarioRun]:
    workdir.mkdir(parents=True, exist_ok=True)
    with running_pipeline(endpoints, workdir, tenant) as pipeline:
        run = run_scenario(
            pipeline.settings, seed=SEED, size=SIZE, fiscal_year=YEAR, dirty_share=0.1, progress=False, chunks=CHUNKS,
            on_chunk=None if fault is None else lambda stage, i: fault(pipeline, stage, i),
            start_fiscal_year=lambda: pipeline.start_year(YEAR), check=pipeline.check, timeout_s=600,
        )  # fmt: skip
        assert sum(run.published.values()) > 4000
        exited = {what: proc.returncode for what, proc in pipeline.procs.items() if proc.poll() is not None}
        assert exited == {}, f"exited during the run: {exited}; logs in {workdir}"
        assert set(pipeline.procs) == {"processors", "sinks"}
        return snapshot(pipeline), run


def _dead_letters(endpoints: Endpoints, tenant: str) -> list[tuple[str, str, str]]:
    """(dead-letter topic, step, reason) of every dead letter of ``tenant`` on any dead-letter topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": endpoints.bootstrap,
            "group.id": f"outages-dlq-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    found: list[tuple[str, str, str]] = []
    try:
        metadata = consumer.list_topics(timeout=30).topics
        wanted: dict[tuple[str, int], int] = {}  # (topic, partition) -> high watermark
        for topic in dlq_topics(tenant):
            for partition in metadata[topic.name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic.name, partition), 30, cached=False)
                if high > low:
                    wanted[(topic.name, partition)] = high
        if not wanted:
            return []
        consumer.assign([TopicPartition(t, p, 0) for t, p in wanted])
        with registry_client({"url": endpoints.registry_url}) as registry:
            serdes: dict[str, TopicSerde[DeadLetter]] = {t.name: TopicSerde(t, registry) for t in dlq_topics(tenant)}
            done: set[tuple[str, int]] = set()
            deadline = time.monotonic() + 60
            while len(done) < len(wanted) and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                name, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
                letter = serdes[name].decode(msg.value() or b"")
                if letter.tenant == tenant:
                    found.append((name, letter.step, letter.reason))
                if offset + 1 >= wanted[(name, partition)]:
                    done.add((name, partition))
            assert done == set(wanted), "the dead-letter topics were not read to their end within 60 s"
    finally:
        consumer.close()
    return found


def _graceful_restart(pipeline: Pipeline, what: str) -> None:
    proc = pipeline.procs.pop(what)
    proc.terminate()
    proc.wait(timeout=60)
    pipeline.start(what)


def _log_since(path: Path, offset: int) -> str:
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


def _subject_ids(registry_url: str) -> dict[str, int]:
    with registry_client({"url": registry_url}) as client:  # a new client: nothing cached
        return {t.value_subject: client.get_latest_version(t.value_subject).schema_id for t in ALL_TOPICS}


# --- 1. the schema registry down for 30 s ------------------------------------------------------------------------


class RegistryOutage:
    """Stops the registry during the results stage, with processes that must ask it, and brings it back.

    The sinks stop after the 住基異動 (their input piles up); when the results' first chunk is out, the registry
    goes, then the processors are restarted and the sinks started: both are fresh processes with nothing cached,
    so they must ask the registry for every writer schema and for their outputs' ids. The publisher's serde looked
    its id up before the outage, so the remaining chunks are published while the registry is down. After the last
    chunk, once both processes have met the outage and it has lasted OUTAGE_S, the registry is started again.
    """

    def __init__(self, local: LocalStack) -> None:
        self.local = local
        self.down_at: float | None = None
        self.down_s = 0.0
        self.log_offsets: dict[str, int] = {}

    def __call__(self, pipeline: Pipeline, stage: str, i: int) -> None:
        if (stage, i) == ("住基異動", CHUNKS - 1):
            sinks = pipeline.procs.pop("sinks")  # not started again before the outage
            sinks.terminate()
            sinks.wait(timeout=60)
        elif (stage, i) == ("検診結果", 0):
            assert stop(self.local.layout.pid_file("registry"), self.local.layout.marker), "no registry to stop"
            self.down_at = time.monotonic()
            for what in ("processors", "sinks"):
                self.log_offsets[what] = _size(pipeline.workdir / f"{what}.log")
            _graceful_restart(pipeline, "processors")
            pipeline.start("sinks")
        elif (stage, i) == ("検診結果", CHUNKS - 1):
            assert self.down_at is not None
            for what in ("processors", "sinks"):
                _wait_for(f"{what} met the outage", partial(self._met_outage, pipeline, what), timeout_s=120)
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - self.down_at)))
            conf: ClientConfig = dict(pipeline.settings.kafka_config())
            # Still down: neither side could have taken in what waits for it.
            assert sum(group_lag(conf, APP_ID, [INSTITUTION_RESULTS.name]).values()) > 0
            assert sum(group_lag(conf, SINKS_GROUP, SINK_INPUTS).values()) > 0
            assert all(p.poll() is None for p in pipeline.procs.values())
            self.local.up()
            self.down_s = time.monotonic() - self.down_at

    def _met_outage(self, pipeline: Pipeline, what: str) -> bool:
        """The runner logged a batch rolled back for RegistryUnavailable since the process was started."""
        return "RegistryUnavailable" in _log_since(pipeline.workdir / f"{what}.log", self.log_offsets[what])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.timeout(900)
def test_a_registry_outage_of_30_s_loses_nothing_and_dead_letters_nothing(
    single: tuple[LocalStack, Endpoints], calm: Snapshot, tmp_path: Path
) -> None:
    local, endpoints = single
    ids_before = _subject_ids(endpoints.registry_url)
    outage = RegistryOutage(local)
    stormy, run = _run_pipeline(endpoints, tmp_path / "registry-outage", REGISTRY_OUT, outage)

    print(f"registry down for {outage.down_s:.1f}s; stage timings {run.timings}", file=sys.stderr)
    assert outage.down_s >= OUTAGE_S
    assert run.published["検診結果"] > 0
    assert_same_tables(calm, stormy)
    assert _dead_letters(endpoints, REGISTRY_OUT) == []
    # Apicurio keeps its H2 file under the state dir: the restarted registry serves the same ids, which the
    # processes cached before the outage and the publisher wrote into every message.
    assert _subject_ids(endpoints.registry_url) == ids_before


# --- 2. one broker of three killed -------------------------------------------------------------------------------


def _coordinator_partition(group: str, partitions: int) -> int:
    """The __consumer_offsets partition of ``group``: Kafka's ``Utils.abs(group.hashCode()) % partitions``."""
    h = 0
    raw = group.encode("utf-16-be")
    for j in range(0, len(raw), 2):
        h = (31 * h + int.from_bytes(raw[j : j + 2], "big")) & 0xFFFFFFFF
    signed = h - (1 << 32) if h >= 1 << 31 else h
    return 0 if signed == -(1 << 31) else abs(signed) % partitions


class BrokerLoss:
    """SIGKILLs the broker coordinating the processors' group (it also leads about a third of the partitions) in
    the middle of the 住基 population, and starts it again during the results stage: the 年度開始 and the 住基異動
    go through two brokers of three."""

    def __init__(self, local: LocalStack, endpoints: Endpoints) -> None:
        self.local = local
        self.endpoints = endpoints
        self.victim: int | None = None
        self.restarted = False

    def __call__(self, pipeline: Pipeline, stage: str, i: int) -> None:
        if (stage, i) == ("住基 population", 1):
            _wait_for("the processors' group has a coordinator", self._find_coordinator, timeout_s=60)
            pid_file = self.local.layout.pid_file(f"kafka-{self.victim}")
            pid = running_pid(pid_file, self.local.layout.marker)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # the stack's JVMs are this process's children
            assert running_pid(pid_file, self.local.layout.marker) is None
        elif (stage, i) == ("検診結果", 1):
            self.local.up(nodes=3)  # starts only the dead node, waits until the cluster sees three brokers
            self.restarted = True

    def _find_coordinator(self) -> bool:
        admin = AdminClient({"bootstrap.servers": self.endpoints.bootstrap})
        offsets = admin.list_topics("__consumer_offsets", timeout=30).topics.get("__consumer_offsets")
        if offsets is None or offsets.error is not None or not offsets.partitions:
            return False
        leader = offsets.partitions[_coordinator_partition(APP_ID, len(offsets.partitions))].leader
        self.victim = leader if leader in (1, 2, 3) else None
        return self.victim is not None


@pytest.mark.timeout(900)
def test_one_broker_of_three_killed_mid_load_loses_nothing(calm: Snapshot, tmp_path: Path) -> None:
    with _own_stack(tmp_path / "state3", nodes=3) as (local, endpoints):
        loss = BrokerLoss(local, endpoints)
        stormy, run = _run_pipeline(endpoints, tmp_path / "broker-loss", BROKER_DOWN, loss)
        assert loss.victim is not None
        assert loss.restarted
        print(f"killed kafka-{loss.victim}; stage timings {run.timings}", file=sys.stderr)
        admin = AdminClient({"bootstrap.servers": endpoints.bootstrap})
        for state in describe(
            admin, [RESIDENT_CHANGES, INSTITUTION_RESULTS, RESIDENTS, LEDGER_ENTRIES, SCREENING_ERRORS, INVITATIONS]
        ):
            assert (state.replication_factor, state.configs["min.insync.replicas"]) == (3, "2"), state.name
        assert_same_tables(calm, stormy)
        assert _dead_letters(endpoints, BROKER_DOWN) == []
