"""The provision flow's processes: `kenshin-hub run connector | chukan | network`.

Each is a :class:`sinks.base.SinkRunner` over its own database, consuming its service's topics with confluent-kafka:
one transaction per batch, outputs produced and acknowledged before the offsets are committed, dead letters for
input that does not decode or that the service rejects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from typing import cast

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from connectors.chukan import ChukanServer
from connectors.connector import Connector
from connectors.keys import PermitSigner, PermitVerifier, linkage_key, signing_key, verify_key
from connectors.network import NetworkSimulator
from connectors.observe import observe, refresh_held
from connectors.policy import default_policies
from connectors.service import Output, Service, service_sinks
from connectors.stores import CHUKAN_MIGRATIONS, NETWORK_MIGRATIONS, chukan_effects, network_effects
from hub.engine.serve import serve_runner
from hub.settings import ProcessName, Settings
from monitoring.metrics import HubMetrics
from schemas.models import HeldProvision
from schemas.serde import registry_client
from sinks.base import SinkRunner
from sinks.db import SINKS_MIGRATIONS, make_engine, upgrade
from sinks.tables import service_effects
from topics.catalog import SINKS_DLQ

log = logging.getLogger("kenshin_hub.connectors")

GROUPS = {"connector": "kenshin-hub-connector", "chukan": "kenshin-hub-chukan", "network": "kenshin-hub-network"}


def chukan_engine(settings: Settings) -> Engine:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.chukan_url())
    upgrade(engine, script_location=CHUKAN_MIGRATIONS)
    return engine


def network_engine(settings: Settings) -> Engine:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.network_url())
    upgrade(engine, script_location=NETWORK_MIGRATIONS)
    return engine


def hub_engine(settings: Settings) -> Engine:
    engine = make_engine(settings.database_url.reveal())
    upgrade(engine)
    return engine


def chukan_server(settings: Settings) -> ChukanServer:
    return ChukanServer(default_policies(), PermitVerifier(verify_key(settings.state_dir)))


def build(
    settings: Settings,
    what: str,
    group_id: str | None = None,
    metrics: HubMetrics | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> SinkRunner:
    """The runner of one provision-flow process (``connector``, ``chukan`` or ``network``)."""
    service: Service
    effects: sa.Table
    if what == "connector":
        engine, migrations, effects = hub_engine(settings), SINKS_MIGRATIONS, service_effects
        since = settings.connector_move_in_since
        service = Connector(
            settings.tenant,
            linkage_key(settings.state_dir),
            offline=settings.connector_mode == "offline",
            move_in_since=date.fromisoformat(since) if since else None,
        )
    elif what == "chukan":
        engine, migrations, effects = chukan_engine(settings), CHUKAN_MIGRATIONS, chukan_effects
        service = chukan_server(settings)
    elif what == "network":
        engine, migrations, effects = network_engine(settings), NETWORK_MIGRATIONS, network_effects
        service = NetworkSimulator(default_policies(), PermitSigner(signing_key(settings.state_dir)))
    else:
        raise ValueError(what)
    metrics = metrics if metrics is not None else HubMetrics(CollectorRegistry(), process=cast(ProcessName, what))
    bundle = metrics

    def observer(outputs: list[Output]) -> None:
        observe(bundle, outputs)
        if what == "chukan" and any(isinstance(e, HeldProvision) for _, e in outputs):
            refresh_held(bundle, engine)

    if what == "chukan":
        refresh_held(bundle, engine)  # at start-up, after new holds, and every HELD_REFRESH_S (and after decisions)
        heartbeat = _with_held_refresh(heartbeat, bundle, engine)
    return SinkRunner(
        settings,
        service_sinks(service, effects, observer),
        group_id=group_id or GROUPS[what],
        registry_client=registry_client(settings.schema_registry_config()),
        dead_letter_topic=SINKS_DLQ,
        engine=engine,
        migrations=migrations,
        batch_size=200,
        batch_timeout_s=0.2,
        close_registry=True,
        metrics=metrics,
        heartbeat=heartbeat,
        process=cast(ProcessName, what),
    )


HELD_REFRESH_S = 10.0


def _with_held_refresh(beat: Callable[[], None] | None, metrics: HubMetrics, engine: Engine) -> Callable[[], None]:
    """The liveness beat, plus the held-provisions gauges refreshed now and then (retention deletes decided holds)."""
    last = [time.monotonic()]

    def turn() -> None:
        if beat is not None:
            beat()
        if time.monotonic() - last[0] >= HELD_REFRESH_S:
            last[0] = time.monotonic()
            try:
                refresh_held(metrics, engine)
            except sa.exc.SQLAlchemyError:
                log.warning("chukan: the held provisions could not be counted for the metrics")

    return turn


def run_service(settings: Settings, what: ProcessName) -> int:
    return serve_runner(settings, what, lambda metrics, beat: build(settings, what, metrics=metrics, heartbeat=beat))
