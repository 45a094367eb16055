"""The processors' steps as pure functions over one person's state: what the runtime shell calls per event.

A person's processor state is their 住基 change log and their ledger book (:class:`PersonState`). Each step takes
the state and one event and returns the new state and the records to emit. The shell (``processors.app``) loads the
states of a batch's people from its store, runs these steps in offset order, and writes the changed states back in
the same transaction as the batch's outputs. Tests fold the same steps in memory (no broker), so what the property
tests prove about them is what runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from hub.validation import fiscal_year
from processors.rules.invitations import invitations_for, notice_decision
from processors.rules.ledger import (
    BookChanges,
    Context,
    LedgerBook,
    add_decision,
    add_history,
    book_changes,
    claims,
    corrected_claims,
    decode_book,
    encode_book,
    forwards,
    process_result,
    rematch,
)
from processors.rules.residents import PersonLog, fold, order_key
from schemas import models as m


@dataclass(frozen=True)
class PersonState:
    """One person's state: the change log (empty when 住基 has not spoken yet) and the ledger book."""

    log: PersonLog = field(default_factory=PersonLog)
    book: LedgerBook = field(default_factory=LedgerBook)


def apply_change(
    state: PersonState, change: m.ResidentChange, ctx: Context, *, started_year: int
) -> tuple[PersonState, list[m.Event]]:
    """A 住基異動: the new change log, the resident state to emit, for a 転入 in a started year its notices, and
    what matching the person's results again against the new log changes in the ledger and the errors.

    ``started_year`` is the latest fiscal year whose 年度開始 this person's partition has seen (0: none yet).
    A duplicate change (same イベントID) changes nothing but re-emits the current state (and the 転入's notices).
    The notices of a 転入 are those of the person as registered by it (the changes dated up to it), so a 転出 that
    arrives first does not take them away.
    """
    person_log, new = state.log.add(change)
    person_log, _ = person_log.minimised(ctx.in_scope)  # below target age: the minimal basis only
    resident = person_log.state()
    out: list[m.Event] = [resident] if resident is not None else []
    year = fiscal_year(change.change_date)
    # A 転入 during a fiscal year already started is invited at once; earlier ones were (or will be) covered by
    # the 年度開始 command of their year.
    if change.change_type is m.ResidentChangeType.MOVE_IN and started_year and year >= started_year:
        moved_in = fold(c for c in person_log.changes if order_key(c) <= order_key(change))
        if moved_in is not None:
            out.extend(
                invitations_for(
                    replace(moved_in, occurred_at=change.occurred_at),
                    state.book.entries,
                    fiscal_year=year,
                    trigger=m.InvitationTrigger.MOVE_IN,
                    rules=ctx.rules,
                    elsewhere=state.book.elsewhere,
                )
            )
    book = state.book
    if new:
        book, matched = rematch(state.book, person_log, ctx)
        out.extend(matched)
    return replace(state, log=person_log, book=book), out


def apply_result(
    state: PersonState, result: m.ScreeningResult, ctx: Context, source: m.SourcePointer | None
) -> tuple[PersonState, list[m.Event]]:
    """A result: 突合 against the change log and the book; the new book and the ledger / error / 副本 records.

    The result is kept in the book whatever its outcome (a failing one waits for the data that may make it match);
    ``source`` is where it was read, carried by its error records. A new result that is the person's latest
    submission of its 受付番号 is also claimed for the reception index (:mod:`processors.rules.receptions`).
    """
    person_log = state.log if state.log.changes else None
    known = state.book.received(result.event_id) is not None or str(result.event_id) in state.book.seen
    book, out = process_result(state.book, result, person_log, ctx, source)
    if not known:
        out += claims(book, result) + corrected_claims(book, result.event_id) + forwards(book, result.event_id)
    return replace(state, book=book), out


def apply_history(state: PersonState, history: m.ScreeningHistory, ctx: Context) -> tuple[PersonState, list[m.Event]]:
    """A screening from the previous municipality (転入前の受診履歴): kept in the book, where it counts for the
    interval rule of the person's results and for their notices; the records that this changes.

    A 転入's own notices go out when the 転入 arrives, usually before its history does: those it cannot take back.
    """
    person_log = state.log if state.log.changes else None
    book, out = add_history(state.book, history, person_log, ctx)
    return replace(state, book=book), out


def apply_decision(state: PersonState, decision: m.LedgerDecision, ctx: Context) -> tuple[PersonState, list[m.Event]]:
    """A decision on one of the person's 受付番号 (staff's エラー処理, or SUPERSEDED from the reception index): the
    new book and the records that changed (entries with their 副本, errors, and a 訂正's reception claim).
    """
    person_log = state.log if state.log.changes else None
    new = state.book.decision(decision.event_id) is None
    book, out = add_decision(state.book, decision, person_log, ctx)
    if new and decision.decision is m.LedgerDecisionType.CORRECT:  # a 訂正 is a submission of its own
        if decision.result is not None:  # forwarded here: the reception index hears of it
            out += claims(book, decision.result, decision.staff_id)
        else:  # the fields staff corrected: a submission here, or forwarded to the corrected 宛名番号
            out += corrected_claims(book, decision.event_id) + forwards(book, decision.event_id)
    return replace(state, book=book), out


def apply_notice_request(state: PersonState, request: m.NoticeRequest, ctx: Context) -> list[m.Event]:
    """繰越受診通知の申出: the notice and the decision, or the decision refused (the state does not change)."""
    return list(notice_decision(request, state.log.state(), state.book.entries, state.book.elsewhere, ctx.rules))


def waiting(state: PersonState) -> tuple[m.ScreeningError, ...]:
    """The person's open errors that only wait for data (住基待ち / 1次待ち), for staff views."""
    return state.book.waiting()


def changes(before: PersonState, after: PersonState) -> BookChanges:
    """What a step changed in the person's ledger and errors, as an operator counts it (metrics)."""
    return book_changes(before.book, after.book)


def year_start_notices(state: PersonState, year: int, ctx: Context) -> list[m.Invitation]:
    """年度開始: this person's 受診勧奨 and 繰越受診通知 for ``year`` (none for non-residents)."""
    resident = state.log.state()
    if resident is None:
        return []
    return invitations_for(
        resident,
        state.book.entries,
        fiscal_year=year,
        trigger=m.InvitationTrigger.FISCAL_YEAR_START,
        rules=ctx.rules,
        elsewhere=state.book.elsewhere,
    )


# --- the stored form of a state ------------------------------------------------------------------------------


def encode_log(person_log: PersonLog) -> str:
    return json.dumps([c.to_json() for c in person_log.changes], ensure_ascii=False)


def decode_log(text: str | None) -> PersonLog:
    if not text:
        return PersonLog()
    return PersonLog(tuple(m.ResidentChange.from_json(x) for x in json.loads(text)))


def encode_state_book(book: LedgerBook) -> str:
    return json.dumps(encode_book(book), ensure_ascii=False)


def decode_state_book(text: str | None) -> LedgerBook:
    return decode_book(json.loads(text)) if text else LedgerBook()
