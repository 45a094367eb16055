"""Only what is needed is taken in (assessment III.2, issue 10 item 4): below target age, the minimal basis only.

A person who cannot yet be a target of any kind (eligibility.toml's youngest age for their sex, on the 年度末年齢
basis) is kept by the processors as the types and dates of their changes and their 性別 / 生年月日, whatever the
住基 sent. They have no resident state, so nothing about them reaches ``residents.v1``, the sinks or the 中間サーバー.
When they become a target the 住基 sends their full record (``TARGET_AGE_REACHED``) and the fold goes on from it.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date

import pytest

from processors.rules.eligibility import load_rules
from processors.rules.institutions import load_institutions
from processors.rules.ledger import Context, load_fukuhon_policy
from processors.rules.residents import basis_of, is_minimal
from processors.rules.steps import PersonState, apply_change, apply_result
from schemas import models as m
from schemas.record import ModelError
from tests import samples
from tests.unit.test_rules import FOLLOW_INST, change, result

pytestmark = pytest.mark.unit

CT = m.ResidentChangeType
GIRL = samples.person(name="市民 花子", sex=m.Sex.FEMALE, birth_date=date(2006, 9, 1))  # 19 on 31 Mar 2026
BOY = samples.person(name="市民 太郎", sex=m.Sex.MALE, birth_date=date(1987, 5, 1))  # 38 on 31 Mar 2026


def ctx_on(day: date) -> Context:
    return Context(load_rules(), load_institutions(), load_fukuhon_policy(), today=lambda: day)


IN_2025 = ctx_on(date(2025, 10, 1))  # fiscal year 2025: the girl is 19, below every kind
IN_2026 = ctx_on(date(2026, 4, 1))  # fiscal year 2026: she is 20, a 子宮がん target

BIRTH = change(
    CT.BIRTH, GIRL.birth_date, 1, person=GIRL, my_number=samples.my_number(), household_no="H1", postcode="070-0031"
)
MOVED = change(
    CT.MOVE_WITHIN, date(2025, 6, 2), 2, person=dataclasses.replace(GIRL, address="北海道旭川市神楽1条1丁目")
)
FLAGGED = change(CT.SUPPORT_MEASURE_SET, date(2025, 7, 1), 3)
LEFT = change(CT.MOVE_OUT, date(2025, 8, 1), 4, next_municipality="011002")
FULL = change(
    CT.TARGET_AGE_REACHED,
    date(2026, 4, 1),
    5,
    person=MOVED.person,
    my_number=samples.my_number(),
    household_no="H1",
    postcode="070-0031",
    support_measure=True,
)


def fold(ctx: Context, *changes: m.ResidentChange) -> tuple[PersonState, list[m.Event]]:
    state, out = PersonState(), []
    for c in changes:
        state, out = apply_change(state, c, ctx, started_year=0)
    return state, out


def test_the_scope_is_the_youngest_target_age_per_sex() -> None:
    rules = load_rules()
    assert not rules.can_be_target(m.Sex.FEMALE, GIRL.birth_date, 2025)
    assert rules.can_be_target(m.Sex.FEMALE, GIRL.birth_date, 2026)  # 子宮がん from 20
    assert rules.can_be_target(m.Sex.MALE, GIRL.birth_date, 2026)  # ピロリ菌検査 takes anyone from 20
    assert not rules.can_be_target(m.Sex.MALE, date(2015, 1, 1), 2026)
    assert rules.can_be_target(m.Sex.MALE, date(1900, 1, 1), 2026)  # past ピロリ's 39: other kinds go on


def test_a_full_record_below_target_age_is_reduced_to_the_basis() -> None:
    """The 住基 broke the contract (it sent the child's full record): the processors keep the minimal basis."""
    state, out = fold(IN_2025, BIRTH, MOVED, FLAGGED)
    assert out == []  # no resident state, so nothing reaches residents.v1
    assert state.log.state() is None
    basis = m.TargetBasis(sex=m.Sex.FEMALE, birth_date=GIRL.birth_date)
    assert state.log.basis() == basis
    assert [c.change_type for c in state.log.changes] == [CT.BIRTH, CT.MOVE_WITHIN, CT.SUPPORT_MEASURE_SET]
    for c in state.log.changes:
        assert is_minimal(c, basis)
        assert (c.person, c.my_number, c.household_no, c.postcode) == (None, None, None, None)
        assert c.basis == basis
    text = repr(state.log.changes)
    for secret in ("市民", "花子", samples.my_number(), "H1", "070-0031", "神楽"):
        assert secret not in text


def test_the_reduced_log_does_not_depend_on_arrival_order() -> None:
    """A change without a basis (a 転出) arriving first is reduced once the basis is known, as if it came last."""
    logs = {fold(IN_2025, *order)[0].log for order in itertools.permutations((BIRTH, MOVED, FLAGGED, LEFT))}
    assert len(logs) == 1
    (log,) = logs
    assert all(c.next_municipality is None for c in log.changes)


def test_an_adult_is_kept_whole() -> None:
    adult = change(CT.MOVE_IN, date(2020, 4, 1), 9, person=BOY, my_number=samples.my_number(), household_no="H2")
    state, out = fold(IN_2025, adult)
    assert state.log.changes == (adult,)
    assert isinstance(out[0], m.ResidentState)
    assert out[0].person == BOY
    assert out[0].household_no == "H2"


def test_the_full_record_at_target_age_makes_the_person_known() -> None:
    """TARGET_AGE_REACHED (1 April 2026): the state is built on the minimal history, with the record's 支援措置."""
    minimal, _ = fold(IN_2025, BIRTH, MOVED)
    state, out = apply_change(minimal, FULL, IN_2026, started_year=0)
    resident = out[0]
    assert isinstance(resident, m.ResidentState)
    assert resident.person == FULL.person
    assert resident.my_number == samples.my_number()
    assert resident.household_no == "H1"
    assert resident.support_measure is True  # the record states the 支援措置 in force
    assert resident.resident_since == GIRL.birth_date  # from the minimal 出生
    assert resident.increase_reason is CT.BIRTH
    assert resident.version == 3
    assert [h.change_type for h in resident.history] == [CT.BIRTH, CT.MOVE_WITHIN, CT.TARGET_AGE_REACHED]
    assert basis_of(FULL) == state.log.basis()


def test_a_target_age_record_must_state_the_support_measure() -> None:
    with pytest.raises(ModelError, match="支援措置"):
        dataclasses.replace(FULL, support_measure=None)
    with pytest.raises(ModelError, match="basis"):
        dataclasses.replace(FULL, basis=m.TargetBasis(sex=m.Sex.FEMALE, birth_date=GIRL.birth_date))


def cervical(day: date, seq: int) -> m.ScreeningResult:
    """The girl's 子宮がん result of ``day``."""
    return result(
        m.ScreeningKind.CERVICAL, day=day, seq=seq, reception=f"R-{seq}", subject=GIRL, institution_code=FOLLOW_INST
    )


def error_reasons(out: list[m.Event]) -> tuple[m.ErrorReason, ...] | None:
    """The reasons of the first error among ``out`` (None: no error)."""
    errors = [e for e in out if isinstance(e, m.ScreeningError)]
    return errors[0].reasons if errors else None


def test_a_result_below_target_age_is_not_eligible_and_one_at_target_age_waits_for_the_record() -> None:
    minimal, _ = fold(IN_2025, BIRTH)
    _, out = apply_result(minimal, cervical(date(2025, 11, 4), 50), IN_2025, None)
    assert error_reasons(out) == (m.ErrorReason.NOT_ELIGIBLE_AGE,)
    # fiscal year 2026: she is a target, but the registry's full record has not come yet: the result waits
    waiting, out = apply_result(minimal, cervical(date(2026, 5, 7), 51), IN_2026, None)
    assert error_reasons(out) == (m.ErrorReason.UNKNOWN_PERSON,)
    full = dataclasses.replace(FULL, person=GIRL)
    _, out = apply_change(waiting, full, IN_2026, started_year=0)
    entries = [e for e in out if isinstance(e, m.LedgerEntry)]
    assert [(e.kind, e.fiscal_year) for e in entries] == [(m.ScreeningKind.CERVICAL, 2026)]
