"""The reports (hub/reports.py): 受診実績表, 地域保健・健康増進事業報告, 支出関連帳票; unit prices as validated data."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy.engine import Engine

from hub.errors import CommandError
from hub.reports import (
    Entry,
    PricesError,
    entries,
    expenses,
    load_prices,
    method_of,
    national,
    performance,
    tables_csv,
    tables_pdf,
    write_report,
)
from processors.rules.eligibility import load_rules
from schemas import models as m
from sinks.db import make_engine, upgrade
from sinks.ledger import LedgerSink
from sinks.residents import ResidentsSink
from sinks.statistics import compute_statistics
from tests.unit.test_sinks import KEYS, ledger, resident, write

pytestmark = pytest.mark.unit

TENANT = "012041"
FY = 2025
PRICES = (Path(__file__).parents[2] / "hub/unit_prices.toml").read_text(encoding="utf-8")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def _entry(kind: m.ScreeningKind, exam: date, *, institution: str = "0110100011", method: str | None = None,
           setting: str = "INDIVIDUAL", required: bool = False, judgement: str | None = None) -> Entry:  # fmt: skip
    method = method or {m.ScreeningKind.STOMACH: "XRAY", m.ScreeningKind.LUNG: "XRAY"}.get(kind) or method_of(kind, {})
    return Entry(institution, f"機関{institution[-2:]}", kind, method, setting, exam, "FEMALE", 50, required, judgement)


def test_the_method_comes_from_the_findings() -> None:
    assert method_of(m.ScreeningKind.STOMACH, {"stomach": {"method": "ENDOSCOPY"}}) == "ENDOSCOPY"
    assert method_of(m.ScreeningKind.LUNG, {"lung": {"xray_result": "B", "sputum_result": None}}) == "XRAY"
    assert method_of(m.ScreeningKind.LUNG, {"lung": {"xray_result": "B", "sputum_result": "A"}}) == "XRAY_SPUTUM"
    assert method_of(m.ScreeningKind.BREAST, {"breast": {}}) == "MAMMOGRAPHY"


def test_the_performance_table_counts_per_institution_kind_and_month_of_the_exam() -> None:
    found = [_entry(m.ScreeningKind.STOMACH, date(FY, 4, 3)), _entry(m.ScreeningKind.STOMACH, date(FY, 4, 30)),
             _entry(m.ScreeningKind.STOMACH, date(FY + 1, 3, 31)), _entry(m.ScreeningKind.BREAST, date(FY, 9, 1)),
             _entry(m.ScreeningKind.BREAST, date(FY, 9, 2), institution="0110100029")]  # fmt: skip
    table = performance(found, FY)
    april, march = table.header.index("4月"), table.header.index("3月")
    stomach = next(r for r in table.rows if r[0] == "0110100011" and r[2] == "胃がん")
    assert (stomach[april], stomach[march], stomach[-1]) == (2, 1, 3)
    assert [r[0] for r in table.rows] == ["0110100011", "0110100011", "0110100029", "計"]
    assert table.rows[-1][-1] == 5
    assert table.rows[-1][table.header.index("9月")] == 2


def test_expenses_price_each_entry_by_the_table_valid_on_its_exam_date() -> None:
    later = (
        PRICES
        + """
[[tables]]
version = "2025-10-01"
valid_from = 2025-10-01
"""
        + PRICES.split("valid_from = 2025-04-01", 1)[1].replace(
            "XRAY = { INDIVIDUAL = 7700", "XRAY = { INDIVIDUAL = 8800"
        )
    )
    tables = load_prices(later)
    found = [_entry(m.ScreeningKind.STOMACH, date(FY, 9, 30)), _entry(m.ScreeningKind.STOMACH, date(FY, 10, 1)),
             _entry(m.ScreeningKind.STOMACH, date(FY, 10, 2), setting="GROUP"),
             _entry(m.ScreeningKind.STOMACH, date(FY, 11, 1), method="ENDOSCOPY")]  # fmt: skip
    table = expenses(found, FY, tables)
    lines = {(r[3], r[4], r[5]): (r[6], r[7], r[8]) for r in table.rows if r[2] == "胃がん"}
    assert lines == {
        ("X線", "個別", "2025-04-01"): (1, 7700, 7700),
        ("X線", "個別", "2025-10-01"): (1, 8800, 8800),
        ("X線", "集団", "2025-10-01"): (1, 5500, 5500),
        ("内視鏡", "個別", "2025-10-01"): (1, 16500, 16500),
    }
    assert table.rows[-1][-1] == 7700 + 8800 + 5500 + 16500
    assert [r for r in table.rows if r[2] == "計"] == [("0110100011", "機関11", "計", "", "", "", "", "", 38500)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("ENDOSCOPY = { INDIVIDUAL = 16500, GROUP = 16500 }\n", ""), "STOMACH must price exactly"),
        (lambda t: t.replace("FOBT = { INDIVIDUAL = 2200, GROUP = 1650 }", "FOBT = { INDIVIDUAL = 2200 }"), "GROUP"),
        (lambda t: t.replace("INDIVIDUAL = 2200", "INDIVIDUAL = 0"), "whole yen above 0"),
        (lambda t: t.replace("INDIVIDUAL = 2200", "INDIVIDUAL = 22.5"), "whole yen above 0"),
        (lambda t: t.replace("INDIVIDUAL = 2200", "INDIVIDUAL = true"), "whole yen above 0"),
        (lambda t: t.replace("[tables.prices.H_PYLORI]", "[tables.prices.PROSTATE]"), "unknown kinds"),
        (lambda t: t.replace("valid_from = 2025-04-01", 'valid_from = "2025-04-01"'), "valid_from must be a date"),
        (lambda t: t + "\n[[tables]]\nversion = \"old\"\nvalid_from = 2024-04-01\n" +
         t.split("valid_from = 2025-04-01", 1)[1].replace("[tables.prices", "[tables.prices"), "valid_from order"),
    ],
)  # fmt: skip
def test_the_unit_prices_are_validated_on_load(change: object, message: str) -> None:
    assert callable(change)
    with pytest.raises(PricesError, match=message):
        load_prices(change(PRICES))


def test_the_shipped_prices_cover_every_kind_method_and_setting() -> None:
    [table] = load_prices()
    assert len(table.prices) == 2 * 8  # 8 kind × method pairs, both settings


def test_the_national_report_counts_targets_and_attendees_on_one_basis(engine: Engine) -> None:
    people = [dataclasses.replace(resident(f"P{n}", birth=date(1975, 4, 2)), support_measure=False) for n in range(4)]
    write(engine, ResidentsSink(keys=KEYS), people)
    negative = ledger("P0", m.ScreeningKind.COLORECTAL, FY, reception_no="R-0")
    assert negative.primary is not None
    screened = [
        dataclasses.replace(negative, primary=dataclasses.replace(negative.primary, follow_up_required=False)),
        ledger("P1", m.ScreeningKind.COLORECTAL, FY, reception_no="R-1"),  # 要精検, no 精検 result yet
        ledger("P2", m.ScreeningKind.COLORECTAL, FY, judgement=m.FollowUpJudgement.CANCER, reception_no="R-2"),
        ledger("P3", m.ScreeningKind.COLORECTAL, FY, history_from="011002", reception_no="R-3"),  # elsewhere
    ]
    write(engine, LedgerSink(), screened)
    with engine.connect() as conn:
        found = entries(conn, TENANT, FY)
        first, second = national(compute_statistics(conn, TENANT, FY, load_rules()), found, FY)
    assert len(found) == 3  # the entry taken over from the previous town is not this city's screening
    [row] = [r for r in first.rows if r[0] == "大腸がん" and r[2] == "50-54"]
    header = first.header
    got = {h: row[header.index(h)] for h in ("対象者", "受診者", "要精検者", "精検受診者", "精検未受診", "未把握")}
    assert got == {"対象者": 4, "受診者": 3, "要精検者": 2, "精検受診者": 1, "精検未受診": 0, "未把握": 1}
    assert sum(int(r[4]) for r in second.rows if r[0] == "大腸がん") == 3


def test_the_files_hold_every_table_with_its_japanese_text(tmp_path: Path) -> None:
    table = performance([_entry(m.ScreeningKind.CERVICAL, date(FY, 5, 1))], FY)
    text = tables_csv([table, table])
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows[0] == [f"{FY}年度 受診実績表"]
    assert rows[1][:3] == ["医療機関コード", "医療機関名", "検診"]
    assert sum(1 for r in rows if r == [f"{FY}年度 受診実績表"]) == 2
    pdf = tables_pdf([table], "旭川市保健所", date(FY, 6, 1))
    [page] = PdfReader(io.BytesIO(pdf)).pages
    flat = page.extract_text().replace(" ", "").replace("\n", "")
    for want in (f"{FY}年度受診実績表", "子宮頸がん", "旭川市保健所"):
        assert want in flat


def test_a_municipality_without_letters_still_gets_its_reports_as_private_new_files(
    engine: Engine, tmp_path: Path
) -> None:
    write(engine, LedgerSink(), [dataclasses.replace(ledger("P0", m.ScreeningKind.BREAST, FY), tenant="011002")])
    digests: dict[str, str] = {}
    with engine.connect() as conn:
        made, paths, counted = write_report(conn, "011002", FY, "expenses", tmp_path, digests)
    assert counted == 1
    assert [p.name for p in paths] == [f"{FY}-expenses.csv", f"{FY}-expenses.pdf"]
    assert set(digests) == {p.name for p in paths}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in paths)
    flat = PdfReader(paths[1]).pages[0].extract_text().replace(" ", "")
    assert "団体コード011002" in flat
    assert made[0].rows[-1][-1] == 8800  # 乳がん, マンモグラフィ, 個別
    with engine.connect() as conn, pytest.raises(CommandError, match="never overwrites"):
        write_report(conn, "011002", FY, "expenses", tmp_path, {})
