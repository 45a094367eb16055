"""Run the processors as a faust worker (the `kenshin-hub run processors` process)."""

from __future__ import annotations

import logging

from confluent_kafka.admin import AdminClient

from hub.errors import CommandError
from hub.settings import Settings
from monitoring.process import monitored
from processors.app import APP_ID, INPUT_TOPICS, Processors
from schemas.serde import registry_client
from topics import catalog

log = logging.getLogger("kenshin_hub.processors")


def run_processors(settings: Settings) -> int:
    from faust.worker import Worker

    metadata = AdminClient(dict(settings.kafka_config())).list_topics(timeout=30)
    missing = [t.name for t in (*catalog.ALL_TOPICS, *catalog.STATE_TOPICS) if t.name not in metadata.topics]
    if missing:
        raise CommandError(f"topics missing on the cluster: {', '.join(missing)} (run `kenshin-hub setup`)")
    brokers = len(metadata.brokers)
    registry = registry_client(settings.schema_registry_config())
    with monitored(settings, "processors") as monitor:
        processors = Processors(
            settings,
            registry,
            replication_factor=min(3, max(brokers, 1)),
            metrics=monitor.metrics,
            heartbeat=monitor.beat,
        )
        monitor.health.ready_when("partitions assigned, no rebalance or recovery under way", processors.ready)
        monitor.watch_lag(APP_ID, [t.name for t in INPUT_TOPICS])
        worker = Worker(processors.app, loglevel=settings.log_level.lower(), quiet=True)
        worker.execute_from_commandline()
    return 0
