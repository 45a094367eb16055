"""The one metrics and health hookup of every runtime process: serve a :class:`Runner` until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from hub.engine.runner import Runner
from hub.retention import STORES, TenantSchedules
from hub.settings import ProcessName, Settings
from monitoring.health import cached
from monitoring.metrics import HubMetrics
from monitoring.process import monitored

log = logging.getLogger("kenshin_hub.engine")

DATABASE_CHECK_TTL_S = 5.0

# Builds a process's runner on the metrics bundle and heartbeat that `serve_runner` gives it.
RunnerFactory = Callable[[HubMetrics, Callable[[], None]], Runner]


def serve_runner(settings: Settings, process: ProcessName, build: RunnerFactory) -> int:
    """Run a :class:`Runner` process until SIGTERM/SIGINT, serving its metrics and health endpoints.

    Ready: partitions assigned and the database answering; live: the consume loop turns; the group's lag is
    sampled. Every process built on a Runner (the sinks, the provision flow's services) runs through here.
    """
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    retention: list[Callable[[], None]] = []  # the daily retention run, started from the loop (hub/retention.py)

    def beat(monitor_beat: Callable[[], None]) -> Callable[[], None]:
        def turn() -> None:
            monitor_beat()
            for tick in retention:
                tick()  # a due run starts in a background thread; the loop keeps turning

        return turn

    with monitored(settings, process) as monitor, build(monitor.metrics, beat(monitor.beat)) as runner:
        if settings.retention_schedule == "on" and process in STORES:
            retention.append(TenantSchedules.for_process(settings, process, runner.engine).heartbeat(None))
        monitor.health.ready_when("partitions assigned", lambda: bool(runner.assignment))
        monitor.health.ready_when("database reachable", cached(runner.database_reachable, DATABASE_CHECK_TTL_S))
        monitor.watch_lag(runner.group_id, runner.topics)
        log.info("%s: consuming %s", process, ", ".join(runner.topics))
        runner.run(stop)
    return 0
