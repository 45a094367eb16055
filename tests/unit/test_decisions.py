"""エラー処理 as the processors apply it: staff decisions (受理, 訂正, 処理済, 取消) and the reception index.

The steps are folded with the processors' own loop (``tests.unit.test_order.run``: reception claims through the
index, SUPERSEDED back to the books), into what the SQL sinks end with; every scenario is also run in every order
of its inputs, and must end with the same tables.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.rules import steps
from processors.rules.decisions import packaged_decisions, parse_decisions
from processors.rules.eligibility import RulesError
from processors.rules.ledger import stable_id
from schemas import models as m
from schemas.record import ModelError
from tests import samples
from tests.unit.test_order import ATENA, CTX, Input, _move_in, _result, assert_same, run

pytestmark = pytest.mark.unit

WRONG = "0000000099"  # a 宛名番号 nobody has: the institution's typo
STAFF = "hoken01"
T = samples.TENANT
D = m.LedgerDecisionType


def _decision(kind: m.LedgerDecisionType, seq: int, reception: str = "R1", **over: Any) -> m.LedgerDecision:
    fields: dict[str, Any] = {
        "event_id": uuid.UUID(int=900 + seq),
        "occurred_at": datetime(2025, 9, 1, 9, seq, tzinfo=UTC),
        "tenant": T,
        "source_system": "kenshin-hub.staff",
        "atena_no": ATENA,
        "decision": kind,
        "reception_no": reception,
        "staff_id": STAFF,
        "reason": f"reason {seq}",
    }
    fields.update(over)
    return m.LedgerDecision(**fields)


def _correction(seq: int, of: m.ScreeningResult, **fields: str) -> m.LedgerDecision:
    """A 訂正 of ``of`` as staff send it: the corrected fields (``subject_name`` for ``subject.name``), to the book
    of ``of``'s 宛名番号 (the processors forward it when the 宛名番号 itself is corrected).
    """
    corrections = {k.replace("subject_", "subject."): v for k, v in fields.items()}
    return _decision(D.CORRECT, seq, of.reception_no, atena_no=of.atena_no, result_event_id=of.event_id,
                     corrections=corrections)  # fmt: skip


def _mistyped() -> m.ScreeningResult:
    """R1 with the kana mistyped (KANA_MISMATCH, which staff may accept)."""
    return _result(1, subject=samples.person(birth_date=_move_in().person.birth_date, name_kana="アサヒカワ ハナユ"))


def _every_order(inputs: list[m.Event]) -> dict[str, Any]:
    """The tables of ``inputs`` in their order, checked equal to those of every other order."""
    first, _ = run([(e, None) for e in inputs])  # type: ignore[misc]
    for order in itertools.permutations(inputs):
        tables, _ = run([(e, None) for e in order])  # type: ignore[misc]
        assert_same(tables, first)
    return first


def _error(tables: dict[str, Any], atena: str = ATENA, reception: str = "R1") -> dict[str, Any]:
    row: dict[str, Any] = tables["errors"][(T, reception, atena)]
    return row


def _entries(tables: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(k[1], k[2]): row for k, row in tables["ledger"].items()}


# --- the phantom error: a result resubmitted under the right 宛名番号 -------------------------------------------


def test_a_result_resubmitted_under_the_right_atena_resolves_the_error_of_the_wrong_one_in_any_order() -> None:
    wrong = _result(1, atena_no=WRONG)  # nobody: UNKNOWN_PERSON, an OPEN error in the wrong person's book
    right = _result(2)  # the same 受付番号, later, under the right 宛名番号
    alone, _ = run([(_move_in(), None), (wrong, None)])
    assert _error(alone, WRONG)["status"] == "OPEN"
    tables = _every_order([_move_in(), wrong, right])
    assert list(tables["errors"]) == [(T, "R1", WRONG)]  # none in the right person's book
    error = _error(tables, WRONG)
    assert (error["status"], error["atena_no"], error["resolved_by"]) == ("RESOLVED", WRONG, "resubmission")
    assert f"宛名番号 {ATENA}" in error["resolution"]
    assert set(_entries(tables)) == {(ATENA, "COLORECTAL")}


def test_a_result_first_sent_to_an_existing_person_leaves_their_ledger_when_resubmitted_under_another() -> None:
    other = "0000000077"
    sent = _result(1, atena_no=other, subject=samples.person(birth_date=_move_in().person.birth_date))
    moved_in_other = _move_in(5, atena_no=other)
    again = _result(2)
    tables = _every_order([_move_in(), moved_in_other, sent, again])
    assert set(_entries(tables)) == {(ATENA, "COLORECTAL")}  # not the other person's any more
    assert not tables["errors"]  # it matched in both books: no error stands at the end
    # the other person's 副本 was deleted: only the right person's is published
    assert {key.split(":")[0] for key, *_ in tables["fukuhon"].values()} == {ATENA}


# --- staff decisions ------------------------------------------------------------------------------------------


def test_a_correction_of_the_atena_moves_the_result_and_resolves_the_error_as_the_staffs() -> None:
    wrong = _result(1, atena_no=WRONG)
    fix = _correction(3, wrong, atena_no=ATENA)
    tables = _every_order([_move_in(), wrong, fix])
    assert list(tables["errors"]) == [(T, "R1", WRONG)]
    error = _error(tables, WRONG)
    assert (error["status"], error["atena_no"], error["resolved_by"]) == ("RESOLVED", WRONG, STAFF)
    assert error["resolution"].startswith("訂正")
    [entry] = _entries(tables).values()
    assert entry["source_event_id"] == str(stable_id("corrected", fix.event_id))  # the corrected submission


def test_a_correction_of_the_fields_makes_a_new_version_with_who_and_why() -> None:
    mistyped = _mistyped()
    fix = _correction(3, mistyped, subject_name_kana=_move_in().person.name_kana)
    state_before, _ = run([(_move_in(), None), (mistyped, None)])
    assert _error(state_before)["reasons"] == "KANA_MISMATCH"
    tables, states = run([(_move_in(), None), (mistyped, None), (fix, None)])
    error = _error(tables)
    assert (error["status"], error["resolved_by"]) == ("RESOLVED", STAFF)
    [entry] = states[ATENA].book.entries
    assert (entry.decided_by, entry.decision_reason) == (STAFF, "reason 3")
    assert entry.source_event_id == stable_id("corrected", fix.event_id)
    assert entry.person.name_kana == _move_in().person.name_kana
    assert_same(tables, _every_order([_move_in(), mistyped, fix]))


def test_a_correction_that_makes_no_valid_result_is_refused_and_changes_nothing() -> None:
    mistyped = _mistyped()
    _, states = run([(_move_in(), None), (mistyped, None)])
    bad = _correction(3, mistyped, exam_date="2025-13-01")
    with pytest.raises(ValueError, match="month"):
        steps.apply_decision(states[ATENA], bad, CTX)


def test_an_accepted_result_enters_the_ledger_with_the_staff_and_reason() -> None:
    mistyped = _mistyped()
    accept = _decision(D.ACCEPT, 4, result_event_id=mistyped.event_id)
    tables = _every_order([_move_in(), mistyped, accept])
    error = _error(tables)
    assert (error["status"], error["resolved_by"], error["reasons"]) == ("RESOLVED", STAFF, "KANA_MISMATCH")
    assert error["resolution"] == "受理: reason 4"
    assert set(_entries(tables)) == {(ATENA, "COLORECTAL")}


def test_an_acceptance_does_not_cover_reasons_fixed_at_their_source_nor_a_later_submission() -> None:
    unknown_inst = _result(1, institution_code="0119999999")
    accept = _decision(D.ACCEPT, 4, result_event_id=unknown_inst.event_id)
    tables, _ = run([(_move_in(), None), (unknown_inst, None), (accept, None)])
    assert _error(tables)["status"] == "OPEN"
    assert not tables["ledger"]
    # bound to the submission it was made on: a later one of the 受付番号 is matched on its own
    mistyped = _mistyped()
    accepted = _decision(D.ACCEPT, 4, result_event_id=mistyped.event_id)
    resent = _result(2, subject=samples.person(birth_date=_move_in().person.birth_date, name="別人 花子"))
    tables = _every_order([_move_in(), mistyped, accepted, resent])
    assert (_error(tables)["status"], _error(tables)["reasons"]) == ("OPEN", "NAME_MISMATCH")
    assert not tables["ledger"]


def test_a_void_takes_the_entry_out_with_a_fukuhon_delete_and_a_resubmission_brings_it_back() -> None:
    clean = _result(1)
    void = _decision(D.VOID, 5)  # the submissions of R1 made up to it
    before, _ = run([(_move_in(), None), (clean, None)])
    assert before["ledger"]
    assert before["fukuhon"]
    tables, states = run([(_move_in(), None), (clean, None), (void, None)])
    assert not tables["ledger"]
    assert not tables["fukuhon"]  # the 副本's latest version is a DELETE
    assert not tables["errors"]
    assert states[ATENA].book.entries == ()
    assert_same(tables, _every_order([_move_in(), clean, void]))
    resent = _result(2, occurred_at=datetime(2025, 10, 1, tzinfo=UTC))  # sent again after the 取消
    again = _every_order([_move_in(), clean, void, resent])
    assert set(_entries(again)) == {(ATENA, "COLORECTAL")}


def test_a_resolved_error_stays_resolved_by_the_staff_and_out_of_the_ledger() -> None:
    mistyped = _mistyped()
    resolve = _decision(D.RESOLVE, 6, result_event_id=mistyped.event_id)
    tables = _every_order([_move_in(), mistyped, resolve])
    error = _error(tables)
    assert (error["status"], error["resolved_by"], error["resolution"]) == ("RESOLVED", STAFF, "処理済: reason 6")
    assert not tables["ledger"]


def test_a_decision_delivered_twice_changes_nothing() -> None:
    mistyped = _mistyped()
    accept = _decision(D.ACCEPT, 4, result_event_id=mistyped.event_id)
    inputs: list[Input] = [(_move_in(), None), (mistyped, None), (accept, None)]
    once, states = run(inputs)
    twice, again = run([*inputs, (accept, None)])
    assert_same(twice, once)
    assert again[ATENA] == states[ATENA]


# --- the contract and the data file ---------------------------------------------------------------------------


def test_a_decision_must_say_who_why_and_on_what() -> None:
    with pytest.raises(ModelError, match="staff member"):
        _decision(D.ACCEPT, 1, result_event_id=uuid.uuid4(), reason=" ")
    with pytest.raises(ModelError, match="result_event_id"):
        _decision(D.RESOLVE, 1)
    with pytest.raises(ModelError, match="corrected fields or the corrected result"):
        _decision(D.CORRECT, 1)
    wrong = _result(1, atena_no=WRONG)
    with pytest.raises(ModelError, match="宛名番号"):
        _decision(D.CORRECT, 1, result=wrong)  # keyed by ATENA, but the result is WRONG's
    with pytest.raises(ModelError, match="cannot be corrected: kind"):
        _decision(D.CORRECT, 1, result_event_id=wrong.event_id, corrections={"kind": "LUNG"})
    with pytest.raises(ModelError, match="SUPERSEDED"):
        _decision(D.SUPERSEDED, 1, result_event_id=uuid.uuid4(), staff_id=None, reason=None)


def test_the_acceptable_reasons_are_validated_on_load() -> None:
    rules = packaged_decisions()
    assert rules.accepts([m.ErrorReason.KANA_MISMATCH, m.ErrorReason.NOT_ELIGIBLE_AGE])
    assert not rules.accepts([m.ErrorReason.KANA_MISMATCH, m.ErrorReason.UNKNOWN_PERSON])
    assert not rules.accepts([])
    with pytest.raises(RulesError, match="fixed at its source"):
        parse_decisions('version = "x"\nacceptable = ["UNKNOWN_PERSON"]')
    with pytest.raises(RulesError, match="not an error reason"):
        parse_decisions('version = "x"\nacceptable = ["TYPO"]')
    with pytest.raises(RulesError, match="twice"):
        parse_decisions('version = "x"\nacceptable = ["NAME_MISMATCH", "NAME_MISMATCH"]')
