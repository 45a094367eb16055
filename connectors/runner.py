"""The provision flow's processes: `kenshin-hub run connector | chukan | network`.

Each is a :class:`sinks.base.SinkRunner` over its own database, consuming its service's topics with confluent-kafka:
one transaction per batch, outputs produced and acknowledged before the offsets are committed, dead letters for
input that does not decode or that the service rejects.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import date
from types import FrameType

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.chukan import ChukanServer
from connectors.connector import Connector
from connectors.keys import PermitSigner, PermitVerifier, linkage_key, signing_key, verify_key
from connectors.network import NetworkSimulator
from connectors.policy import default_policies
from connectors.service import Service, service_sinks
from connectors.stores import CHUKAN_MIGRATIONS, NETWORK_MIGRATIONS, chukan_effects, network_effects
from hub.settings import Settings
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


def build(settings: Settings, what: str, group_id: str | None = None) -> SinkRunner:
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
    return SinkRunner(
        settings,
        service_sinks(service, effects),
        group_id=group_id or GROUPS[what],
        registry_client=registry_client(settings.schema_registry_config()),
        dead_letter_topic=SINKS_DLQ,
        engine=engine,
        migrations=migrations,
        batch_size=200,
        batch_timeout_s=0.2,
        close_registry=True,
    )


def run_service(settings: Settings, what: str) -> int:
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with build(settings, what) as runner:
        log.info("%s: consuming %s", what, ", ".join(s.topic.name for s in runner.sinks))
        runner.run(stop)
    return 0
