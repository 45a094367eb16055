"""Arrival order does not change the outcome: the final tables are the same whatever the interleaving of the inputs.

The processor shell runs ``processors.rules.steps`` per event, per person, in offset order; here the same steps are
folded in memory over the events of a workload in many orders (across and within the two input topics: results
before their person's 転入/出生, 精検 before their 1次, corrections before their originals, late 転出, redeliveries),
every output is published as the shell publishes it (``processors.app.output_for``) and fed into :class:`Tables`
(what the SQL sinks end with, using the sinks' own ``to_row`` and ``rank``), and the tables must equal those of the
in-order run.

A withdrawn entry (``LedgerEntry.withdrawn``, from an :class:`EntryWithdrawn`) deletes its ledger row when its version
is at least the stored one, a WITHDRAWN error (from an :class:`ErrorWithdrawn`) its error row when it ranks at least
as high (``sinks.errors.error_rank``, where only a staff resolution outranks the processors' records). The 副本 are
checked as the 中間サーバー keeps them: the latest version of each record, unless deleted. One test runs the outputs
through the real SQL sinks too.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from connectors.simulators.city import generate_city
from connectors.simulators.institution import ResultTruth, generate_results
from hub.engine.handler import Delivery
from processors.app import output_for
from processors.rules import receptions, steps
from processors.rules.eligibility import load_rules
from processors.rules.institutions import load_institutions
from processors.rules.ledger import (
    RESUBMISSION,
    Context,
    EntryWithdrawn,
    ErrorWithdrawn,
    load_fukuhon_policy,
)
from processors.rules.residents import order_key
from schemas import models as m
from sinks.base import Row, TableSink
from sinks.db import make_engine, upgrade
from sinks.errors import ErrorsSink, error_rank
from sinks.invitations import InvitationsSink
from sinks.ledger import LedgerSink
from sinks.residents import ResidentsSink
from sinks.tables import ledger_entries, screening_errors
from tests import samples
from topics import catalog

pytestmark = pytest.mark.unit

CTX = Context(load_rules(), load_institutions(), load_fukuhon_policy())
YEAR = 2025
INST = "0110100011"  # performs every kind (1次 only: not registered for 精検)
FOLLOW_INST = "0110100078"  # performs every kind and is registered for 精検
RESULTS_TOPIC = "institution.results.v1"

Input = tuple[m.ResidentChange | m.ScreeningResult | m.ScreeningHistory | m.LedgerDecision, m.SourcePointer | None]


# --- what the sinks end with ---------------------------------------------------------------------------------


class Tables:
    """The final rows of the SQL sinks (and the 中間サーバー's 副本), fed with the processor's outputs in order.

    It also checks what makes a sink end with the latest output: per key, each record ranks at least as high as the
    one before it (a ledger version or a resident version repeats only with the same row), and each 副本 record has
    versions that strictly grow, REGISTER first and only first.
    """

    def __init__(self) -> None:
        self.ledger_sink, self.errors_sink = LedgerSink(), ErrorsSink()
        self.residents_sink, self.invitations_sink = ResidentsSink(), InvitationsSink()
        self.residents: dict[tuple[Any, ...], Row] = {}
        self.ledger: dict[tuple[Any, ...], Row] = {}
        self.errors: dict[tuple[Any, ...], Row] = {}
        self.invitations: dict[tuple[Any, ...], Row] = {}
        self.fukuhon: dict[str, m.FukuhonRegistration] = {}
        self._last: dict[tuple[str, tuple[Any, ...]], tuple[tuple[Any, ...], Row | None]] = {}

    @staticmethod
    def _key(sink: Any, row: Row) -> tuple[Any, ...]:
        return tuple(row[c] for c in sink.key_columns)

    def _monotone(self, table: str, key: tuple[Any, ...], rank: tuple[Any, ...], row: Row | None) -> None:
        before = self._last.get((table, key))
        if before is not None:
            assert rank >= before[0], f"{table} {key}: {rank} after {before[0]}"
            if table in ("ledger", "residents") and rank == before[0]:
                assert row == before[1], f"{table} {key}: version {rank} with two contents"
        self._last[(table, key)] = (rank, row)

    def _upsert(self, table: str, sink: Any, store: dict[tuple[Any, ...], Row], row: Row, rank: Any) -> None:
        key = self._key(sink, row)
        self._monotone(table, key, rank(row), row)
        if key not in store or rank(row) >= rank(store[key]):
            store[key] = row

    def _delete(self, table: str, sink: Any, store: dict[tuple[Any, ...], Row], row: Row, rank: Any) -> None:
        key = self._key(sink, row)
        self._monotone(table, key, rank(row), None)
        if key in store and rank(row) >= rank(store[key]):
            del store[key]

    def apply(self, output: m.Event) -> None:
        topic, event = output_for(output)
        assert topic.value_type is type(event), topic.name
        if isinstance(event, m.ResidentState):
            self._upsert(
                "residents",
                self.residents_sink,
                self.residents,
                self.residents_sink.to_row(event),
                self.residents_sink.rank,
            )
        elif isinstance(event, m.LedgerEntry):
            assert event.withdrawn is isinstance(output, EntryWithdrawn)
            change = self._delete if event.withdrawn else self._upsert
            change("ledger", self.ledger_sink, self.ledger, self.ledger_sink.to_row(event), self.ledger_sink.rank)
        elif isinstance(event, m.ScreeningError):
            withdrawn = event.status is m.ErrorStatus.WITHDRAWN
            assert withdrawn is isinstance(output, ErrorWithdrawn)
            change = self._delete if withdrawn else self._upsert
            change("errors", self.errors_sink, self.errors, self.errors_sink.to_row(event), error_rank)
        elif isinstance(event, m.Invitation):
            row = self.invitations_sink.to_row(event)
            self.invitations.setdefault(self._key(self.invitations_sink, row), row)  # keep_first
        elif isinstance(event, m.FukuhonRegistration):
            self._copy(event)
        else:
            raise AssertionError(f"unexpected output {type(event).__name__}")

    def _copy(self, reg: m.FukuhonRegistration) -> None:
        last = self.fukuhon.get(reg.record_id)
        if last is None:
            assert reg.operation is m.FukuhonOperation.REGISTER, reg.record_id
        else:
            assert reg.version > last.version, f"副本 {reg.record_id}: version {reg.version} after {last.version}"
            assert reg.operation is not m.FukuhonOperation.REGISTER, reg.record_id
            assert not (reg.operation is last.operation is m.FukuhonOperation.DELETE), reg.record_id
        self.fukuhon[reg.record_id] = reg

    def final(self) -> dict[str, Any]:
        published = {
            record_id: (reg.record_key, reg.data, reg.publication_start, reg.publication_end)
            for record_id, reg in self.fukuhon.items()
            if reg.operation is not m.FukuhonOperation.DELETE
        }
        return {
            "residents": self.residents,
            "ledger": self.ledger,
            "errors": self.errors,
            "invitations": self.invitations,
            "fukuhon": published,
        }


def run(inputs: Iterable[Input], *, started_year: int = YEAR) -> tuple[dict[str, Any], dict[str, steps.PersonState]]:
    """Fold ``inputs`` in this order through the steps with one state per person; the final tables and states.

    The processors' own loop runs too, as in the shell: each reception claim goes to the reception index
    (:func:`processors.rules.receptions.index`) and each SUPERSEDED it sends to its person's book, right after the
    input that caused it.
    """
    states: dict[str, steps.PersonState] = defaultdict(steps.PersonState)
    claims: dict[tuple[str, str], dict[str, m.ReceptionClaim]] = defaultdict(dict)
    tables = Tables()
    for event, source in inputs:
        if isinstance(event, m.ResidentChange):
            states[event.atena_no], out = steps.apply_change(
                states[event.atena_no], event, CTX, started_year=started_year
            )
        elif isinstance(event, m.ScreeningHistory):
            states[event.atena_no], out = steps.apply_history(states[event.atena_no], event, CTX)
        elif isinstance(event, m.LedgerDecision):
            states[event.atena_no], out = steps.apply_decision(states[event.atena_no], event, CTX)
        else:
            states[event.atena_no], out = steps.apply_result(states[event.atena_no], event, CTX, source)
        pending = list(out)
        while pending:
            output = pending.pop(0)
            if isinstance(output, m.ReceptionClaim):
                held = claims[(output.tenant, output.reception_no)]
                store, decisions = receptions.index(held, output)
                if store is not None:
                    held[store.atena_no] = store
                pending += decisions
            elif isinstance(output, m.LedgerDecision):
                states[output.atena_no], more = steps.apply_decision(states[output.atena_no], output, CTX)
                pending += more
            else:
                tables.apply(output)
    return tables.final(), states


def in_order(inputs: Sequence[Input]) -> list[Input]:
    """The canonical order: 住基 changes in fold order, the previous town's history, then results by (発生日時,
    イベントID)."""
    changes = [i for i in inputs if isinstance(i[0], m.ResidentChange)]
    history = [i for i in inputs if isinstance(i[0], m.ScreeningHistory)]
    results = [i for i in inputs if isinstance(i[0], m.ScreeningResult)]
    changes.sort(key=lambda i: order_key(i[0]))  # type: ignore[arg-type]
    history.sort(key=lambda i: str(i[0].event_id))
    results.sort(key=lambda i: (i[0].occurred_at, str(i[0].event_id)))
    return changes + history + results


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    for table in want:
        assert got[table] == want[table], table


# --- a simulated city ------------------------------------------------------------------------------------------


@cache
def city_workload() -> tuple[tuple[Input, ...], tuple[Input, ...]]:
    """A small city's year, 30 % dirty, in the order the demo publishes it; and the redeliveries of some of it."""
    city = generate_city(seed=11, size=300, fiscal_year=YEAR)
    plan = generate_results(city, seed=11, fiscal_year=YEAR, dirty_share=0.3)
    truths = set(plan.event_truth.values())
    assert {ResultTruth.CORRECTION, ResultTruth.FOLLOW_UP, ResultTruth.MOVED_OUT} <= truths, truths
    events: list[Input] = [(c, None) for c in city.events]
    events += [(r, m.SourcePointer(topic=RESULTS_TOPIC, partition=0, offset=i)) for i, r in enumerate(plan.results)]
    # A producer retry writes a result again further on; a consumer replay reads a change again.
    n = len(plan.results)
    again: list[Input] = [
        (r, m.SourcePointer(topic=RESULTS_TOPIC, partition=0, offset=n + i)) for i, r in enumerate(plan.results[::25])
    ]
    again += [(c, None) for c in city.changes[::10]]
    return tuple(events), tuple(again)


@cache
def city_tables() -> dict[str, Any]:
    events, _ = city_workload()
    tables, _ = run(events)
    assert len(tables["ledger"]) > 50
    assert {r["status"] for r in tables["errors"].values()} == {"OPEN", "RESOLVED"}
    assert tables["invitations"]
    assert tables["fukuhon"]
    return tables


def _reversed_topics(events: Sequence[Input]) -> list[Input]:
    """Each topic backwards (corrections before originals, 精検 before 1次, 転出 before 転入), results first."""
    results = [e for e in events if isinstance(e[0], m.ScreeningResult)]
    changes = [e for e in events if isinstance(e[0], m.ResidentChange)]
    return results[::-1] + changes[::-1]


def _alternating(events: Sequence[Input]) -> list[Input]:
    """The two topics interleaved one by one, each in its own order."""
    results = [e for e in events if isinstance(e[0], m.ScreeningResult)]
    changes = [e for e in events if isinstance(e[0], m.ResidentChange)]
    out: list[Input] = []
    for i in range(max(len(results), len(changes))):
        out += results[i : i + 1] + changes[i : i + 1]
    return out


@pytest.mark.parametrize("arrange", [lambda e: list(e)[::-1], _reversed_topics, _alternating])
def test_adversarial_orders_of_a_city_end_with_the_same_tables(arrange: Any) -> None:
    events, again = city_workload()
    tables, _ = run(arrange([*events, *again]))
    assert_same(tables, city_tables())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[
        Phase.explicit,
        Phase.reuse,
        Phase.generate,
    ],  # shrinking 600 events takes minutes: the message names the key
)
@given(st.data())
def test_any_interleaving_of_a_city_ends_with_the_same_tables(data: st.DataObject) -> None:
    events, again = city_workload()
    extra = data.draw(st.lists(st.sampled_from(again), max_size=8), label="redelivered")
    order = data.draw(st.permutations([*events, *extra]), label="arrival order")
    tables, _ = run(order)
    assert_same(tables, city_tables())


# --- one person, drawn by hypothesis ------------------------------------------------------------------------------

ATENA = "0000000042"
BIRTH = date(1970, 6, 1)
PERSON = samples.person(birth_date=BIRTH)
DAYS = [
    date(2024, 6, 3),
    date(2024, 11, 5),
    date(2025, 5, 20),
    date(2025, 6, 10),
    date(2025, 8, 1),
    date(2025, 10, 1),
    date(2026, 1, 15),
]
KINDS = [m.ScreeningKind.BREAST, m.ScreeningKind.COLORECTAL, m.ScreeningKind.STOMACH]
RECEPTIONS = ["R1", "R2", "R3", "R4"]
UPDATES: list[tuple[m.ResidentChangeType, str, str]] = [  # 転居, 氏名変更, 職権修正 of the kana: (change, field, value)
    (m.ResidentChangeType.MOVE_WITHIN, "address", "北海道旭川市神楽1条1丁目1番1号"),
    (m.ResidentChangeType.NAME_CHANGE, "name", "神楽 花子"),
    (m.ResidentChangeType.CORRECTION, "name_kana", "アサヒカワ ハナゴ"),
]


def _uuid(draw: st.DrawFn, taken: set[uuid.UUID]) -> uuid.UUID:
    """A イベントID not used yet in this workload (drawn, so that ties of 発生日時 break either way)."""
    value = uuid.UUID(int=draw(st.integers(1, 2**64)))
    while value in taken:
        value = uuid.UUID(int=value.int + 1)
    taken.add(value)
    return value


def _at(day: date, minutes: int) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(minutes=minutes)


@st.composite
def person_workload(draw: st.DrawFn) -> list[Input]:
    """One person's 住基 changes and results, with every trap the order can set.

    A first 転入 (sometimes missing: the person stays unknown), maybe a 転居 / 氏名変更 / 職権修正 of the kana
    during the years, maybe a 転出 and a return; primaries of three kinds over two fiscal years (the interval rule,
    two exams of one year), some not saying 要精検, follow-ups pointing at some 受付番号 (mostly from an institution
    registered for 精検), re-submissions of a 受付番号 (corrections, also into another kind, day or stage, or of what
    a 1次 said about 要精検), subjects as registered on the exam day or mistyped, an unknown institution.
    """
    identities: list[tuple[date, m.PersonIdentity]] = [(date(2019, 4, 1), PERSON)]
    changes: list[m.ResidentChange] = []
    ids: set[uuid.UUID] = set()

    def change(kind: m.ResidentChangeType, day: date, person: m.PersonIdentity, **extra: Any) -> None:
        at = _at(day, draw(st.integers(0, 600)))
        header: dict[str, Any] = {"event_id": _uuid(draw, ids), "occurred_at": at, "tenant": samples.TENANT}
        changes.append(
            m.ResidentChange(
                **header,
                source_system="juki",
                atena_no=ATENA,
                change_type=kind,
                change_date=day,
                person=person,
                **extra,
            )
        )

    if draw(st.integers(0, 4)) > 0:  # else the person stays unknown to 住基 (or known by a later change only)
        change(m.ResidentChangeType.MOVE_IN, identities[0][0], PERSON, previous_municipality="011002")
    for change_type, what, value in UPDATES:
        if draw(st.booleans()):
            day = draw(st.sampled_from(DAYS)) - timedelta(days=draw(st.integers(0, 40)))
            current = max((i for i in identities if i[0] <= day), key=lambda i: i[0])[1]
            update: dict[str, Any] = {what: value}
            new = dataclasses.replace(current, **update)
            identities = sorted([*(i for i in identities if i[0] != day), (day, new)], key=lambda i: i[0])
            change(change_type, day, new)
    if draw(st.booleans()):
        out_day = draw(st.sampled_from(DAYS)) - timedelta(days=draw(st.integers(0, 40)))
        last = max((i for i in identities if i[0] <= out_day), key=lambda i: i[0])[1]
        change(m.ResidentChangeType.MOVE_OUT, out_day, last, next_municipality="012025")
        if draw(st.booleans()):
            back = out_day + timedelta(days=draw(st.integers(20, 200)))
            change(m.ResidentChangeType.MOVE_IN, back, last, previous_municipality="012025")

    def identity_on(day: date) -> m.PersonIdentity:
        return max((i for i in identities if i[0] <= day), key=lambda i: i[0], default=identities[0])[1]

    results: list[Input] = []
    primaries: list[m.ScreeningResult] = []
    for offset in range(draw(st.integers(1, 7))):
        follow_up = draw(st.integers(0, 2)) == 0
        kind = draw(st.sampled_from(KINDS))
        follows = draw(st.sampled_from(RECEPTIONS))
        if follow_up and primaries and draw(st.booleans()):  # most 精検 follow a 1次 of the workload
            parent = draw(st.sampled_from(primaries))
            kind, follows = parent.kind, parent.reception_no
        day = draw(st.sampled_from(DAYS))
        subject = identity_on(day)
        if draw(st.integers(0, 7)) == 0:
            subject = dataclasses.replace(subject, name_kana="アサヒカワ ハナヨ")  # a typo
        institution = draw(st.integers(0, 11))  # 0: unknown; 1: a 精検 from an institution that does no 精検
        code = "0119999999" if institution == 0 else FOLLOW_INST if follow_up and institution > 1 else INST
        common: dict[str, Any] = {
            "event_id": _uuid(draw, ids),
            "occurred_at": _at(day + timedelta(days=draw(st.integers(3, 60))), 0),
            "tenant": samples.TENANT,
            "source_system": "institution",
            "reception_no": draw(st.sampled_from(RECEPTIONS)),
            "kind": kind,
            "atena_no": ATENA,
            "subject": subject,
            "institution_code": code,
            "institution_name": "検診センター",
            "exam_date": day,
        }
        if follow_up:
            result = m.ScreeningResult(
                **common, stage=m.ResultStage.FOLLOW_UP, follow_up=samples.follow_up(), primary_reception_no=follows
            )
        else:
            findings = samples.primary(kind)  # 要精検
            if draw(st.integers(0, 3)) == 0:
                findings = dataclasses.replace(findings, follow_up_required=False)
            result = m.ScreeningResult(
                **common, stage=m.ResultStage.PRIMARY, setting=m.ExamSetting.INDIVIDUAL, primary=findings
            )
            primaries.append(result)
        results.append((result, m.SourcePointer(topic=RESULTS_TOPIC, partition=0, offset=offset)))
    history: list[Input] = []
    for n in range(draw(st.integers(0, 2))):  # screenings in the town the person came from (転入前の受診履歴)
        kind, year = draw(st.sampled_from(KINDS)), draw(st.sampled_from([2023, 2024]))
        record = m.ScreeningHistory(
            event_id=_uuid(draw, ids), occurred_at=_at(date(2025, 5, 1), n), tenant=samples.TENANT,
            source_system="kenshin-hub.connector", atena_no=ATENA, from_tenant="011002", record_id=f"KH{n}",
            kind=kind, fiscal_year=year,
        )  # fmt: skip
        history.append((record, None))
    return [(c, None) for c in changes] + history + results


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_order_of_one_persons_events_ends_with_the_same_tables(data: st.DataObject) -> None:
    events = data.draw(person_workload(), label="workload")
    order = data.draw(st.permutations(events), label="arrival order")
    want, _ = run(in_order(events))
    got, _ = run(order)
    del want["invitations"], got["invitations"]  # notices are sent once, from the attendance known then
    assert_same(got, want)


# --- the semantics, case by case ----------------------------------------------------------------------------------


def _move_in(seq: int = 1, day: date = date(2020, 4, 1), **over: Any) -> m.ResidentChange:
    fields: dict[str, Any] = {
        "event_id": uuid.UUID(int=seq),
        "occurred_at": _at(day, seq),
        "tenant": samples.TENANT,
        "source_system": "juki",
        "atena_no": ATENA,
        "change_type": m.ResidentChangeType.MOVE_IN,
        "change_date": day,
        "person": PERSON,
    }
    fields.update(over)
    return m.ResidentChange(**fields)


def _result(seq: int, reception: str = "R1", day: date = date(2025, 6, 10), **over: Any) -> m.ScreeningResult:
    fields: dict[str, Any] = {
        "event_id": uuid.UUID(int=100 + seq),
        "occurred_at": _at(day + timedelta(days=7), seq),
        "tenant": samples.TENANT,
        "source_system": "institution",
        "reception_no": reception,
        "kind": m.ScreeningKind.COLORECTAL,
        "stage": m.ResultStage.PRIMARY,
        "atena_no": ATENA,
        "subject": PERSON,
        "institution_code": INST,
        "institution_name": "検診センター",
        "exam_date": day,
        "setting": m.ExamSetting.INDIVIDUAL,
        "primary": samples.primary(m.ScreeningKind.COLORECTAL),
    }
    fields.update(over)
    return m.ScreeningResult(**fields)


def _follow_up(seq: int, reception: str, primary: str, day: date = date(2025, 7, 1)) -> m.ScreeningResult:
    return _result(
        seq,
        reception,
        day,
        stage=m.ResultStage.FOLLOW_UP,
        setting=None,
        primary=None,
        follow_up=samples.follow_up(),
        primary_reception_no=primary,
        institution_code=FOLLOW_INST,
    )


def _outputs(events: Sequence[m.ResidentChange | m.ScreeningResult]) -> list[tuple[steps.PersonState, list[m.Event]]]:
    """The state and the outputs after each of ``events``, folded in this order (without the reception claims)."""
    state, after = steps.PersonState(), []
    for e in events:
        if isinstance(e, m.ResidentChange):
            state, out = steps.apply_change(state, e, CTX, started_year=YEAR)
        else:
            state, out = steps.apply_result(state, e, CTX, None)
        after.append((state, [o for o in out if not isinstance(o, m.ReceptionClaim)]))  # the index's: see run()
    return after


def test_a_result_before_its_person_waits_as_an_open_error_then_enters_the_ledger() -> None:
    (waiting, raised), (matched, out) = _outputs([_result(1), _move_in()])
    [error] = raised
    assert isinstance(error, m.ScreeningError)
    assert error.reasons == (m.ErrorReason.UNKNOWN_PERSON,)
    assert error.status is m.ErrorStatus.OPEN  # staff see it, as waiting for 住基
    assert steps.waiting(waiting) == (error,)
    assert [type(e).__name__ for e in out] == ["ResidentState", "LedgerEntry", "FukuhonRegistration", "ErrorWithdrawn"]
    assert matched.book.errors == ()
    assert [e.version for e in matched.book.entries] == [1]
    assert_same(run([(_result(1), None), (_move_in(), None)])[0], run([(_move_in(), None), (_result(1), None)])[0])


def test_a_follow_up_before_its_primary_attaches_when_the_primary_arrives() -> None:
    follow, primary = _follow_up(2, "R2", "R1"), _result(1)
    _, (_, waiting), (state, attached) = _outputs([_move_in(), follow, primary])
    assert [e.reasons for e in waiting] == [(m.ErrorReason.NO_PRIMARY_FOR_FOLLOW_UP,)]  # type: ignore[attr-defined]
    [entry] = [e for e in attached if isinstance(e, m.LedgerEntry)]
    assert entry.follow_up is not None
    assert entry.follow_up.reception_no == "R2"
    assert entry.source_event_id == follow.event_id
    assert [type(e).__name__ for e in attached] == ["LedgerEntry", "FukuhonRegistration", "ErrorWithdrawn"]
    assert state.book.errors == ()


def test_a_correction_wins_over_its_original_in_either_order() -> None:
    original = _result(1, subject=dataclasses.replace(PERSON, name_kana="アサヒカワ ハナヨ"))  # a typo: an error
    correction = _result(2)  # same 受付番号, reported later
    first, _ = run([(_move_in(), None), (original, None), (correction, None)])
    second, _ = run([(_move_in(), None), (correction, None), (original, None)])
    assert_same(second, first)
    [row] = first["errors"].values()
    assert (row["status"], row["resolved_by"], row["reasons"]) == ("RESOLVED", RESUBMISSION, "KANA_MISMATCH")
    assert row["result_event_id"] == str(original.event_id)
    [entry] = first["ledger"].values()
    assert (entry["source_event_id"], entry["version"]) == (str(correction.event_id), 2)


def test_a_late_move_out_dated_before_the_exam_withdraws_the_entry() -> None:
    out = _move_in(2, day=date(2025, 5, 1), change_type=m.ResidentChangeType.MOVE_OUT, next_municipality="012025")
    *_, (state, outs) = _outputs([_move_in(), _result(1), out])
    assert state.book.entries == ()
    assert [type(e).__name__ for e in outs] == [
        "ResidentState",
        "EntryWithdrawn",
        "FukuhonRegistration",
        "ScreeningError",
    ]
    withdrawn, copy = outs[1], outs[2]
    assert isinstance(withdrawn, EntryWithdrawn)
    assert withdrawn.entry.version == 2  # one 住基 record, one result, the 転出: 1 + 1 + 1 - 1
    assert isinstance(copy, m.FukuhonRegistration)
    assert copy.operation is m.FukuhonOperation.DELETE
    assert state.book.errors[0].reasons == (m.ErrorReason.NOT_RESIDENT_ON_EXAM_DATE,)


def test_an_earlier_exam_arriving_late_holds_the_fiscal_year() -> None:
    late, early = _result(1, "R1", date(2025, 9, 1)), _result(2, "R2", date(2025, 6, 1))
    tables, states = run([(_move_in(), None), (late, None), (early, None)])
    [entry] = tables["ledger"].values()
    assert entry["reception_no"] == "R2"
    assert {r["reception_no"]: r["reasons"] for r in tables["errors"].values()} == {"R1": "INTERVAL_NOT_MET"}
    assert_same(run([(_move_in(), None), (early, None), (late, None)])[0], tables)
    assert states[ATENA].book.entries[0].version == 2  # one 住基 record and two results of the kind, minus one


def test_a_first_copy_is_a_register_even_when_the_entry_starts_above_version_1() -> None:
    correction, original = _result(2), _result(1, institution_name="検診センター 旧")
    _, (_, first), (_, second) = _outputs([_move_in(), correction, original])
    [entry] = [e for e in first if isinstance(e, m.LedgerEntry)]
    [copy] = [e for e in first if isinstance(e, m.FukuhonRegistration)]
    assert (entry.version, copy.version, copy.operation) == (1, 1, m.FukuhonOperation.REGISTER)
    # The original arrives late: the entry's clock moves (v2), its content does not: no 副本.
    assert [type(e).__name__ for e in second] == ["LedgerEntry"]
    # A result that waited for its person: the entry starts at version 2, and its first 副本 registers.
    _, _, (_, out) = _outputs([_result(1), _result(5, "R9", date(2025, 8, 1)), _move_in()])
    [copy] = [e for e in out if isinstance(e, m.FukuhonRegistration)]
    assert (copy.version, copy.operation) == (2, m.FukuhonOperation.REGISTER)


def test_withdrawals_are_published_as_their_records_marked_withdrawn() -> None:
    out = _move_in(2, day=date(2025, 5, 1), change_type=m.ResidentChangeType.MOVE_OUT, next_municipality="012025")
    *_, (_, outs) = _outputs([_move_in(), _result(1), out])
    published = [output_for(e) for e in outs]
    assert [(t.name, type(e).__name__) for t, e in published] == [
        ("residents.v1", "ResidentState"),
        ("ledger.entries.v1", "LedgerEntry"),
        ("fukuhon.registrations.v1", "FukuhonRegistration"),
        ("screening.errors.v1", "ScreeningError"),
    ]
    entry = published[1][1]
    assert isinstance(entry, m.LedgerEntry)
    assert (entry.withdrawn, entry.version) == (True, 2)
    _, (_, withdrawn) = _outputs([_result(1), _move_in()])
    [(topic, error)] = [output_for(e) for e in withdrawn if isinstance(e, ErrorWithdrawn)]
    assert isinstance(error, m.ScreeningError)
    assert (topic.name, error.status) == ("screening.errors.v1", m.ErrorStatus.WITHDRAWN)


def test_book_changes_count_what_an_operator_means() -> None:
    typo = dataclasses.replace(PERSON, name_kana="アサヒカワ ハナヨ")
    move_out = _move_in(3, day=date(2025, 5, 1), change_type=m.ResidentChangeType.MOVE_OUT, next_municipality="012025")
    back = _move_in(4, day=date(2025, 5, 20), previous_municipality="012025")
    events: list[m.ResidentChange | m.ScreeningResult] = [
        _result(1, subject=typo),  # before its person: UNKNOWN_PERSON
        _move_in(),  # now known: the kana disagrees (a new reason for the same submission)
        _result(1, subject=typo),  # redelivered: nothing new
        _result(2),  # the correction matches: a NEW entry
        _result(3, institution_name="検診センター"),  # a correction saying the same: no change
        _result(4, institution_name="別の検診センター"),  # a correction saying something else: UPDATED
        move_out,  # the entry is withdrawn, an error opens
        back,  # resident again on the exam day: the entry stands again (UPDATED), the error goes
    ]
    before = steps.PersonState()
    counted: list[tuple[list[int], list[int], list[tuple[m.ErrorReason, ...]]]] = []
    for after, _ in _outputs(events):
        c = steps.changes(before, after)
        counted.append(
            (
                [e.version for e in c.new_entries],
                [e.version for e in c.updated_entries],
                [e.reasons for e in c.opened_errors],
            )
        )
        before = after
    assert counted == [
        ([], [], [(m.ErrorReason.UNKNOWN_PERSON,)]),
        ([], [], [(m.ErrorReason.KANA_MISMATCH,)]),
        ([], [], []),
        ([2], [], []),  # versions count inputs: 1 住基 record + 2 results - 1
        ([], [], []),
        ([], [4], []),
        ([], [], [(m.ErrorReason.NOT_RESIDENT_ON_EXAM_DATE,)]),
        ([], [6], []),
    ]


def test_the_processors_count_entries_and_errors_once(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from hub.engine.handler import Delivery
    from hub.pii import PiiKeys
    from monitoring.metrics import HubMetrics
    from processors.app import Processors
    from processors.store import PROCESSORS_MIGRATIONS
    from topics import catalog

    engine = make_engine(f"sqlite:///{tmp_path / 'processors.db'}")
    upgrade(engine, script_location=PROCESSORS_MIGRATIONS)
    registry = CollectorRegistry()
    handler = Processors(HubMetrics(registry, process="processors", runtime=False), CTX, pii=PiiKeys.generate())
    typo = dataclasses.replace(PERSON, name_kana="アサヒカワ ハナヨ")
    events: list[m.ResidentChange | m.ScreeningResult] = [
        _result(1, subject=typo),
        _move_in(),
        _result(1, subject=typo),
        _move_in(),  # a 住基 change redelivered
        _result(2),
        _result(2),
        _result(4, institution_name="別の検診センター"),
        _result(5, "R2", date(2025, 9, 1)),  # a second exam of the year
    ]
    for offset, event in enumerate(events):
        topic = catalog.RESIDENT_CHANGES if isinstance(event, m.ResidentChange) else catalog.INSTITUTION_RESULTS
        deliveries = [Delivery(topic, 0, offset, topic.key_of(event).encode(), event)]
        with engine.begin() as conn:
            outcomes = handler.handle(conn, deliveries)
        handler.committed(deliveries, outcomes)
    engine.dispose()

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(f"kenshin_hub_{name}_total", labels) or 0.0

    kind = m.ScreeningKind.COLORECTAL.value
    assert sample("ledger_entries", kind=kind, change="NEW") == 1
    assert sample("ledger_entries", kind=kind, change="UPDATED") == 1
    assert {
        r.value: sample("matching_errors", reason=r.value, kind=kind)
        for r in m.ErrorReason
        if sample("matching_errors", reason=r.value, kind=kind)
    } == {"UNKNOWN_PERSON": 1, "KANA_MISMATCH": 1, "INTERVAL_NOT_MET": 1}


def test_the_sql_sinks_end_with_the_same_rows(tmp_path: Path) -> None:
    """The outputs of an adversarial order, published and written in batches through the real sinks (SQLite)."""
    events, again = city_workload()
    states: dict[str, steps.PersonState] = defaultdict(steps.PersonState)
    outputs: list[m.Event] = []
    for event, source in _alternating([*events, *again]):  # this order withdraws entries and errors
        if isinstance(event, m.ResidentChange):
            states[event.atena_no], out = steps.apply_change(states[event.atena_no], event, CTX, started_year=YEAR)
        else:
            states[event.atena_no], out = steps.apply_result(states[event.atena_no], event, CTX, source)
        outputs += out
    assert any(isinstance(e, EntryWithdrawn) for e in outputs)
    assert any(isinstance(e, ErrorWithdrawn) for e in outputs)
    records = [e for _, e in map(output_for, outputs) if isinstance(e, m.LedgerEntry | m.ScreeningError)]

    engine = make_engine(f"sqlite:///{tmp_path / 'sinks.db'}")
    upgrade(engine)
    sinks: dict[type, TableSink[Any]] = {m.LedgerEntry: LedgerSink(), m.ScreeningError: ErrorsSink()}
    sizes, i, offset = [1, 7, 50, 3], 0, 0
    while offset < len(records):
        batch = records[offset : offset + sizes[i % len(sizes)]]
        for n, record in enumerate(batch):
            sinks[type(record)].add(record, b"key", 0, offset + n)
        with engine.begin() as conn:
            for sink in sinks.values():
                sink.flush(conn)
        for sink in sinks.values():
            sink.clear()
        offset, i = offset + len(batch), i + 1
    with engine.connect() as conn:
        ledger = {
            (r.atena_no, r.kind, r.fiscal_year): (r.version, r.reception_no, r.source_event_id)
            for r in conn.execute(sa.select(ledger_entries))
        }
        errors = {
            r.reception_no: (r.status, r.reasons, r.resolved_by, r.result_event_id)
            for r in conn.execute(sa.select(screening_errors))
        }
    engine.dispose()
    want = city_tables()
    assert ledger == {
        (r["atena_no"], r["kind"], r["fiscal_year"]): (r["version"], r["reception_no"], r["source_event_id"])
        for r in want["ledger"].values()
    }
    assert errors == {
        r["reception_no"]: (r["status"], r["reasons"], r["resolved_by"], r["result_event_id"])
        for r in want["errors"].values()
    }


def _processors_handler() -> Any:
    from prometheus_client import CollectorRegistry

    from hub.pii import PiiKeys
    from monitoring.metrics import HubMetrics
    from processors.app import Processors

    return Processors(HubMetrics(CollectorRegistry(), process="processors", runtime=False), CTX, pii=PiiKeys.generate())


def _handle(engine: sa.Engine, handler: Any, event: m.ResidentChange | m.ScreeningResult, offset: int) -> list[Any]:
    """One event through the processors' handler in its own transaction; its outputs."""
    topic = catalog.RESIDENT_CHANGES if isinstance(event, m.ResidentChange) else catalog.INSTITUTION_RESULTS
    with engine.begin() as conn:
        (outcome,) = handler.handle(conn, [Delivery(topic, 0, offset, topic.key_of(event).encode(), event)])
    return [record for _topic, record in outcome if not isinstance(record, m.ResidentState)]


def _processors_store(path: Path) -> sa.Engine:
    from processors.store import PROCESSORS_MIGRATIONS

    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, script_location=PROCESSORS_MIGRATIONS)
    return engine


def test_a_state_kept_between_batches_is_not_used_once_the_store_holds_another(tmp_path: Path) -> None:
    """The processors keep the states they decoded or wrote between batches, and take one only while its row still
    holds the texts it was stored as. Two cases where the row moved on must read the row: a batch whose transaction
    rolled back (the kept state is the rolled-back one), and a second worker that acted on the person in between
    (a rebalance, or a worker that lost its partition without knowing yet)."""
    events: list[m.ResidentChange | m.ScreeningResult] = [_move_in(), _result(1), _result(2, "R2", date(2025, 9, 1))]

    calm = _processors_store(tmp_path / "calm.db")
    one = _processors_handler()
    expected = [_handle(calm, one, e, i) for i, e in enumerate(events)]
    assert expected[1]
    assert any(isinstance(r, m.ScreeningError) for r in expected[2])  # the second exam of the year is an error

    # a rolled-back batch: the handler acted on the result, its transaction did not commit
    store = _processors_store(tmp_path / "rolled-back.db")
    handler = _processors_handler()
    handler.pii = one.pii
    assert _handle(store, handler, events[0], 0) == expected[0]
    topic = catalog.INSTITUTION_RESULTS
    conn = store.connect()
    rollback = conn.begin()
    handler.handle(conn, [Delivery(topic, 0, 1, topic.key_of(events[1]).encode(), events[1])])
    rollback.rollback()
    conn.close()
    assert [_handle(store, handler, e, i) for i, e in enumerate(events[1:], 1)] == expected[1:]

    # a second worker acts on the person between two batches of the first
    shared = _processors_store(tmp_path / "shared.db")
    first, second = _processors_handler(), _processors_handler()
    second.pii = first.pii = one.pii
    got = [
        _handle(shared, first, events[0], 0),
        _handle(shared, second, events[1], 1),
        _handle(shared, first, events[2], 2),
    ]
    assert got == expected
    for engine in (calm, store, shared):
        engine.dispose()
