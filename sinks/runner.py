"""Run the SQL sinks (the `kenshin-hub run sinks` process): migrate, then consume until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from hub.settings import Settings
from schemas.serde import registry_client
from sinks.base import SinkRunner
from sinks.db import make_engine, upgrade
from sinks.errors import ErrorsSink
from sinks.invitations import InvitationsSink
from sinks.ledger import LedgerSink
from sinks.provision_records import ProvisionRecordsSink
from sinks.residents import ResidentsSink
from topics.catalog import SINKS_DLQ

log = logging.getLogger("kenshin_hub.sinks")

GROUP_ID = "kenshin-hub-sinks"


def build_runner(settings: Settings) -> SinkRunner:
    engine = make_engine(settings.database_url.reveal())
    upgrade(engine)
    return SinkRunner(
        settings,
        [ResidentsSink(), LedgerSink(), ErrorsSink(), InvitationsSink(), ProvisionRecordsSink()],
        group_id=GROUP_ID,
        registry_client=registry_client(settings.schema_registry_config()),
        dead_letter_topic=SINKS_DLQ,
        engine=engine,
    )


def run_sinks(settings: Settings) -> int:
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with build_runner(settings) as runner:
        log.info("sinks: writing %s to the database", ", ".join(s.topic.name for s in runner.sinks))
        runner.run(stop)
    return 0
