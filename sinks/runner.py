"""Run the SQL sinks (the `kenshin-hub run sinks` process): migrate, then consume until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from prometheus_client import CollectorRegistry

from hub.settings import ProcessName, Settings
from monitoring.health import cached
from monitoring.metrics import HubMetrics
from monitoring.process import monitored
from schemas.serde import registry_client
from sinks.base import SinkRunner
from sinks.db import make_engine, upgrade
from sinks.errors import ErrorsSink
from sinks.invitations import InvitationsSink
from sinks.ledger import LedgerSink
from sinks.provision_records import ProvisionRecordsSink
from sinks.residents import ResidentsSink
from sinks.staff import StaffActivitySink
from topics.catalog import SINKS_DLQ

log = logging.getLogger("kenshin_hub.sinks")

GROUP_ID = "kenshin-hub-sinks"
DATABASE_CHECK_TTL_S = 5.0

# Builds a process's runner on the metrics bundle and heartbeat that `serve_runner` gives it.
RunnerFactory = Callable[[HubMetrics, Callable[[], None]], SinkRunner]


def build_runner(
    settings: Settings, metrics: HubMetrics | None = None, heartbeat: Callable[[], None] | None = None
) -> SinkRunner:
    engine = make_engine(settings.database_url.reveal())
    upgrade(engine)
    runner_metrics = metrics if metrics is not None else HubMetrics(CollectorRegistry(), process="sinks")
    return SinkRunner(
        settings,
        [
            ResidentsSink(),
            LedgerSink(),
            ErrorsSink(),
            InvitationsSink(),
            ProvisionRecordsSink(),
            StaffActivitySink(runner_metrics),
        ],
        group_id=GROUP_ID,
        registry_client=registry_client(settings.schema_registry_config()),
        dead_letter_topic=SINKS_DLQ,
        engine=engine,
        metrics=runner_metrics,
        heartbeat=heartbeat,
    )


def serve_runner(settings: Settings, process: ProcessName, build: RunnerFactory) -> int:
    """Run a :class:`SinkRunner` process until SIGTERM/SIGINT, serving its metrics and health endpoints.

    Ready: partitions assigned and the database answering; live: the consume loop turns; the group's lag is
    sampled. Every process built on a SinkRunner (the sinks, the provision flow's services) runs through here.
    """
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with monitored(settings, process) as monitor, build(monitor.metrics, monitor.beat) as runner:
        monitor.health.ready_when("partitions assigned", lambda: bool(runner.assignment))
        monitor.health.ready_when("database reachable", cached(runner.database_reachable, DATABASE_CHECK_TTL_S))
        monitor.watch_lag(runner.group_id, runner.topics)
        log.info("%s: consuming %s", process, ", ".join(runner.topics))
        runner.run(stop)
    return 0


def run_sinks(settings: Settings) -> int:
    return serve_runner(settings, "sinks", lambda metrics, beat: build_runner(settings, metrics, beat))
