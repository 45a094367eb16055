"""Give a long-running process its metrics bundle and HTTP endpoint: one call in its runner.

```python
with monitored(settings, "connector") as monitor:          # /metrics, /health/live, /health/ready
    monitor.health.ready_when("consumer assigned", lambda: bool(consumer.assignment()))
    monitor.watch_lag(GROUP_ID, [REQUESTS.name])             # kenshin_hub_consumer_lag_messages
    while not stop.is_set():
        monitor.beat()                                        # liveness: the loop is not stuck
        ...
        monitor.metrics.message_in(REQUESTS.name, "connector.forward")
```

The port is the process's own setting (``KENSHIN_METRICS_<PROCESS>_PORT``; 0 picks any free port), the address
``KENSHIN_METRICS_HOST``. Liveness is a heartbeat that the process's loop beats; a process that stops beating
for ``stale_after_s`` is reported not live. Readiness is whatever the process registers (none: not ready).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, disable_created_metrics

from hub.errors import CommandError
from hub.settings import ProcessName, Settings, env_name
from monitoring.health import Health, Heartbeat
from monitoring.lag import LAG_INTERVAL_S, LagSampler
from monitoring.metrics import HubMetrics
from monitoring.server import MonitorServer

log = logging.getLogger("kenshin_hub.monitoring")

STALE_AFTER_S = 120.0  # longer than any wait of a healthy loop (the sinks' back-off tops out at 30 s)


@dataclass
class Monitor:
    """What :func:`monitored` hands to a process."""

    process: ProcessName
    metrics: HubMetrics
    health: Health
    heartbeat: Heartbeat
    server: MonitorServer
    client_config: dict[str, str | int | float | bool] = field(repr=False)  # holds secrets: never printed
    samplers: list[LagSampler] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL of the endpoint (``…/metrics``, ``…/health/ready``)."""
        return self.server.url

    def beat(self) -> None:
        """Call from the process's main loop at least every ``stale_after_s``."""
        self.heartbeat.beat()

    def watch_lag(self, group: str, topics: Sequence[str], *, interval_s: float = LAG_INTERVAL_S) -> LagSampler:
        """Sample the consumer lag of ``group`` on ``topics`` every ``interval_s`` until the monitor closes."""
        sampler = LagSampler(self.client_config, group, topics, self.metrics, interval_s=interval_s)
        self.samplers.append(sampler)
        return sampler

    def close(self) -> None:
        for sampler in self.samplers:
            sampler.close()
        self.server.close()


@contextmanager
def monitored(
    settings: Settings,
    process: ProcessName,
    *,
    stale_after_s: float = STALE_AFTER_S,
    registry: CollectorRegistry | None = None,
) -> Iterator[Monitor]:
    """Build ``process``'s metrics bundle and serve it with its health checks until the block ends."""
    # No `*_created` series next to every counter and histogram: they double the series count and nothing reads them
    # (a process-wide switch of prometheus-client, thrown here, in the process's composition, not at import).
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    registry = registry if registry is not None else CollectorRegistry()
    metrics = HubMetrics(registry, process=process)
    health = Health()
    heartbeat = Heartbeat(stale_after_s)
    health.live_when("loop", heartbeat.fresh)
    metrics.bind_health(health.is_live, health.is_ready)
    port = settings.metrics_port(process)
    try:
        server = MonitorServer(registry, health, settings.metrics_host, port)
    except OSError as exc:
        raise CommandError(
            f"cannot serve metrics on {settings.metrics_host}:{port} ({exc.strerror or exc}); "
            f"set {env_name(f'metrics_{process}_port')} (0: any free port) or KENSHIN_METRICS_HOST"
        ) from None
    monitor = Monitor(process, metrics, health, heartbeat, server, dict(settings.kafka_config()))
    log.info("%s: metrics and health on %s (/metrics, /health/live, /health/ready)", process, server.url)
    try:
        yield monitor
    finally:
        monitor.close()
