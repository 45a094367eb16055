"""The 実施医療機関 registry with dated versions (processors/rules/institutions.py), and the processors applying the
changes staff record (hub.institutions.v1) from their store, so every worker and every later batch sees them."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hub.engine.handler import Delivery
from hub.pii import PiiKeys
from monitoring.metrics import HubMetrics
from processors.app import Processors
from processors.rules.institutions import Institution, load_institutions
from processors.store import PROCESSORS_MIGRATIONS, institution_versions
from schemas import models as m
from sinks.db import make_engine, upgrade
from tests.unit.test_order import CTX, _move_in, _result
from topics import catalog

pytestmark = pytest.mark.unit

A, B = "012041", "011002"
NEW = "0110100110"
SEED = "0110100011"  # 旭川中央健診センター in institutions.toml: every kind, 集団, no 精検
LUNG, COLO = m.ScreeningKind.LUNG, m.ScreeningKind.COLORECTAL


def _v(kinds: set[m.ScreeningKind], start: date, end: date | None = None, follow_up: bool = False) -> Institution:
    return Institution(NEW, "春光台検診クリニック", frozenset(kinds), True, follow_up, start, end)


def test_the_registration_in_force_on_the_exam_date_decides() -> None:
    reg = load_institutions().with_changes({
        (A, NEW): (_v({LUNG, COLO}, date(2025, 6, 1)), _v({COLO}, date(2025, 10, 1), date(2026, 3, 31))),
    })  # fmt: skip
    assert not reg.performs(A, NEW, LUNG, date(2025, 5, 31))  # not yet registered
    assert reg.performs(A, NEW, LUNG, date(2025, 6, 1))
    assert reg.performs(A, NEW, LUNG, date(2025, 9, 30))
    assert not reg.performs(A, NEW, LUNG, date(2025, 10, 1))  # modified: no more 肺がん
    assert reg.performs(A, NEW, COLO, date(2026, 3, 31))
    assert not reg.performs(A, NEW, COLO, date(2026, 4, 1))  # deregistered after valid_to
    assert not reg.performs(B, NEW, COLO, date(2025, 7, 1))  # another municipality's registry is its own
    assert reg.performs(B, SEED, LUNG, date(2025, 7, 1))  # the file's institutions: every municipality, always


def test_a_later_recorded_version_of_the_same_date_wins_and_the_file_can_be_superseded() -> None:
    fixed = _v({COLO}, date(2025, 6, 1), follow_up=True)
    reg = load_institutions().with_changes({
        (A, NEW): (_v({LUNG}, date(2025, 6, 1)), fixed),
        (A, SEED): (dataclasses.replace(load_institutions().by_code[SEED], valid_from=date(2025, 8, 1),
                                        valid_to=date(2025, 8, 31)),),
    })  # fmt: skip
    assert reg.on(A, NEW, date(2025, 7, 1)) == fixed
    assert reg.follows_up(A, NEW, COLO, date(2025, 7, 1))
    assert reg.performs(A, SEED, LUNG, date(2025, 8, 15))
    assert not reg.performs(A, SEED, LUNG, date(2025, 9, 1))  # the file's entry ended by a recorded change
    assert reg.performs(A, SEED, LUNG, date(2025, 7, 31))  # and still in force before it


def _change(start: date, kinds: tuple[m.ScreeningKind, ...], seq: int) -> m.InstitutionChange:
    return m.InstitutionChange(
        event_id=uuid.UUID(int=9000 + seq), occurred_at=datetime(2025, 5, 1, tzinfo=UTC), tenant=A,
        source_system="kenshin-hub.staff", code=NEW, name="春光台検診クリニック", kinds=kinds, group=True,
        follow_up=False, valid_from=start, staff_id="h001", reason="新規委託契約",
    )  # fmt: skip


def test_the_processors_keep_each_change_once_and_every_worker_checks_results_against_them(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'processors.db'}")
    upgrade(engine, script_location=PROCESSORS_MIGRATIONS)
    metrics = HubMetrics(CollectorRegistry(), process="processors", runtime=False)
    keys = PiiKeys.generate()
    one, other = Processors(metrics, CTX, pii=keys), Processors(metrics, CTX, pii=keys)  # two workers, one store
    change = _change(date(2025, 6, 1), (COLO,), 1)
    offset = 0

    def feed(handler: Processors, *events: m.Event) -> list[object]:
        nonlocal offset
        deliveries = []
        for event in events:
            topic = {m.ResidentChange: catalog.RESIDENT_CHANGES, m.ScreeningResult: catalog.INSTITUTION_RESULTS,
                     m.InstitutionChange: catalog.INSTITUTION_CHANGES}[type(event)]  # fmt: skip
            deliveries.append(Delivery(topic, 0, offset, topic.key_of(event).encode(), event))
            offset += 1
        with engine.begin() as conn:
            return list(handler.handle(conn, deliveries))

    before = _result(1, "R1", date(2025, 6, 10), institution_code=NEW, institution_name="春光台検診クリニック")
    feed(one, _move_in())
    assert not any(isinstance(e, m.LedgerEntry) for _, e in feed(one, before)[0])  # type: ignore[union-attr]
    feed(one, change, change)  # redelivered: kept once
    with engine.connect() as conn:
        assert len(conn.execute(institution_versions.select()).all()) == 1
    after = _result(2, "R2", date(2025, 6, 10), institution_code=NEW, institution_name="春光台検診クリニック")
    [produced] = feed(other, after)  # the other worker never saw the change: it reads it from the store
    assert any(isinstance(e, m.LedgerEntry) for _, e in produced)  # type: ignore[union-attr]
    engine.dispose()
