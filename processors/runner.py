"""Run the processors as a faust worker (the `kenshin-hub run processors` process)."""

from __future__ import annotations

import logging

from confluent_kafka.admin import AdminClient

from hub.settings import Settings
from processors.app import Processors
from schemas.serde import registry_client

log = logging.getLogger("kenshin_hub.processors")


def run_processors(settings: Settings) -> int:
    from faust.worker import Worker

    brokers = len(AdminClient(dict(settings.kafka_config())).list_topics(timeout=30).brokers)
    registry = registry_client(settings.schema_registry_config())
    processors = Processors(settings, registry, replication_factor=min(3, max(brokers, 1)))
    worker = Worker(processors.app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
    return 0
