"""Notices that can be sent (hub/mailing.py): who is mailed, who is held (支援措置), the mailing list, the letters."""

from __future__ import annotations

import csv
import dataclasses
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from pypdf import PdfReader
from sqlalchemy.engine import Engine

from hub.counter import person_view, render
from hub.mailing import (
    CSV_HEADER,
    Batch,
    LettersError,
    font_path,
    letters_pdf,
    load_letters,
    mailing_csv,
    mark_mailed,
    pending,
)
from hub.validation import is_valid_postcode
from processors.rules.eligibility import load_rules
from processors.rules.residents import PersonLog
from schemas import models as m
from sinks.db import make_engine, upgrade
from sinks.invitations import InvitationsSink
from sinks.residents import ResidentsSink
from sinks.tables import mailing_decisions
from tests.unit.test_sinks import KEYS, invitation, resident, write

pytestmark = pytest.mark.unit

TENANT = "012041"
FY = 2026
INV = m.InvitationType.INVITATION


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


ADDRESS = "北海道旭川市6条通9丁目46番地"


def _person(engine: Engine, atena: str, *, postcode: str | None, support: bool = False,
            status: m.ResidentStatus = m.ResidentStatus.RESIDENT, address: str = ADDRESS) -> None:  # fmt: skip
    state = dataclasses.replace(resident(atena, status=status, address=address), support_measure=support,
                                postcode=postcode)  # fmt: skip
    write(engine, ResidentsSink(keys=KEYS), [state])


def _notice(engine: Engine, atena: str, kind: m.ScreeningKind, notice: m.InvitationType = INV) -> None:
    event = dataclasses.replace(invitation(m.InvitationTrigger.FISCAL_YEAR_START), atena_no=atena, kind=kind,
                                invitation_type=notice, fiscal_year=FY)  # fmt: skip
    write(engine, InvitationsSink(), [event])


def _decide(engine: Engine, atena: str, decision: str, address: str | None = None, postcode: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(mailing_decisions.insert().values(
            tenant=TENANT, atena_no=atena, decision=decision, address=address, postcode=postcode, reason="test",
            staff_id="h1", decided_at=datetime(FY, 5, 1, tzinfo=UTC)))  # fmt: skip


def _pending(engine: Engine, notice: m.InvitationType = INV) -> tuple[list[str], dict[str, object]]:
    with engine.connect() as conn:
        letters, held = pending(conn, TENANT, FY, notice)
    return [x.atena_no for x in letters], {h.atena_no: (h.withheld, h.kinds) for h in held} | {
        f"letter:{x.atena_no}": (x.postcode, x.address, x.kinds, x.sent_to) for x in letters
    }


def test_residents_are_mailed_once_in_postcode_order_and_a_support_measure_person_only_by_decision(
    engine: Engine, tmp_path: Path
) -> None:
    _person(engine, "A1", postcode="070-8099")
    _person(engine, "A2", postcode="070-8001")
    _person(engine, "MOVED", postcode="070-8002", status=m.ResidentStatus.MOVED_OUT)
    _person(engine, "DV", postcode="070-8003", support=True)
    for atena in ("A1", "A2", "MOVED", "DV"):
        _notice(engine, atena, m.ScreeningKind.STOMACH)
    _notice(engine, "A1", m.ScreeningKind.COLORECTAL)
    _notice(engine, "A2", m.ScreeningKind.BREAST, m.InvitationType.CARRY_OVER)  # another notice type: not in this run

    order, seen = _pending(engine)
    assert order == ["A2", "A1"]  # by postcode; the one who moved out is not mailed
    assert seen["letter:A1"] == ("070-8099", "北海道旭川市6条通9丁目46番地",
                                 (m.ScreeningKind.STOMACH, m.ScreeningKind.COLORECTAL), "REGISTERED")  # fmt: skip
    assert seen["DV"] == (False, (m.ScreeningKind.STOMACH,))  # held: no decision yet, never the registered address

    _decide(engine, "DV", "WITHHOLD")
    assert _pending(engine)[1]["DV"] == (True, (m.ScreeningKind.STOMACH,))
    _decide_again = sa.update(mailing_decisions).values(decision="OTHER", address="北海道旭川市1条通1丁目1番地",
                                                        postcode="070-0001")  # fmt: skip
    with engine.begin() as conn:
        conn.execute(_decide_again)
    order, seen = _pending(engine)
    assert order == ["DV", "A2", "A1"]
    assert "DV" not in seen
    assert seen["letter:DV"] == ("070-0001", "北海道旭川市1条通1丁目1番地", (m.ScreeningKind.STOMACH,), "DECIDED_OTHER")

    with engine.connect() as conn:
        letters, _ = pending(conn, TENANT, FY, INV)
    batch = Batch("b-1", tuple(letters[:2]), tmp_path / "x.csv", tmp_path / "x.pdf")
    with engine.begin() as conn:
        mark_mailed(conn, TENANT, FY, INV, batch, "h1")
    assert _pending(engine)[0] == ["A1"]  # what a batch mailed is not mailed again
    assert _pending(engine, m.InvitationType.CARRY_OVER)[0] == ["A2"]


def test_the_mailing_list_is_the_zyuki_address_block_with_a_bom(engine: Engine) -> None:
    _person(engine, "A1", postcode="070-8099")
    _person(engine, "NOPC", postcode=None)
    _notice(engine, "A1", m.ScreeningKind.STOMACH)
    _notice(engine, "NOPC", m.ScreeningKind.LUNG)
    with engine.connect() as conn:
        letters, _ = pending(conn, TENANT, FY, INV)
    text = mailing_csv(letters, INV, FY)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert tuple(rows[0]) == CSV_HEADER
    by_atena = {r[4]: r for r in rows[1:]}
    assert by_atena["A1"][:2] == ["070-8099", "北海道旭川市6条通9丁目46番地"]
    assert by_atena["A1"][5:8] == ["受診勧奨", str(FY), "胃がん"]
    assert by_atena["NOPC"][0] == ""  # a postcode the 住基 did not give stays empty, never guessed


def test_the_letters_are_one_page_per_person_with_the_japanese_text_embedded(engine: Engine) -> None:
    font_path()  # the font must be there: .ci/deps installs it (no skip)
    _person(engine, "A1", postcode="070-8099")
    _person(engine, "A2", postcode="070-8001", address="北海道旭川市神楽岡5条3丁目2番1号")
    _notice(engine, "A1", m.ScreeningKind.STOMACH)
    _notice(engine, "A2", m.ScreeningKind.CERVICAL)
    with engine.connect() as conn:
        letters, _ = pending(conn, TENANT, FY, INV)
    pdf = letters_pdf(letters, INV, FY, load_letters(TENANT), date(FY, 4, 10))
    assert letters_pdf(letters, INV, FY, load_letters(TENANT), date(FY, 4, 10)) == pdf  # reproducible bytes
    pages = [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]
    assert len(pages) == 2
    first, second = (p.replace(" ", "").replace("\n", "") for p in pages)
    for text in (
        "〒070-8001",
        "北海道旭川市神楽岡5条3丁目2番1号",
        "子宮頸がん",
        f"{FY}年度がん検診のご案内",
        "旭川市保健所",
    ):
        assert text in first
    for text in ("〒070-8099", "胃がん", "宛名番号A1"):
        assert text in second


def test_the_letters_file_is_validated_on_load() -> None:
    shipped = load_letters(TENANT)
    assert set(shipped.wording) == set(m.InvitationType)
    assert shipped.sender
    good = (Path(__file__).parents[2] / "hub/letters.toml").read_text(encoding="utf-8")
    with pytest.raises(LettersError, match="no sender for municipality 999999"):
        load_letters("999999", good)
    with pytest.raises(LettersError, match="unknown field"):
        load_letters(TENANT, good.replace("対象の検診: {kinds}", "対象の検診: {kind}", 1))
    with pytest.raises(LettersError, match=r"notices\.CARRY_OVER is missing"):
        load_letters(TENANT, good.replace("[notices.CARRY_OVER]", "[notices.INVITATION_OLD]"))
    with pytest.raises(LettersError, match="unknown keys"):
        load_letters(TENANT, good.replace('sender = "旭川市', 'senderr = "x"\nsender = "旭川市', 1))
    with pytest.raises(LettersError, match="contact must be a non-empty string"):
        load_letters(TENANT, good.replace('contact = "電話 0166', 'contact = ""\nx_contact = "電話 0166', 1)
                     .replace("x_contact", "# x_contact"))  # fmt: skip


@pytest.mark.parametrize("value", ["070-8525", "000-0000"])
def test_a_postcode_is_nnn_dash_nnnn(value: str) -> None:
    assert is_valid_postcode(value)


@pytest.mark.parametrize("value", ["0708525", "070-852", "07a-8525", "070−8525", "０７０-８５２５", "070-85255"])
def test_anything_else_is_no_postcode_and_the_model_refuses_it(value: str) -> None:
    assert not is_valid_postcode(value)
    with pytest.raises(m.ModelError, match="postcode"):
        dataclasses.replace(resident("A1"), postcode=value)


def test_the_postcode_goes_with_the_address_it_came_with() -> None:
    base = resident("A1")
    change = m.ResidentChange(
        event_id=base.event_id, occurred_at=base.occurred_at, tenant=base.tenant, source_system="juki",
        atena_no="A1", change_type=m.ResidentChangeType.MOVE_IN, change_date=date(2020, 4, 1), person=base.person,
        postcode="070-8001",
    )  # fmt: skip
    moved = dataclasses.replace(change, change_type=m.ResidentChangeType.MOVE_WITHIN, change_date=date(2021, 4, 1),
                                person=dataclasses.replace(base.person, address="北海道旭川市1条通1丁目1番地"),
                                postcode=None, event_id=uuid.uuid4())  # fmt: skip
    flagged = dataclasses.replace(change, change_type=m.ResidentChangeType.SUPPORT_MEASURE_SET, person=None,
                                  postcode=None, change_date=date(2020, 5, 1), event_id=uuid.uuid4())  # fmt: skip
    assert _fold([change, flagged]).postcode == "070-8001"  # a change without the 基本5情報 keeps it
    assert _fold([change, moved]).postcode is None  # a new address without one: not known, never the old one


def _fold(changes: list[m.ResidentChange]) -> m.ResidentState:
    log = PersonLog(tuple(changes))
    state = log.state()
    assert state is not None
    return state


def test_the_counter_view_shows_the_postcode_and_whether_each_notice_went_out(engine: Engine, tmp_path: Path) -> None:
    _person(engine, "A1", postcode="070-8099")
    _notice(engine, "A1", m.ScreeningKind.STOMACH)
    _notice(engine, "A1", m.ScreeningKind.STOMACH, m.InvitationType.CARRY_OVER)
    with engine.connect() as conn:
        letters, _ = pending(conn, TENANT, FY, INV)
    with engine.begin() as conn:
        mark_mailed(conn, TENANT, FY, INV, Batch("b-1", tuple(letters), tmp_path / "x.csv", tmp_path / "x.pdf"), "h1")
    with engine.connect() as conn:
        text = render(person_view(conn, TENANT, "A1", FY, load_rules()))
    assert f"住所 〒070-8099 {ADDRESS}" in text
    [invitation_line] = [line for line in text.splitlines() if " INVITATION (" in line]
    [carry_over_line] = [line for line in text.splitlines() if " CARRY_OVER (" in line]
    assert "郵送 " in invitation_line
    assert "(REGISTERED)" in invitation_line
    assert carry_over_line.endswith("未郵送")
