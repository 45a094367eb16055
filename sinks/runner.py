"""Run the SQL sinks (the `kenshin-hub run sinks` process): migrate, then consume until stopped."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from hub.engine.serve import serve_runner
from hub.settings import Settings
from monitoring.metrics import HubMetrics
from schemas.serde import registry_client
from sinks.base import SinkRunner
from sinks.db import make_engine, upgrade
from sinks.errors import ErrorsSink
from sinks.institutions import InstitutionsSink
from sinks.invitations import InvitationsSink
from sinks.ledger import LedgerSink
from sinks.notices import NoticeDecisionsSink
from sinks.provision_records import ProvisionRecordsSink
from sinks.residents import ResidentsSink
from sinks.staff import StaffActivitySink
from topics.catalog import SINKS_DLQ

log = logging.getLogger("kenshin_hub.sinks")

GROUP_ID = "kenshin-hub-sinks"


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
            NoticeDecisionsSink(),
            InstitutionsSink(),
            ProvisionRecordsSink(settings.tenant),
            StaffActivitySink(runner_metrics),
        ],
        group_id=GROUP_ID,
        registry_client=registry_client(settings.schema_registry_config()),
        dead_letter_topic=SINKS_DLQ,
        engine=engine,
        batch_size=settings.stream_batch_size,
        metrics=runner_metrics,
        heartbeat=heartbeat,
    )


def run_sinks(settings: Settings) -> int:
    return serve_runner(settings, "sinks", lambda metrics, beat: build_runner(settings, metrics, beat))
