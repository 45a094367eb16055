"""Drive a synthetic city through the running pipeline, as the upstream systems would (demo, tests, bench).

The processors and sinks run elsewhere (`kenshin-hub run`); this publishes through the same Avro serde as any
upstream system and waits, by consumer-group lag, until each stage has taken everything in:

1. the population at the start of the fiscal year (住基), 2. the 年度開始 command (受診勧奨),
3. the year's 住基異動, 4. the year's results (with dirty data and corrections), 5. the SQL sinks.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Producer

from connectors.simulators import generate_city, generate_results, publish
from connectors.simulators.city import City
from connectors.simulators.institution import ResultPlan
from hub.kafka import ClientConfig, producer_config
from hub.lag import wait_drained
from hub.settings import Settings
from processors.app import APP_ID, INPUT_TOPICS
from schemas.models import CommandType, Event, HubCommand
from schemas.record import now_utc
from schemas.serde import TopicSerde, registry_client
from sinks.runner import GROUP_ID as SINKS_GROUP
from topics import catalog
from topics.catalog import Topic

# every topic the processors read, their own outputs read back included (reception claims, SUPERSEDED, the 年度開始's
# continuations): drained means all of them
PROCESSOR_INPUTS = tuple(t.name for t in INPUT_TOPICS)
SINK_INPUTS = (
    catalog.RESIDENTS.name,
    catalog.LEDGER_ENTRIES.name,
    catalog.SCREENING_ERRORS.name,
    catalog.INVITATIONS.name,
    catalog.NOTICE_DECISIONS.name,
    catalog.INSTITUTION_CHANGES.name,
)


def year_start_commands(tenant: str, year: int, source_system: str) -> list[HubCommand]:
    """年度開始: one command per partition of the command topic, so every partition's residents get their notices.

    Ids derive from the tenant, year and partition: starting a year twice is the same command.
    """
    return [
        HubCommand(
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"fy-start:{tenant}:{year}:{p}"),
            occurred_at=now_utc(),
            tenant=tenant,
            source_system=source_system,
            command=CommandType.FISCAL_YEAR_START,
            fiscal_year=year,
            partition=p,
        )
        for p in range(catalog.HUB_COMMANDS.partitions)
    ]


@dataclass
class ScenarioRun:
    city: City
    plan: ResultPlan
    timings: dict[str, float] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)


def build(seed: int, size: int, tenant: str, fiscal_year: int, dirty_share: float) -> tuple[City, ResultPlan]:
    city = generate_city(seed=seed, size=size, tenant=tenant, fiscal_year=fiscal_year)
    return city, generate_results(city, seed=seed, fiscal_year=fiscal_year, dirty_share=dirty_share)


def run_scenario(
    settings: Settings,
    *,
    seed: int,
    size: int,
    fiscal_year: int,
    dirty_share: float = 0.05,
    start_fiscal_year: Callable[[], None],
    progress: bool = True,
    timeout_s: float = 600.0,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    chunks: int = 1,
    on_chunk: Callable[[str, int], None] | None = None,
    check: Callable[[], None] | None = None,
) -> ScenarioRun:
    """Publish the scenario stage by stage; ``on_chunk(stage, i)`` runs after each of ``chunks`` parts of a stage
    (the fault tests kill processes there).

    ``check`` runs at every turn of every drain wait: a caller that runs the processes itself raises there when one
    has died, so the scenario fails at once instead of waiting ``timeout_s`` on a dead child.
    """
    city, plan = build(seed, size, settings.tenant, fiscal_year, dirty_share)
    run = ScenarioRun(city, plan)
    conf: ClientConfig = dict(settings.kafka_config())
    with registry_client(settings.schema_registry_config()) as registry:
        producer = Producer(producer_config(settings))

        def stage(name: str, topic: Topic, events: Sequence[Event]) -> None:
            started = time.monotonic()
            serde: TopicSerde[Event] = TopicSerde(topic, registry)
            size = -(-len(events) // chunks)
            run.published[name] = 0
            for i in range(chunks):
                part = events[i * size : (i + 1) * size]
                run.published[name] += publish(producer, serde, part, progress=progress, label=name)
                if on_chunk is not None:
                    on_chunk(name, i)
            wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=timeout_s, check=check)
            run.timings[name] = time.monotonic() - started
            echo(f"  {name}: {run.published[name]} events in {run.timings[name]:.1f}s")

        stage("住基 population", catalog.RESIDENT_CHANGES, city.initial)
        started = time.monotonic()
        start_fiscal_year()
        wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=timeout_s, check=check)
        run.timings["年度開始"] = time.monotonic() - started
        stage("住基異動", catalog.RESIDENT_CHANGES, city.changes)
        stage("検診結果", catalog.INSTITUTION_RESULTS, plan.results)
        started = time.monotonic()
        wait_drained(conf, SINKS_GROUP, SINK_INPUTS, timeout_s=timeout_s, check=check)
        run.timings["SQL sinks"] = time.monotonic() - started
    return run
