"""The counter view (hub/counter.py): one resident's eligibility, 台帳 with versions, history, errors and notices."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.counter import find, person_view, render
from processors.rules.eligibility import load_rules
from schemas import models as m
from sinks.db import make_engine, upgrade
from sinks.errors import ErrorsSink
from sinks.invitations import InvitationsSink
from sinks.ledger import LedgerSink
from sinks.residents import ResidentsSink
from sinks.tables import ledger_history
from tests.unit.test_sinks import KEYS, error, invitation, ledger, resident, write

pytestmark = pytest.mark.unit

TENANT = "012041"
FY = 2026
PERSON = "0000123456"  # the builders' person


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def _history(engine: Engine, kind: m.ScreeningKind, fiscal_year: int, origin: str = "011002") -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(ledger_history).values(
                tenant=TENANT, atena_no=PERSON, from_tenant=origin, record_id=f"H-{kind}-{fiscal_year}", version=1,
                kind=kind.value, fiscal_year=fiscal_year, items={"K001": kind.value}, request_id=str(uuid.uuid4()),
                received_at=datetime(FY, 4, 20, tzinfo=UTC),
            )
        )  # fmt: skip


def _view(engine: Engine, atena_no: str = PERSON) -> tuple[dict[m.ScreeningKind, str], str]:
    with engine.connect() as conn:
        view = person_view(conn, TENANT, atena_no, FY, load_rules())
    verdicts = {
        e.kind: ("対象" + (f": {e.reason}" if e.reason else "")) if e.eligible else e.reason for e in view.eligibility
    }
    return verdicts, render(view)


def test_a_45_year_old_woman_is_a_gastric_target_and_history_from_her_last_town_counts(engine: Engine) -> None:
    write(engine, ResidentsSink(keys=KEYS), [resident(PERSON, birth=date(1981, 6, 1))])  # 45 at the end of FY2026
    write(engine, LedgerSink(), [ledger(PERSON, m.ScreeningKind.COLORECTAL, FY, 1, birth=date(1981, 6, 1))])
    _history(engine, m.ScreeningKind.BREAST, FY - 1)  # screened last year in the town she came from
    verdict, text = _view(engine)
    assert verdict[m.ScreeningKind.STOMACH] == "対象"
    assert verdict[m.ScreeningKind.LUNG] == "対象"
    assert verdict[m.ScreeningKind.COLORECTAL] == "今年度受診済み"
    assert verdict[m.ScreeningKind.BREAST] == f"{FY - 1}年度に受診 (転入前 011002) (2年に1回)"
    assert verdict[m.ScreeningKind.CERVICAL] == "対象"  # biennial, not screened last year
    assert "年齢" in verdict[m.ScreeningKind.H_PYLORI]
    assert "大腸がん" in text
    assert "from 011002" in text
    assert "支援措置" not in text


def test_sex_age_and_residence_are_reasons_and_a_support_measure_is_a_warning(engine: Engine) -> None:
    man = dataclasses.replace(resident("0000000001", sex=m.Sex.MALE, birth=date(1990, 1, 1)), support_measure=True)
    gone = resident("0000000002", status=m.ResidentStatus.MOVED_OUT, ceased=date(2026, 5, 1), version=2)
    write(engine, ResidentsSink(keys=KEYS), [man, gone])
    verdict, text = _view(engine, "0000000001")
    assert verdict[m.ScreeningKind.BREAST] == "性別 (女性のみ); 年齢 (年度末 37歳; 40歳以上)"
    assert verdict[m.ScreeningKind.STOMACH] == "年齢 (年度末 37歳; 40歳以上)"
    assert "支援措置対象" in text
    verdict, _ = _view(engine, "0000000002")
    assert all(v.startswith("住民でない (MOVED_OUT, 2026-05-01)") for v in verdict.values())
    with engine.connect() as conn, pytest.raises(Exception, match="no resident"):
        person_view(conn, TENANT, "0000000003", FY, load_rules())


def test_the_ledger_shows_every_version_and_a_withdrawn_entry_stays_in_the_record(engine: Engine) -> None:
    write(engine, ResidentsSink(keys=KEYS), [resident(PERSON)])
    v1 = ledger(PERSON, m.ScreeningKind.STOMACH, FY - 1, 1)
    v2 = ledger(PERSON, m.ScreeningKind.STOMACH, FY - 1, 2, judgement=m.FollowUpJudgement.NO_ABNORMALITY)
    lung = ledger(PERSON, m.ScreeningKind.LUNG, FY - 1, 1)
    write(engine, LedgerSink(), [v1, v2, lung])
    write(engine, LedgerSink(), [dataclasses.replace(ledger(PERSON, m.ScreeningKind.LUNG, FY - 1, 2), withdrawn=True)])
    write(engine, ErrorsSink(), [dataclasses.replace(error(m.ErrorStatus.OPEN, datetime(FY, 5, 1, tzinfo=UTC)),
                                                     atena_no=PERSON)])  # fmt: skip
    write(engine, InvitationsSink(), [invitation(m.InvitationTrigger.FISCAL_YEAR_START)])
    verdict, text = _view(engine)
    lines = text.splitlines()
    stomach = next(i for i, line in enumerate(lines) if f"{FY - 1} 胃がん" in line)
    assert " v2 " in lines[stomach]
    assert "精検 NO_ABNORMALITY" in lines[stomach]
    assert lines[stomach + 1].lstrip().startswith("v1 ")
    assert lines[stomach + 2].lstrip().startswith("v2 ")
    lung_line = next(i for i, line in enumerate(lines) if f"{FY - 1} 肺がん" in line)
    assert lines[lung_line].endswith("取消")
    assert lines[lung_line + 2].endswith("取消")  # its second version is the withdrawal
    assert verdict[m.ScreeningKind.STOMACH] == f"対象: XRAY のみ ({FY - 1}年度に受診 (2年に1回))"  # X-ray: yearly
    assert verdict[m.ScreeningKind.LUNG] == "対象"  # the withdrawn screening does not count
    assert re.search(r"R-9 +肺がん +PRIMARY KANA_MISMATCH,BIRTH_DATE_MISMATCH", text)
    assert f"{FY} 乳がん" in text
    assert "INVITATION (FISCAL_YEAR_START" in text


def test_find_by_kana_and_birth_date_within_the_tenant(engine: Engine) -> None:
    write(engine, ResidentsSink(keys=KEYS), [resident(PERSON), resident("0000000009", birth=date(1950, 1, 1))])
    person = resident(PERSON).person
    with engine.connect() as conn:
        found = find(conn, TENANT, name=None, kana=person.name_kana[:2], birth=person.birth_date)
        assert [p["atena_no"] for p in found] == [PERSON]
        assert find(conn, "011002", name=person.name, kana=None, birth=None) == []  # another tenant's residents
        assert find(conn, TENANT, name="%", kana=None, birth=None) == []  # a wildcard is a character
