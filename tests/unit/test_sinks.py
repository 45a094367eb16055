"""SQL sinks without a broker: migrations, idempotent upserts, version guards, error states, statistics."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from hub.engine.deadletter import tenant_of as _tenant_of
from hub.engine.retry import describe_error, is_transient
from hub.pii import PiiKeys
from processors.rules.eligibility import load_rules
from processors.rules.ledger import RESUBMISSION
from schemas import models as m
from sinks import errors as sinks_errors
from sinks.base import Sink, TableSink
from sinks.db import DatabaseError, current_revision, head_revision, make_engine, normalize_url, require_head, upgrade
from sinks.errors import ErrorsSink, error_rank, error_row
from sinks.invitations import InvitationsSink
from sinks.ledger import LedgerSink
from sinks.residents import ResidentsSink, my_number_of
from sinks.statistics import (
    StatisticsRow,
    age_band,
    bands_of,
    query_statistics,
    refresh_statistics,
    was_resident_during,
)
from sinks.tables import (
    ALL_TABLES,
    invitations,
    ledger_entries,
    ledger_versions,
    metadata,
    residents,
    screening_errors,
    statistics,
)
from tests import samples

pytestmark = pytest.mark.unit

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
KEYS = PiiKeys.generate()  # the residents sink seals the 個人番号 (hub.pii)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def write(engine: Engine, sink: Sink[Any], events: Sequence[m.Event], partition: int = 0) -> None:
    """What the runner does for one batch: add every event, flush in one transaction, clear."""
    for offset, event in enumerate(events):
        sink.add(event, b"key", partition, offset)
    with engine.begin() as conn:
        sink.flush(conn)
    sink.clear()


def table_rows(engine: Engine, table: sa.Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        pk = list(table.primary_key.columns)
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*pk))]


# --- event builders ------------------------------------------------------------------------------------------


def ledger(
    atena_no: str = "0000123456",
    kind: m.ScreeningKind = m.ScreeningKind.STOMACH,
    fiscal_year: int = 2025,
    version: int = 1,
    *,
    sex: m.Sex = m.Sex.FEMALE,
    birth: date = date(1976, 4, 1),
    judgement: m.FollowUpJudgement | None = None,
    history_from: str | None = None,
    reception_no: str = "R-1",
) -> m.LedgerEntry:
    follow_up = None
    if judgement is not None:
        follow_up = m.LedgerFollowUp(
            reception_no=reception_no + "-F",
            exam_date=date(fiscal_year, 9, 1),
            exam_age=50,
            institution_code="0112345679",
            institution_name="旭川医科大学病院",
            findings=m.FollowUpFindings(judgement=judgement, procedure="生検"),
        )
    return m.LedgerEntry(
        **samples.header("kenshin-hub.ledger"),  # type: ignore[arg-type]
        atena_no=atena_no,
        kind=kind,
        fiscal_year=fiscal_year,
        version=version,
        person=samples.person(sex=sex, birth_date=birth),
        reception_no=reception_no,
        exam_date=date(fiscal_year, 6, 1),
        exam_age=50,
        institution_code="0112345678",
        institution_name="旭川市立総合病院",
        setting=m.ExamSetting.INDIVIDUAL,
        primary=samples.primary(kind),
        follow_up=follow_up,
        history_from=history_from,
        source_event_id=uuid.UUID(int=version),
    )


def resident(
    atena_no: str,
    *,
    sex: m.Sex = m.Sex.FEMALE,
    birth: date = date(1976, 4, 1),
    status: m.ResidentStatus = m.ResidentStatus.RESIDENT,
    since: date | None = date(2000, 4, 1),
    ceased: date | None = None,
    version: int = 1,
    address: str = "北海道旭川市6条通9丁目46番地",
) -> m.ResidentState:
    return m.ResidentState(
        **samples.header("kenshin-hub.residents"),  # type: ignore[arg-type]
        atena_no=atena_no,
        my_number=samples.my_number(),
        person=samples.person(sex=sex, birth_date=birth, address=address),
        status=status,
        resident_since=since,
        ceased_on=ceased,
        support_measure=False,
        version=version,
    )


def error(
    status: m.ErrorStatus, detected_at: datetime, resolved_at: datetime | None = None, reception_no: str = "R-9"
) -> m.ScreeningError:
    return m.ScreeningError(
        **samples.header("kenshin-hub.matching"),  # type: ignore[arg-type]
        reception_no=reception_no,
        atena_no="0000999999",
        kind=m.ScreeningKind.LUNG,
        stage=m.ResultStage.PRIMARY,
        reasons=(m.ErrorReason.KANA_MISMATCH, m.ErrorReason.BIRTH_DATE_MISMATCH),
        mismatched_fields=("name_kana", "birth_date"),
        status=status,
        detected_at=detected_at,
        resolved_at=resolved_at,
        resolved_by="staff-001" if resolved_at else None,
        resolution="宛名番号を訂正" if resolved_at else None,
        source=m.SourcePointer(topic="institution.results.v1", partition=2, offset=41),
        result_event_id=uuid.UUID(int=7),
    )


def invitation(trigger: m.InvitationTrigger, age: int = 50) -> m.Invitation:
    return m.Invitation(
        **samples.header("kenshin-hub.invitations"),  # type: ignore[arg-type]
        atena_no="0000123456",
        kind=m.ScreeningKind.BREAST,
        fiscal_year=2026,
        invitation_type=m.InvitationType.INVITATION,
        trigger=trigger,
        age_at_fiscal_year_end=age,
        person=samples.person(),
    )


# --- engine and migrations -----------------------------------------------------------------------------------


def test_migrations_create_the_tables_that_tables_py_describes(engine: Engine) -> None:
    names = set(sa.inspect(engine).get_table_names())
    assert {t.name for t in ALL_TABLES} | {"alembic_version"} == names
    assert current_revision(engine) == head_revision() == "0012"
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    require_head(engine)


def test_upgrade_twice_is_a_no_op_and_an_unmigrated_database_is_refused(tmp_path: Path, engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    bare = make_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    try:
        with pytest.raises(DatabaseError, match="run the migrations"):
            require_head(bare)
        with pytest.raises(DatabaseError, match="does not exist"):
            LedgerSink().setup(bare)
    finally:
        bare.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_database_urls() -> None:
    assert normalize_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(DatabaseError, match="psycopg 3 only"):
        normalize_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(DatabaseError, match="unsupported"):
        normalize_url("mysql://u@h/db")


# --- idempotence and guards ----------------------------------------------------------------------------------


def test_the_same_batch_twice_gives_the_same_rows(engine: Engine) -> None:
    batch: list[m.Event] = [
        ledger("A1", m.ScreeningKind.STOMACH, judgement=m.FollowUpJudgement.CANCER),
        ledger("A1", m.ScreeningKind.LUNG),
        ledger("A2", m.ScreeningKind.BREAST, version=3),
    ]
    sink = LedgerSink()
    write(engine, sink, batch)
    first = table_rows(engine, ledger_entries)
    write(engine, sink, batch)
    assert table_rows(engine, ledger_entries) == first
    assert len(first) == 3
    stomach = first[0] if first[0]["kind"] == "STOMACH" else first[1]
    assert stomach["followup_judgement"] == "CANCER"
    assert stomach["followup_exam_date"] == date(2025, 9, 1)
    assert stomach["primary_findings"] == {
        "stomach": {"method": "ENDOSCOPY"},
        "other_findings": "胃炎",
        "benefit_status": None,
        "national_health_insurance": True,
    }
    assert stomach["follow_up"]["findings"]["judgement"] == "CANCER"
    assert stomach["follow_up"]["exam_date"] == "2025-09-01"
    assert stomach["updated_at"].tzinfo is not None


def test_an_older_version_never_overwrites_a_newer_one(engine: Engine) -> None:
    sink = LedgerSink()
    v1 = ledger(version=1)
    v2 = ledger(version=2, judgement=m.FollowUpJudgement.NO_ABNORMALITY)
    write(engine, sink, [v2])
    write(engine, sink, [v1])  # replayed old version
    [row] = table_rows(engine, ledger_entries)
    assert (row["version"], row["followup_judgement"]) == (2, "NO_ABNORMALITY")
    write(engine, sink, [v2, v1])  # both in one batch, old one last
    [row] = table_rows(engine, ledger_entries)
    assert row["version"] == 2
    v3 = ledger(version=3)
    write(engine, sink, [v3])
    [row] = table_rows(engine, ledger_entries)
    assert (row["version"], row["followup_judgement"]) == (3, None)


def test_every_version_of_an_entry_is_kept_once_withdrawals_included(engine: Engine) -> None:
    sink = LedgerSink()
    v1 = ledger(version=1)
    v2 = ledger(version=2, judgement=m.FollowUpJudgement.NO_ABNORMALITY)
    gone = dataclasses.replace(ledger(version=3), withdrawn=True)
    write(engine, sink, [v1, v2])  # one batch: the table keeps v2, the versions both
    write(engine, sink, [v1, v2])  # replayed: nothing twice
    write(engine, sink, [gone])
    assert table_rows(engine, ledger_entries) == []
    rows = table_rows(engine, ledger_versions)
    assert [(r["version"], r["withdrawn"], r["followup_judgement"]) for r in rows] == [
        (1, False, v1.follow_up.findings.judgement.value if v1.follow_up else None),
        (2, False, "NO_ABNORMALITY"),
        (3, True, None),
    ]
    assert {r["reception_no"] for r in rows} == {v1.reception_no}


def test_residents_keep_the_newest_state(engine: Engine) -> None:
    sink = ResidentsSink(keys=KEYS)
    old = resident("R1", version=1, address="旧住所")
    new = resident("R1", version=2, address="新住所", status=m.ResidentStatus.MOVED_OUT, ceased=date(2026, 5, 1))
    write(engine, sink, [new, old])
    write(engine, sink, [old])
    [row] = table_rows(engine, residents)
    assert (row["version"], row["address"], row["status"], row["ceased_on"]) == (
        2,
        "新住所",
        "MOVED_OUT",
        date(2026, 5, 1),
    )
    assert "my_number" not in row
    assert my_number_of(row, KEYS) == samples.my_number()


def test_a_resolved_error_is_not_reopened_by_a_replayed_open_record(engine: Engine) -> None:
    sink = ErrorsSink()
    opened = error(m.ErrorStatus.OPEN, T0)
    resolved = error(m.ErrorStatus.RESOLVED, T0, resolved_at=T0 + timedelta(hours=2))
    write(engine, sink, [opened, resolved])
    write(engine, sink, [opened])  # replay of the old OPEN record
    write(engine, sink, [resolved, opened])  # both in one batch, OPEN last
    [row] = table_rows(engine, screening_errors)
    assert (row["status"], row["resolved_by"], row["resolved_at"]) == ("RESOLVED", "staff-001", T0 + timedelta(hours=2))
    assert row["reasons"] == "KANA_MISMATCH,BIRTH_DATE_MISMATCH"
    assert row["mismatched_fields"] == "name_kana,birth_date"
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == ("institution.results.v1", 2, 41)

    # a new detection (later detected_at) reopens it; replaying the old resolution does not close it again
    again = error(m.ErrorStatus.OPEN, T0 + timedelta(days=1))
    write(engine, sink, [again])
    write(engine, sink, [resolved])
    [row] = table_rows(engine, screening_errors)
    assert (row["status"], row["detected_at"], row["resolved_at"]) == ("OPEN", T0 + timedelta(days=1), None)


def test_a_withdrawn_entry_deletes_the_row_unless_a_newer_version_is_stored(engine: Engine) -> None:
    sink = LedgerSink()
    other = ledger(kind=m.ScreeningKind.LUNG)
    write(engine, sink, [ledger(version=2), other])
    write(engine, sink, [dataclasses.replace(ledger(version=1), withdrawn=True)])  # an older withdrawal: kept
    assert [(r["kind"], r["version"]) for r in table_rows(engine, ledger_entries)] == [("LUNG", 1), ("STOMACH", 2)]
    write(engine, sink, [dataclasses.replace(ledger(version=2), withdrawn=True)])  # same version: deleted
    assert [r["kind"] for r in table_rows(engine, ledger_entries)] == ["LUNG"]
    write(engine, sink, [ledger(version=4)])  # stands again later
    # In one batch the highest version of a key stands for it: an entry after its withdrawal, or the other way round.
    write(engine, sink, [dataclasses.replace(ledger(version=5), withdrawn=True), ledger(version=3)])
    assert [r["kind"] for r in table_rows(engine, ledger_entries)] == ["LUNG"]
    write(engine, sink, [dataclasses.replace(ledger(version=6), withdrawn=True), ledger(version=7)])
    assert [(r["kind"], r["version"]) for r in table_rows(engine, ledger_entries)] == [("LUNG", 1), ("STOMACH", 7)]
    assert "withdrawn" not in table_rows(engine, ledger_entries)[0]


def test_only_a_staff_resolution_outranks_the_processors_records_of_a_detection(engine: Engine) -> None:
    sink = ErrorsSink()
    opened = error(m.ErrorStatus.OPEN, T0)
    by_resubmission = dataclasses.replace(
        opened, status=m.ErrorStatus.RESOLVED, resolved_at=T0, resolved_by="resubmission", resolution="訂正"
    )
    withdrawn = dataclasses.replace(opened, status=m.ErrorStatus.WITHDRAWN, resolved_by="kenshin-hub.matching")
    assert error_rank(error_row(opened)) == error_rank(error_row(by_resubmission)) == error_rank(error_row(withdrawn))
    # The processors' records of one detection: the later one wins, both ways.
    write(engine, sink, [by_resubmission])
    write(engine, sink, [opened])
    assert [r["status"] for r in table_rows(engine, screening_errors)] == ["OPEN"]
    write(engine, sink, [by_resubmission])
    assert [r["status"] for r in table_rows(engine, screening_errors)] == ["RESOLVED"]
    write(engine, sink, [withdrawn])
    assert table_rows(engine, screening_errors) == []
    write(engine, sink, [opened, withdrawn])  # in one batch: the later one
    assert table_rows(engine, screening_errors) == []
    write(engine, sink, [withdrawn, opened])
    assert [r["status"] for r in table_rows(engine, screening_errors)] == ["OPEN"]
    # A staff resolution stays: neither a replayed OPEN record nor a withdrawal of the same detection undoes it.
    staff = error(m.ErrorStatus.RESOLVED, T0, resolved_at=T0 + timedelta(hours=1))
    write(engine, sink, [staff])
    write(engine, sink, [opened])
    write(engine, sink, [withdrawn])
    write(engine, sink, [by_resubmission, withdrawn])
    [row] = table_rows(engine, screening_errors)
    assert (row["status"], row["resolved_by"]) == ("RESOLVED", "staff-001")
    # A withdrawal of a later detection (the 受付番号's standing submission is newer) deletes it.
    later = dataclasses.replace(withdrawn, detected_at=T0 + timedelta(days=1))
    write(engine, sink, [later])
    assert table_rows(engine, screening_errors) == []
    # An older withdrawal never deletes a newer detection.
    write(engine, sink, [error(m.ErrorStatus.OPEN, T0 + timedelta(days=2))])
    write(engine, sink, [later])
    assert [r["detected_at"] for r in table_rows(engine, screening_errors)] == [T0 + timedelta(days=2)]
    assert RESUBMISSION == sinks_errors.RESUBMISSION  # the processors' resolved_by is the one the sink knows


def test_invitations_are_inserted_once(engine: Engine) -> None:
    sink = InvitationsSink()
    first = invitation(m.InvitationTrigger.FISCAL_YEAR_START, age=50)
    write(engine, sink, [first, invitation(m.InvitationTrigger.MOVE_IN, age=51)])
    write(engine, sink, [invitation(m.InvitationTrigger.AGE_THRESHOLD, age=52)])
    [row] = table_rows(engine, invitations)
    assert (row["trigger"], row["age_at_fiscal_year_end"], row["issued_at"]) == (
        "FISCAL_YEAR_START",
        50,
        samples.NOW,
    )


def test_a_sink_that_receives_nothing_writes_nothing(engine: Engine) -> None:
    sinks: list[TableSink[Any]] = [LedgerSink(), ResidentsSink(keys=KEYS), ErrorsSink(), InvitationsSink()]
    with engine.begin() as conn:
        for sink in sinks:
            sink.flush(conn)
    assert all(table_rows(engine, t) == [] for t in ALL_TABLES)


# --- statistics ----------------------------------------------------------------------------------------------

FY = 2025  # 2025-04-01 .. 2026-03-31


def population() -> tuple[list[m.ResidentState], list[m.LedgerEntry]]:
    F, M = m.Sex.FEMALE, m.Sex.MALE
    people = [
        resident("A", sex=F, birth=date(1976, 4, 1)),  # 50 on 2026-03-31 (legal age: born 1 April)
        resident("B", sex=M, birth=date(1985, 6, 15)),  # 40
        resident("C", sex=F, birth=date(2000, 1, 10)),  # 26
        # moved out the day the year started: not a resident for a single day of it
        resident("D", sex=M, birth=date(1950, 5, 5), status=m.ResidentStatus.MOVED_OUT, ceased=date(2025, 4, 1)),
        # died during the year: counted
        resident("E", sex=F, birth=date(1940, 2, 2), status=m.ResidentStatus.DECEASED, ceased=date(2025, 10, 1)),
        # moved in after the year: not counted
        resident("F", sex=M, birth=date(1970, 7, 7), since=date(2026, 4, 10)),
        # former resident without a ceasing date: not counted
        resident("G", sex=M, birth=date(1960, 1, 1), status=m.ResidentStatus.MOVED_OUT, ceased=None),
        # born after the year: not counted
        resident("H", sex=F, birth=date(2026, 4, 2), since=date(2026, 4, 2)),
    ]
    entries = [
        ledger("A", m.ScreeningKind.STOMACH, FY, sex=F, birth=date(1976, 4, 1), judgement=m.FollowUpJudgement.CANCER),
        ledger("A", m.ScreeningKind.BREAST, FY, sex=F, birth=date(1976, 4, 1)),
        ledger("A", m.ScreeningKind.COLORECTAL, FY - 1, sex=F, birth=date(1976, 4, 1)),  # another year
        ledger(
            "B",
            m.ScreeningKind.COLORECTAL,
            FY,
            sex=M,
            birth=date(1985, 6, 15),
            judgement=m.FollowUpJudgement.NO_ABNORMALITY,
        ),
        ledger("B", m.ScreeningKind.STOMACH, FY, sex=M, birth=date(1985, 6, 15)),  # 胃部X線 at 40
        ledger("C", m.ScreeningKind.CERVICAL, FY, sex=F, birth=date(2000, 1, 10), history_from="011002"),
        ledger("X", m.ScreeningKind.LUNG, FY, sex=M, birth=date(1955, 3, 1)),  # 71, no resident row
    ]
    return people, entries


# (targets, attendees, follow_up_required, follow_up_attended, cancer_found) of every cell that is not all zero
EXPECTED_NONZERO = {
    ("STOMACH", "FEMALE", "50-54"): (1, 1, 1, 1, 1),
    ("STOMACH", "FEMALE", "85+"): (1, 0, 0, 0, 0),
    ("STOMACH", "MALE", "40-44"): (1, 1, 1, 0, 0),  # 胃がん targets from 40 (the city's rule): he counts as both
    ("COLORECTAL", "FEMALE", "50-54"): (1, 0, 0, 0, 0),
    ("COLORECTAL", "FEMALE", "85+"): (1, 0, 0, 0, 0),
    ("COLORECTAL", "MALE", "40-44"): (1, 1, 1, 1, 0),
    ("LUNG", "FEMALE", "50-54"): (1, 0, 0, 0, 0),
    ("LUNG", "FEMALE", "85+"): (1, 0, 0, 0, 0),
    ("LUNG", "MALE", "40-44"): (1, 0, 0, 0, 0),
    ("LUNG", "MALE", "70-74"): (0, 1, 1, 0, 0),
    ("BREAST", "FEMALE", "50-54"): (1, 1, 1, 0, 0),
    ("BREAST", "FEMALE", "85+"): (1, 0, 0, 0, 0),
    ("CERVICAL", "FEMALE", "25-29"): (1, 0, 0, 0, 0),
    ("CERVICAL", "FEMALE", "50-54"): (1, 0, 0, 0, 0),
    ("CERVICAL", "FEMALE", "85+"): (1, 0, 0, 0, 0),
    ("H_PYLORI", "FEMALE", "25-29"): (1, 0, 0, 0, 0),
}


def counts(r: StatisticsRow) -> tuple[int, int, int, int, int]:
    return (r.targets, r.attendees, r.follow_up_required, r.follow_up_attended, r.cancer_found)


def test_statistics_of_a_small_population(engine: Engine) -> None:
    people, entries = population()
    write(engine, ResidentsSink(keys=KEYS), people)
    write(engine, LedgerSink(), entries)
    rules = load_rules()
    stamp = datetime(2026, 6, 1, tzinfo=UTC)
    with engine.connect() as conn:
        computed = refresh_statistics(conn, samples.TENANT, FY, rules, computed_at=stamp)
    with engine.connect() as conn:
        stored = query_statistics(conn, samples.TENANT, FY)
    assert stored == computed

    # full grids: 2 sexes x 10 bands (40-44..85+) for stomach/colorectal/lung, women only for breast (10) and
    # cervical (14 bands from 20), 2 sexes x 4 bands (20-39) for H. pylori
    assert len(stored) == 20 + 20 + 20 + 10 + 14 + 8
    nonzero = {(r.kind.value, r.sex.value, r.age_band): counts(r) for r in stored if (r.targets, r.attendees) != (0, 0)}
    assert nonzero == EXPECTED_NONZERO
    assert [(r.kind, r.sex, r.age_band) for r in stored[:3]] == [
        (m.ScreeningKind.STOMACH, m.Sex.MALE, "40-44"),
        (m.ScreeningKind.STOMACH, m.Sex.MALE, "45-49"),
        (m.ScreeningKind.STOMACH, m.Sex.MALE, "50-54"),
    ]
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(statistics.c.computed_at).distinct()).scalars()) == {stamp}

    # a refresh replaces the year's rows (here: B's stomach entry is removed) and touches no other year
    with engine.begin() as conn:
        conn.execute(
            sa.delete(ledger_entries).where(ledger_entries.c.atena_no == "B", ledger_entries.c.kind == "STOMACH")
        )
        refresh_statistics(conn, samples.TENANT, FY, rules)
        refresh_statistics(conn, samples.TENANT, FY - 1, rules)
    with engine.connect() as conn:
        again = {(r.kind.value, r.sex.value, r.age_band): r for r in query_statistics(conn, samples.TENANT, FY)}
        previous = query_statistics(conn, samples.TENANT, FY - 1)
    assert again["STOMACH", "MALE", "40-44"].attendees == 0
    assert len(again) == len(stored)
    assert sum(r.attendees for r in previous) == 1


def test_age_bands_and_residence() -> None:
    ages = (20, 24, 25, 44, 84, 85, 101)
    assert [age_band(a) for a in ages] == ["20-24", "20-24", "25-29", "40-44", "80-84", "85+", "85+"]
    rules = load_rules()
    assert bands_of(rules.rule(m.ScreeningKind.STOMACH))[0] == "40-44"  # 胃部X線 from 40
    assert bands_of(rules.rule(m.ScreeningKind.H_PYLORI)) == ["20-24", "25-29", "30-34", "35-39"]
    assert was_resident_during("RESIDENT", None, None, FY)
    assert not was_resident_during("RESIDENT", date(2026, 4, 1), None, FY)
    assert was_resident_during("MOVED_OUT", date(2025, 1, 1), date(2025, 4, 2), FY)
    assert not was_resident_during("MOVED_OUT", date(2025, 1, 1), date(2025, 4, 1), FY)
    assert not was_resident_during("DECEASED", None, None, FY)


# --- runner helpers ------------------------------------------------------------------------------------------


def test_error_descriptions_carry_no_values() -> None:
    try:
        raise sa.exc.IntegrityError("INSERT …", {"name": "旭川 花子"}, ValueError("Key (name)=(旭川 花子) exists"))
    except sa.exc.IntegrityError as exc:
        text = describe_error(exc)
    assert text == "IntegrityError (ValueError)"
    assert "花子" not in text
    assert is_transient(sa.exc.OperationalError("x", None, ValueError("database is locked")))
    assert not is_transient(sa.exc.IntegrityError("x", None, ValueError("duplicate")))
    assert not is_transient(RuntimeError("bug"))


def test_dead_letter_tenant_comes_from_the_key() -> None:
    assert _tenant_of(b"011002:0000123456", "012041") == "011002"
    assert _tenant_of(b"\xff\xfe", "012041") == "012041"
    assert _tenant_of(None, "012041") == "012041"
    assert _tenant_of(b"999999:1", "012041") == "012041"  # not a valid 団体コード


def test_staff_operations_are_counted_from_the_settled_batch_not_from_the_buffer() -> None:
    # The runtime settles a batch after the next one has been acted on; counting what the sink had buffered lost
    # the first batch's FISCAL_YEAR_START (the next handle cleared it) and counted the second one's early.
    from prometheus_client import CollectorRegistry

    from hub.engine.handler import Delivery
    from monitoring.metrics import HubMetrics
    from sinks.base import SinksHandler
    from sinks.staff import StaffActivitySink
    from topics.catalog import STAFF_OPERATIONS

    registry = CollectorRegistry()
    metrics = HubMetrics(registry, process="sinks")
    handler = SinksHandler([StaffActivitySink(metrics)], metrics)

    def operation(kind: m.StaffOperationType, offset: int) -> Delivery:
        event = m.StaffOperation(
            event_id=uuid.uuid4(), occurred_at=datetime(2026, 4, 1, tzinfo=UTC), tenant="012041",
            source_system="kenshin-hub.staff", staff_id="health1", operation=kind,
            outcome=m.OperationOutcome.SUCCESS, performed_at=datetime(2026, 4, 1, tzinfo=UTC),
        )  # fmt: skip
        return Delivery(STAFF_OPERATIONS, 0, offset, b"012041:health1", event)

    def count(kind: m.StaffOperationType) -> float:
        value = registry.get_sample_value(
            "kenshin_hub_staff_operations_total", {"operation": kind.value, "outcome": "SUCCESS"}
        )
        return value or 0.0

    first = [operation(m.StaffOperationType.FISCAL_YEAR_START, 0)]
    second = [operation(m.StaffOperationType.LIST, 1)]
    first_out = handler.handle(None, first)  # type: ignore[arg-type]  # the staff sink writes nothing
    second_out = handler.handle(None, second)  # type: ignore[arg-type]  # acted on while the first is in flight
    handler.committed(first, first_out)  # the first batch settles
    assert count(m.StaffOperationType.FISCAL_YEAR_START) == 1
    assert count(m.StaffOperationType.LIST) == 0
    handler.committed(second, second_out)
    assert count(m.StaffOperationType.LIST) == 1
