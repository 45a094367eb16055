"""The 年度開始 command walks a partition's residents in slices; continuations carry on where a slice ended."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from hub.engine.handler import Delivery, Refusal
from hub.kafka import partition_for
from hub.pii import PiiKeys
from hub.scenario import build
from monitoring.metrics import HubMetrics
from processors import app
from processors.app import Processors
from processors.store import metadata
from schemas import models as m
from schemas.record import now_utc
from topics import catalog

pytestmark = pytest.mark.unit
TENANT, YEAR = "012041", 2025
KEYS = PiiKeys.generate()  # the change logs are stored sealed (hub.pii)


def _invitations(slice_size: int, monkeypatch: pytest.MonkeyPatch) -> tuple[list[m.Invitation], int]:
    """Every notice of one partition's 年度開始, following continuations; and how many commands that took."""
    monkeypatch.setattr(app, "COMMAND_SLICE", slice_size)
    city, _plan = build(3, 400, TENANT, YEAR, 0.0)
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    handler = Processors(HubMetrics(CollectorRegistry(), process="processors"), pii=KEYS)
    topic = catalog.RESIDENT_CHANGES
    changes = [
        Delivery(topic, partition_for(topic.key_of(c).encode(), 6), n, b"", c) for n, c in enumerate(city.initial)
    ]
    with engine.begin() as conn:
        handler.handle(conn, changes)
    pending: list[m.HubCommand] = [
        m.HubCommand(event_id=uuid.uuid4(), occurred_at=now_utc(), tenant=TENANT, source_system="test",
                     command=m.CommandType.FISCAL_YEAR_START, fiscal_year=YEAR, partition=2)
    ]  # fmt: skip
    notices: list[m.Invitation] = []
    commands = 0
    while pending:
        command = pending.pop()
        commands += 1
        with engine.begin() as conn:
            (outcome,) = handler.handle(conn, [Delivery(catalog.HUB_COMMANDS, 0, commands, b"", command)])
        assert not isinstance(outcome, Refusal)
        for out_topic, event in outcome:
            if isinstance(event, m.HubCommand):
                assert out_topic is catalog.HUB_COMMANDS
                pending.append(event)
            else:
                assert isinstance(event, m.Invitation)
                notices.append(event)
    return notices, commands


def test_a_sliced_year_start_gives_exactly_the_notices_of_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    whole, one = _invitations(100_000, monkeypatch)
    sliced, many = _invitations(7, monkeypatch)
    assert one == 1
    assert many > 5
    assert len(whole) > 20
    assert sorted(n.event_id for n in sliced) == sorted(n.event_id for n in whole)
