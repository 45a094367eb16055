"""Run the SQL sinks (the `kenshin-hub run sinks` process): migrate, then consume until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from prometheus_client import CollectorRegistry

from hub.settings import Settings
from monitoring.health import cached
from monitoring.metrics import HubMetrics
from monitoring.process import monitored
from schemas.serde import registry_client
from sinks.base import SinkRunner
from sinks.db import make_engine, upgrade
from sinks.errors import ErrorsSink
from sinks.invitations import InvitationsSink
from sinks.ledger import LedgerSink
from sinks.residents import ResidentsSink
from sinks.staff import StaffActivitySink
from topics.catalog import SINKS_DLQ

log = logging.getLogger("kenshin_hub.sinks")

GROUP_ID = "kenshin-hub-sinks"
DATABASE_CHECK_TTL_S = 5.0


def build_runner(
    settings: Settings, metrics: HubMetrics | None = None, heartbeat: Callable[[], None] | None = None
) -> SinkRunner:
    engine = make_engine(settings.database_url.reveal())
    upgrade(engine)
    runner_metrics = metrics if metrics is not None else HubMetrics(CollectorRegistry(), process="sinks")
    return SinkRunner(
        settings,
        [ResidentsSink(), LedgerSink(), ErrorsSink(), InvitationsSink(), StaffActivitySink(runner_metrics)],
        group_id=GROUP_ID,
        registry_client=registry_client(settings.schema_registry_config()),
        dead_letter_topic=SINKS_DLQ,
        engine=engine,
        metrics=runner_metrics,
        heartbeat=heartbeat,
    )


def run_sinks(settings: Settings) -> int:
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with monitored(settings, "sinks") as monitor, build_runner(settings, monitor.metrics, monitor.beat) as runner:
        monitor.health.ready_when("partitions assigned", lambda: bool(runner.assignment))
        monitor.health.ready_when("database reachable", cached(runner.database_reachable, DATABASE_CHECK_TTL_S))
        monitor.watch_lag(GROUP_ID, runner.topics)
        log.info("sinks: writing %s to the database", ", ".join(s.topic.name for s in runner.sinks))
        runner.run(stop)
    return 0
