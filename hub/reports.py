"""The health staff's reports (I.2 ② (6)(7)(8)), each as CSV and as a printable PDF, from the CLI (health role).

* ``report performance --year Y --out DIR``: 受診実績表, the screenings of the fiscal year per 実施医療機関 × kind ×
  month of the exam (4月 … 3月), with totals.
* ``report national --year Y --out DIR``: 地域保健・健康増進事業報告 (がん検診): per kind, sex and age band, 対象者,
  受診者, 要精検者, 精検受診者, 精検未受診, 未把握 and がんであった者; then the 受診者 by 個別/集団 and method; and a
  plot (PNG, also in the PDF) of 受診率 by age band for every fiscal year the 台帳 holds.
* ``report expenses --year Y --out DIR``: 支出関連帳票, the amount due to each institution: the count of each kind,
  method and setting at the unit price of ``unit_prices.toml`` valid on the exam date, and each institution's total.

Counted on one basis (:mod:`sinks.statistics`): this city's own screenings (``ledger_entries`` without
``history_from``); targets by the eligibility rules, sex and age at the end of the fiscal year. The hub receives no
report that a person declined a 精検, so 精検未受診 is always 0 and every 要精検 without a 精検 result is 未把握; the
reports say so. Each report is a recorded operation (``DATA_EXPORT report <name> <year>`` with the files' SHA-256);
the files are new and 0600, never overwriting one.
"""

from __future__ import annotations

import argparse
import csv
import io
import tomllib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.audit import digests_detail, write_private
from hub.counter import KIND_LABEL, SEX_LABEL
from hub.errors import CommandError
from hub.mailing import FONT_NAME, font_path, pdf_font
from hub.office import office
from hub.settings import Settings
from processors.rules.eligibility import EligibilityRules, load_rules
from schemas.models import ExamSetting, FollowUpJudgement, ScreeningKind, StaffOperationType
from sinks.statistics import StatisticsRow, compute_statistics
from sinks.tables import ledger_entries

MONTHS = (4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3)
SETTING_LABEL = {ExamSetting.INDIVIDUAL.value: "個別", ExamSetting.GROUP.value: "集団"}
METHOD_LABEL = {
    "XRAY": "X線", "ENDOSCOPY": "内視鏡", "FOBT": "便潜血", "XRAY_SPUTUM": "X線+喀痰", "MAMMOGRAPHY": "マンモグラフィ",
    "CYTOLOGY": "細胞診", "ANTIBODY": "抗体検査",
}  # fmt: skip
NO_DECLINE_NOTE = (
    "精検未受診: the hub receives no report of a declined 精検, so 0; every 要精検 without a 精検 result is 未把握"
)


class PricesError(ValueError):
    """unit_prices.toml is not valid."""


# --- the entries ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    institution_code: str
    institution_name: str
    kind: ScreeningKind
    method: str
    setting: str
    exam_date: date
    sex: str
    exam_age: int
    follow_up_required: bool
    judgement: str | None


def method_of(kind: ScreeningKind, findings: Mapping[str, Any]) -> str:
    """The method of a 1次 as the reports and prices name it, from its findings (``primary_findings``)."""
    if kind is ScreeningKind.STOMACH:
        return str((findings.get("stomach") or {}).get("method") or "XRAY")
    if kind is ScreeningKind.LUNG:
        return "XRAY_SPUTUM" if (findings.get("lung") or {}).get("sputum_result") else "XRAY"
    return {ScreeningKind.COLORECTAL: "FOBT", ScreeningKind.BREAST: "MAMMOGRAPHY", ScreeningKind.CERVICAL: "CYTOLOGY",
            ScreeningKind.H_PYLORI: "ANTIBODY"}[kind]  # fmt: skip


def entries(conn: Connection, tenant: str, year: int) -> list[Entry]:
    """This city's 台帳 entries of ``year`` (not those taken over from a previous municipality)."""
    le = ledger_entries
    query = (
        sa.select(
            le.c.institution_code,
            le.c.institution_name,
            le.c.kind,
            le.c.primary_findings,
            le.c.setting,
            le.c.exam_date,
            le.c.sex,
            le.c.exam_age,
            le.c.follow_up_required,
            le.c.followup_judgement,
        )
        .where(le.c.tenant == tenant, le.c.fiscal_year == year, le.c.history_from.is_(None))
        .order_by(le.c.institution_code, le.c.kind, le.c.exam_date)
    )
    out = []
    for code, name, kind, findings, setting, exam, sex, age, required, judgement in conn.execute(query):
        k = ScreeningKind(kind)
        out.append(Entry(code, name, k, method_of(k, findings or {}), setting, exam, sex, age, required, judgement))
    return out


# --- the three reports ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[object, ...]]
    notes: tuple[str, ...] = ()


def performance(found: Sequence[Entry], year: int) -> Table:
    """受診実績表: institution × kind × month of the exam, with a total per row and a total row."""
    cells: dict[tuple[str, str, ScreeningKind], Counter[int]] = defaultdict(Counter)
    for e in found:
        cells[(e.institution_code, e.institution_name, e.kind)][e.exam_date.month] += 1
    order = list(ScreeningKind)
    rows: list[tuple[object, ...]] = []
    totals: Counter[int] = Counter()
    for (code, name, kind), months in sorted(cells.items(), key=lambda x: (x[0][0], order.index(x[0][2]))):
        rows.append((code, name, KIND_LABEL[kind], *(months[m] for m in MONTHS), sum(months.values())))
        totals.update(months)
    rows.append(("計", "", "", *(totals[m] for m in MONTHS), sum(totals.values())))
    header = ("医療機関コード", "医療機関名", "検診", *(f"{m}月" for m in MONTHS), "計")
    return Table(f"{year}年度 受診実績表", header, rows, ("this city's screenings, by month of the exam",))


def national(stats: Sequence[StatisticsRow], found: Sequence[Entry], year: int) -> list[Table]:
    """地域保健・健康増進事業報告 (がん検診) from the year's statistics (:func:`sinks.statistics.compute_statistics`):
    by kind, sex and age band; then the 受診者 by setting and method, from the year's entries.
    """
    rows: list[tuple[object, ...]] = []
    for s in stats:
        if not (s.targets or s.attendees):
            continue
        unknown = s.follow_up_required - s.follow_up_attended
        rate = f"{100 * s.attendees / s.targets:.1f}" if s.targets else "-"
        rows.append((KIND_LABEL[s.kind], SEX_LABEL[s.sex.value], s.age_band, s.targets, s.attendees, rate,
                     s.follow_up_required, s.follow_up_attended, 0, unknown, s.cancer_found))  # fmt: skip
    first = Table(
        f"{year}年度 地域保健・健康増進事業報告 がん検診",
        ("検診", "性別", "年齢", "対象者", "受診者", "受診率(%)", "要精検者", "精検受診者", "精検未受診", "未把握",
         "がんであった者"),
        rows, ("age: at the end of the fiscal year (年度末年齢); 受診者: this city's screenings", NO_DECLINE_NOTE),
    )  # fmt: skip
    split: dict[tuple[ScreeningKind, str, str, str], Counter[str]] = defaultdict(Counter)
    for e in found:
        c = split[(e.kind, e.method, e.setting, e.sex)]
        c["attendees"] += 1
        c["required"] += int(e.follow_up_required)
        c["attended"] += int(e.judgement is not None and e.follow_up_required)
        c["cancer"] += int(e.judgement == FollowUpJudgement.CANCER.value)
    order = list(ScreeningKind)
    second = Table(
        f"{year}年度 受診者 個別・集団, 検診方法別",
        ("検診", "方法", "個別/集団", "性別", "受診者", "要精検者", "精検受診者", "がんであった者"),
        [(KIND_LABEL[k], METHOD_LABEL.get(method, method), SETTING_LABEL.get(setting, setting), SEX_LABEL[sex],
          c["attendees"], c["required"], c["attended"], c["cancer"])
         for (k, method, setting, sex), c in sorted(split.items(), key=lambda x: (order.index(x[0][0]), x[0][1:]))],
    )  # fmt: skip
    return [first, second]


@dataclass(frozen=True)
class PriceTable:
    version: str
    valid_from: date
    prices: Mapping[tuple[ScreeningKind, str, str], int]


METHODS: dict[ScreeningKind, tuple[str, ...]] = {
    ScreeningKind.STOMACH: ("XRAY", "ENDOSCOPY"), ScreeningKind.COLORECTAL: ("FOBT",),
    ScreeningKind.LUNG: ("XRAY", "XRAY_SPUTUM"), ScreeningKind.BREAST: ("MAMMOGRAPHY",),
    ScreeningKind.CERVICAL: ("CYTOLOGY",), ScreeningKind.H_PYLORI: ("ANTIBODY",),
}  # fmt: skip


def load_prices(text: str | None = None) -> list[PriceTable]:
    """The unit-price tables of ``unit_prices.toml`` (or ``text``), oldest first; :class:`PricesError` if invalid."""
    if text is None:
        text = resources.files("hub").joinpath("unit_prices.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PricesError(f"unit_prices.toml: {exc}") from None
    tables: list[PriceTable] = []
    for i, raw in enumerate(data.get("tables", [])):
        where = f"unit_prices.toml tables[{i}]"
        version, valid_from, prices = raw.get("version"), raw.get("valid_from"), raw.get("prices")
        if not isinstance(version, str) or not version:
            raise PricesError(f"{where}: version must be a non-empty string")
        if not isinstance(valid_from, date):
            raise PricesError(f"{where}: valid_from must be a date (YYYY-MM-DD)")
        if not isinstance(prices, dict):
            raise PricesError(f"{where}: prices are missing")
        unknown = set(prices) - {k.value for k in ScreeningKind}
        if unknown:
            raise PricesError(f"{where}: unknown kinds {sorted(unknown)}")
        table: dict[tuple[ScreeningKind, str, str], int] = {}
        for kind, methods in METHODS.items():
            given = prices.get(kind.value, {})
            if set(given) != set(methods):
                raise PricesError(f"{where}: {kind.value} must price exactly {list(methods)}, not {sorted(given)}")
            for method in methods:
                for setting in ExamSetting:
                    price = given[method].get(setting.value)
                    if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
                        raise PricesError(f"{where}: {kind.value}.{method}.{setting.value} must be whole yen above 0")
                    table[(kind, method, setting.value)] = price
                if set(given[method]) - {s.value for s in ExamSetting}:
                    raise PricesError(f"{where}: {kind.value}.{method} has unknown settings")
        tables.append(PriceTable(version, valid_from, table))
    if not tables:
        raise PricesError("unit_prices.toml: no tables")
    if [t.valid_from for t in tables] != sorted({t.valid_from for t in tables}):
        raise PricesError("unit_prices.toml: tables must be in valid_from order, one per date")
    return tables


def price_on(tables: Sequence[PriceTable], day: date) -> PriceTable:
    valid = [t for t in tables if t.valid_from <= day]
    if not valid:
        raise CommandError(f"unit_prices.toml has no table valid on {day} (the first starts {tables[0].valid_from})")
    return valid[-1]


def expenses(found: Sequence[Entry], year: int, tables: Sequence[PriceTable]) -> Table:
    """支出関連帳票: per institution, kind, method, setting and price table: the count, unit price and amount."""
    counts: Counter[tuple[str, str, ScreeningKind, str, str, str, int]] = Counter()
    for e in found:
        table = price_on(tables, e.exam_date)
        price = table.prices[(e.kind, e.method, e.setting)]
        counts[(e.institution_code, e.institution_name, e.kind, e.method, e.setting, table.version, price)] += 1
    order = list(ScreeningKind)
    rows: list[tuple[object, ...]] = []
    by_institution: Counter[tuple[str, str]] = Counter()
    for (code, name, kind, method, setting, version, price), n in sorted(
        counts.items(), key=lambda x: (x[0][0], order.index(x[0][2]), x[0][3:])
    ):
        labels = (KIND_LABEL[kind], METHOD_LABEL.get(method, method), SETTING_LABEL.get(setting, setting))
        rows.append((code, name, *labels, version, n, price, n * price))
        by_institution[(code, name)] += n * price
    for (code, name), amount in sorted(by_institution.items()):
        rows.append((code, name, "計", "", "", "", "", "", amount))
    rows.append(("総計", "", "", "", "", "", sum(counts.values()), "", sum(by_institution.values())))
    return Table(
        f"{year}年度 支出関連帳票 (委託料)",
        ("医療機関コード", "医療機関名", "検診", "方法", "個別/集団", "単価表", "件数", "単価(円)", "金額(円)"),
        rows, ("unit prices: unit_prices.toml, the table valid on each exam date",),
    )  # fmt: skip


# --- the plot and the files -------------------------------------------------------------------------------------


def attendance_plot(
    conn: Connection, tenant: str, rules: EligibilityRules, known: Mapping[int, list[StatisticsRow]]
) -> bytes:
    """受診率 by age band, one line per fiscal year the 台帳 holds, one panel per kind (PNG); the statistics of the
    years in ``known`` are not computed again.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    font_manager.fontManager.addfont(str(font_path()))
    matplotlib.rcParams["font.family"] = font_manager.FontProperties(fname=str(font_path())).get_name()
    le = ledger_entries
    years = sorted(int(y) for (y,) in conn.execute(
        sa.select(le.c.fiscal_year).where(le.c.tenant == tenant, le.c.history_from.is_(None)).distinct()))  # fmt: skip
    kinds = list(ScreeningKind)
    figure, axes = plt.subplots(2, 3, figsize=(11.7, 7.0), constrained_layout=True)
    by_year = {y: known[y] if y in known else compute_statistics(conn, tenant, y, rules) for y in years}
    for axis, kind in zip(axes.flat, kinds, strict=True):
        for year in years:
            cells: dict[str, list[int]] = {}
            for s in by_year[year]:
                if s.kind is kind:  # both sexes together
                    cell = cells.setdefault(s.age_band, [0, 0])
                    cell[0] += s.targets
                    cell[1] += s.attendees
            bands = [b for b, (targets, _) in cells.items() if targets]
            axis.plot(bands, [100 * cells[b][1] / cells[b][0] for b in bands], marker="o", label=f"{year}年度")
        axis.set_title(KIND_LABEL[kind])
        axis.set_ylabel("受診率 (%)")
        axis.tick_params(axis="x", labelrotation=60, labelsize=7)
        if years:
            axis.legend(fontsize=7)
    figure.suptitle("受診率 (年齢階級別・年度別; this city's screenings)")
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=110)
    plt.close(figure)
    return out.getvalue()


def tables_csv(tables: Sequence[Table]) -> str:
    """The tables one after another (a title line, the header, the rows, the notes), with a BOM."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for n, table in enumerate(tables):
        if n:
            writer.writerow([])
        writer.writerow([table.title])
        writer.writerow(table.header)
        writer.writerows(table.rows)
        for note in table.notes:
            writer.writerow([f"注: {note}"])
    return "\ufeff" + out.getvalue()


def tables_pdf(tables: Sequence[Table], sender: str, on: date, png: bytes | None = None) -> bytes:
    """The tables on landscape A4 pages (the header repeated on each page), then the plot when given."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, PageBreak, Paragraph, SimpleDocTemplate, Spacer, TableStyle
    from reportlab.platypus import Table as PdfTable

    pdf_font()
    title = ParagraphStyle("title", fontName=FONT_NAME, fontSize=14, leading=18)
    small = ParagraphStyle("small", fontName=FONT_NAME, fontSize=8, leading=11)
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=landscape(A4), leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm,
                            bottomMargin=12 * mm, title=tables[0].title, author=sender, invariant=True)  # fmt: skip
    story: list[Any] = []
    for n, table in enumerate(tables):
        if n:
            story.append(PageBreak())
        story += [Paragraph(table.title, title), Paragraph(f"{sender} {on.isoformat()} 作成", small), Spacer(1, 4 * mm)]
        grid = PdfTable([list(table.header), *[[str(c) for c in row] for row in table.rows]], repeatRows=1)
        grid.setStyle(TableStyle([
            ("FONT", (0, 0), (-1, -1), FONT_NAME, 7), ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke), ("ALIGN", (3, 1), (-1, -1), "RIGHT"),
        ]))  # fmt: skip
        story.append(grid)
        story += [Paragraph(f"注: {note}", small) for note in table.notes]
    if png is not None:
        story += [PageBreak(), Image(io.BytesIO(png), width=260 * mm, height=155 * mm)]
    doc.build(story)
    return out.getvalue()


REPORTS = ("performance", "national", "expenses")


def build(conn: Connection, tenant: str, year: int, name: str, rules: EligibilityRules,
          prices: Sequence[PriceTable]) -> tuple[list[Table], bytes | None, int]:  # fmt: skip
    """The tables of report ``name``, its plot (national only) and the number of 台帳 entries it counted."""
    found = entries(conn, tenant, year)
    if name == "performance":
        return [performance(found, year)], None, len(found)
    if name == "national":
        stats = compute_statistics(conn, tenant, year, rules)
        plot = attendance_plot(conn, tenant, rules, {year: stats})
        return national(stats, found, year), plot, len(found)
    return [expenses(found, year, prices)], None, len(found)


def write_report(conn: Connection, tenant: str, year: int, name: str, out: Path,
                 digests: dict[str, str]) -> tuple[list[Table], list[Path], int]:  # fmt: skip
    """Report ``name`` as new 0600 files in ``out`` (CSV, PDF, and the PNG plot of the national one); each file's
    SHA-256 into ``digests`` once written. :class:`CommandError` when the data files or the font are not right.
    """
    from hub.mailing import LettersError, load_letters

    try:
        prices = load_prices() if name == "expenses" else []
    except PricesError as exc:
        raise CommandError(str(exc)) from None
    try:
        sender = load_letters(tenant).sender
    except LettersError:
        sender = f"団体コード {tenant}"  # a municipality without letters still gets its reports
    font_path()
    made, png, counted = build(conn, tenant, year, name, load_rules(), prices)
    stem = out / f"{year}-{name}"
    files: list[tuple[Path, str | bytes]] = [
        (stem.with_suffix(".csv"), tables_csv(made)),
        (stem.with_suffix(".pdf"), tables_pdf(made, sender, date.today(), png)),
    ]
    if png is not None:
        files.append((stem.with_suffix(".png"), png))
    for path, content in files:
        digests[path.name] = write_private(path, [content])
    return made, [path for path, _ in files], counted


def cmd_reports(settings: Settings, args: argparse.Namespace) -> int:
    from hub.review import staff_operation  # hub.review imports hub.office

    out = Path(args.out)
    if not out.is_dir():
        raise CommandError(f"{out} is not a directory")
    digests: dict[str, str] = {}

    def detail() -> str:
        return digests_detail(digests)

    operation = f"report {args.action} {args.year}"
    with office(settings) as o:
        recorded = staff_operation(o, "health", StaffOperationType.DATA_EXPORT, operation, detail)
        with recorded, o.engine.connect() as c:
            made, paths, counted = write_report(c, settings.tenant, args.year, args.action, out, digests)
    for path in paths:
        print(f"  {path}")
    rows = sum(len(t.rows) for t in made)
    print(f"{made[0].title}: {counted} 台帳 entries, {rows} row(s) in {len(made)} table(s) (recorded: {operation})")
    return 0


def add_parsers(report_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    helps = {
        "performance": "受診実績表: per institution × kind × month (CSV, PDF)",
        "national": "地域保健・健康増進事業報告 (がん検診) by kind, sex, age band; 個別/集団, method; 受診率 plot",
        "expenses": "支出関連帳票: the amount due per institution at the unit prices (CSV, PDF)",
    }
    for name in REPORTS:
        p = report_sub.add_parser(name, help=helps[name])
        p.add_argument("--year", type=int, required=True, help="fiscal year")
        p.add_argument("--out", required=True, help="an existing directory for the files")
        p.set_defaults(func=cmd_reports)
