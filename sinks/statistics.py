"""Screening statistics per fiscal year, kind, sex and 5-year age band, recomputed from the sinks' tables.

:func:`refresh_statistics` replaces a fiscal year's rows of ``statistics`` in one transaction; it reads only
``residents`` and ``ledger_entries``, so it can be re-run at any time and converges to the same figures.

Definitions (age is always the legal age on 31 March closing the fiscal year, 年度末年齢):

* **targets** (対象者数): people of the ``residents`` table who were registered residents for at least one day of
  the fiscal year and whom the eligibility rules make a target of the kind by sex and age
  (:meth:`~processors.rules.eligibility.KindRule.is_target`; the interval rule is not applied, as in the national
  reports, which count every person of the target ages). "Resident during the year" means: ``resident_since`` is
  unknown or on/before the year's last day, and either the person is still ``RESIDENT`` or ``ceased_on`` (転出日,
  死亡日) falls after the year's first day. A former resident without ``ceased_on`` is not counted. People born
  after the year's end are not counted.
* **attendees** (受診者数): ledger entries of the fiscal year, excluding entries taken over from another
  municipality (``history_from`` not null). Sex and age come from the entry (the person as at the exam), so an
  attendee is counted even if their resident row is gone.
* **follow_up_required** (要精検者数): attendees whose primary result requires a follow-up examination.
* **follow_up_attended** (精検受診者数): attendees with a follow-up result recorded.
* **cancer_found** (がんであった者): attendees whose follow-up judgement is ``CANCER``.

Bands are ``"20-24"``, …, ``"80-84"`` and ``"85+"``. Every kind gets the full grid of its target sexes and the bands
from its youngest eligible age (including method overrides, e.g. 胃部X線 from 40) to its oldest (``85+`` when it
has no upper age), zero rows included; a cell outside that grid appears only when an attendee falls in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.validation import age_at_fiscal_year_end, fiscal_year_end, fiscal_year_start
from processors.rules.eligibility import EligibilityRules, KindRule
from schemas.models import FollowUpJudgement, ResidentStatus, ScreeningKind, Sex
from schemas.record import now_utc
from sinks.tables import ledger_entries, residents, statistics

BAND_WIDTH = 5
TOP_BAND_FLOOR = 85
COUNTS = ("targets", "attendees", "follow_up_required", "follow_up_attended", "cancer_found")


@dataclass
class StatisticsRow:
    kind: ScreeningKind
    sex: Sex
    age_band: str
    targets: int = 0
    attendees: int = 0
    follow_up_required: int = 0
    follow_up_attended: int = 0
    cancer_found: int = 0

    @property
    def attendance_rate(self) -> float | None:
        """attendees / targets (受診率), None without targets."""
        return self.attendees / self.targets if self.targets else None


def age_band(age: int) -> str:
    """``"40-44"`` for 40 to 44, …, ``"85+"`` from 85."""
    if age < 0:
        raise ValueError("negative age")
    if age >= TOP_BAND_FLOOR:
        return f"{TOP_BAND_FLOOR}+"
    floor = age // BAND_WIDTH * BAND_WIDTH
    return f"{floor}-{floor + BAND_WIDTH - 1}"


def band_floor(band: str) -> int:
    return int(band.split("-")[0].rstrip("+"))


def bands_of(rule: KindRule) -> list[str]:
    """The age bands of a kind's grid: from its youngest eligible age to its oldest (or ``85+``)."""
    youngest = min([rule.min_age, *(min_age for min_age, _ in rule.method_overrides.values())])
    oldest = rule.max_age if rule.max_age is not None else TOP_BAND_FLOOR
    bands: list[str] = []
    for age in range(youngest, oldest + 1):
        band = age_band(age)
        if band not in bands:
            bands.append(band)
    return bands


def sexes_of(rule: KindRule) -> list[Sex]:
    return [rule.sex] if rule.sex is not None else [Sex.MALE, Sex.FEMALE]


def was_resident_during(status: str, resident_since: date | None, ceased_on: date | None, fiscal_year: int) -> bool:
    """True when the person was a registered resident for at least one day of ``fiscal_year`` (see module doc)."""
    start, end = fiscal_year_start(fiscal_year), fiscal_year_end(fiscal_year)
    if resident_since is not None and resident_since > end:
        return False
    if status == ResidentStatus.RESIDENT.value:
        return True
    return ceased_on is not None and ceased_on > start


def compute_statistics(
    connection: Connection, tenant: str, fiscal_year: int, rules: EligibilityRules
) -> list[StatisticsRow]:
    """The statistics of ``fiscal_year`` from the current tables, sorted by kind, sex and band (no writes)."""
    cells: dict[tuple[ScreeningKind, Sex, str], StatisticsRow] = {}
    for kind in ScreeningKind:
        rule = rules.rule(kind)
        for sex in sexes_of(rule):
            for band in bands_of(rule):
                cells[(kind, sex, band)] = StatisticsRow(kind, sex, band)

    def cell(kind: ScreeningKind, sex: Sex, age: int) -> StatisticsRow:
        key = (kind, sex, age_band(age))
        if key not in cells:
            cells[key] = StatisticsRow(kind, sex, key[2])
        return cells[key]

    last_day = fiscal_year_end(fiscal_year)
    people = connection.execute(
        sa.select(
            residents.c.sex,
            residents.c.birth_date,
            residents.c.status,
            residents.c.resident_since,
            residents.c.ceased_on,
        ).where(residents.c.tenant == tenant)
    )
    for sex_text, birth, status, since, ceased in people:
        if birth > last_day or not was_resident_during(status, since, ceased, fiscal_year):
            continue
        sex = Sex(sex_text)
        age = age_at_fiscal_year_end(birth, fiscal_year)
        for kind in ScreeningKind:
            if rules.rule(kind).is_target(sex, birth, fiscal_year):
                cell(kind, sex, age).targets += 1

    entries = connection.execute(
        sa.select(
            ledger_entries.c.kind,
            ledger_entries.c.sex,
            ledger_entries.c.birth_date,
            ledger_entries.c.follow_up_required,
            ledger_entries.c.follow_up.is_not(None),
            ledger_entries.c.followup_judgement,
        ).where(
            ledger_entries.c.tenant == tenant,
            ledger_entries.c.fiscal_year == fiscal_year,
            ledger_entries.c.history_from.is_(None),
        )
    )
    for kind_text, sex_text, birth, required, followed_up, judgement in entries:
        row = cell(ScreeningKind(kind_text), Sex(sex_text), age_at_fiscal_year_end(birth, fiscal_year))
        row.attendees += 1
        row.follow_up_required += int(bool(required))
        row.follow_up_attended += int(bool(followed_up))
        row.cancer_found += int(judgement == FollowUpJudgement.CANCER.value)

    return _sorted(cells.values())


def _sorted(rows: Iterable[StatisticsRow]) -> list[StatisticsRow]:
    kinds = list(ScreeningKind)
    return sorted(rows, key=lambda r: (kinds.index(r.kind), r.sex.value != Sex.MALE.value, band_floor(r.age_band)))


def refresh_statistics(
    connection: Connection,
    tenant: str,
    fiscal_year: int,
    rules: EligibilityRules,
    *,
    computed_at: datetime | None = None,
) -> list[StatisticsRow]:
    """Recompute and replace the ``statistics`` rows of ``tenant`` and ``fiscal_year`` in one transaction.

    When ``connection`` is already in a transaction the work joins it (the caller commits); otherwise this opens
    and commits its own (REPEATABLE READ on PostgreSQL, so both tables are read from one snapshot).
    """
    if connection.in_transaction():
        return _refresh(connection, tenant, fiscal_year, rules, computed_at)
    if connection.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    with connection.begin():
        return _refresh(connection, tenant, fiscal_year, rules, computed_at)


def _refresh(
    connection: Connection, tenant: str, fiscal_year: int, rules: EligibilityRules, computed_at: datetime | None
) -> list[StatisticsRow]:
    rows = compute_statistics(connection, tenant, fiscal_year, rules)
    stamp = computed_at or now_utc()
    connection.execute(
        sa.delete(statistics).where(statistics.c.tenant == tenant, statistics.c.fiscal_year == fiscal_year)
    )
    if rows:
        connection.execute(
            sa.insert(statistics),
            [
                {
                    "tenant": tenant,
                    "fiscal_year": fiscal_year,
                    "kind": r.kind.value,
                    "sex": r.sex.value,
                    "age_band": r.age_band,
                    **{name: getattr(r, name) for name in COUNTS},
                    "computed_at": stamp,
                }
                for r in rows
            ],
        )
    return rows


def query_statistics(connection: Connection, tenant: str, fiscal_year: int) -> list[StatisticsRow]:
    """The stored statistics of ``tenant`` and ``fiscal_year``, sorted by kind, sex and age band (for printing)."""
    result = connection.execute(
        sa.select(statistics).where(statistics.c.tenant == tenant, statistics.c.fiscal_year == fiscal_year)
    )
    rows = [
        StatisticsRow(
            kind=ScreeningKind(r.kind),
            sex=Sex(r.sex),
            age_band=r.age_band,
            **{name: int(getattr(r, name)) for name in COUNTS},
        )
        for r in result
    ]
    return _sorted(rows)
