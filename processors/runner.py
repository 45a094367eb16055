"""Run the processors on the hub's runtime (the `kenshin-hub run processors` process)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from hub.access import load_access
from hub.engine.retry import Backoff, describe_error
from hub.engine.runner import Runner
from hub.engine.serve import serve_runner
from hub.errors import CommandError
from hub.settings import Settings
from monitoring.metrics import HubMetrics
from processors.app import APP_ID, Processors
from processors.store import PROCESSORS_MIGRATIONS, STORE_PREFIX
from schemas.serde import registry_client
from sinks.db import make_engine, upgrade
from topics import catalog

log = logging.getLogger("kenshin_hub.processors")


def processors_engine(settings: Settings) -> Engine:
    """The processors' own store, migrated to head (a file under the state directory unless configured)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.processors_url())
    upgrade(engine, script_location=PROCESSORS_MIGRATIONS)
    return engine


def build(
    settings: Settings,
    metrics: HubMetrics | None = None,
    heartbeat: Callable[[], None] | None = None,
    *,
    group_id: str = APP_ID,
    engine: Engine | None = None,
    **options: object,
) -> Runner:
    """The processors' runner over their store (``engine``, or the configured one)."""
    metrics = metrics if metrics is not None else HubMetrics(CollectorRegistry(), process="processors")
    return Runner(
        settings,
        Processors(metrics),
        group_id=group_id,
        registry_client=registry_client(settings.schema_registry_config()),
        dead_letter_topic=catalog.SINKS_DLQ,
        engine=engine if engine is not None else processors_engine(settings),
        process="processors",
        source_system=APP_ID,
        owns_engine=engine is None,
        close_registry=True,
        batch_size=settings.stream_batch_size,
        store_prefix=STORE_PREFIX,
        metrics=metrics,
        heartbeat=heartbeat,
        **options,  # type: ignore[arg-type]
    )


def cluster_topics(settings: Settings, backoff: Backoff | None = None) -> set[str]:
    """The topics the cluster shows this principal. A broker that does not answer (down, electing, overloaded) is an
    outage, not a reason to exit: asked again with back-off until it answers (CI lost a run of the processors to a
    metadata timeout while a broker of three was down).
    """
    backoff = backoff if backoff is not None else Backoff()
    admin = AdminClient(dict(settings.kafka_config()))
    while True:
        try:
            return set(admin.list_topics(timeout=30).topics)
        except KafkaException as exc:
            delay = backoff.failed()
            log.warning("the cluster's metadata did not come (%s); asking again in %.1fs", describe_error(exc), delay)
            time.sleep(delay)


def run_processors(settings: Settings) -> int:
    # The topics they read and write (topics/access.toml): on a secured cluster they see no others.
    grant = load_access()["processors"]
    topics = cluster_topics(settings)
    missing = [name for name in (*grant.read, *grant.writes()) if name not in topics]
    if missing:
        raise CommandError(f"topics missing on the cluster: {', '.join(missing)} (run `kenshin-hub setup`)")
    return serve_runner(settings, "processors", lambda metrics, beat: build(settings, metrics, beat))
