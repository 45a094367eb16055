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
from processors.rules.invitations import invitations_for
from processors.rules.ledger import Context, LedgerBook, decode_book, encode_book, process_result
from processors.rules.residents import PersonLog
from schemas import models as m


@dataclass(frozen=True)
class PersonState:
    """One person's state: the change log (empty when 住基 has not spoken yet) and the ledger book."""

    log: PersonLog = field(default_factory=PersonLog)
    book: LedgerBook = field(default_factory=LedgerBook)


def apply_change(
    state: PersonState, change: m.ResidentChange, ctx: Context, *, started_year: int
) -> tuple[PersonState, list[m.Event]]:
    """A 住基異動: the new change log, the resident state to emit and, for a 転入 in a started year, its notices.

    ``started_year`` is the latest fiscal year whose 年度開始 this person's partition has seen (0: none yet).
    A duplicate change (same イベントID) changes nothing but re-emits the current state.
    """
    person_log, _new = state.log.add(change)
    resident = person_log.state()
    new_state = replace(state, log=person_log)
    if resident is None:
        return new_state, []
    out: list[m.Event] = [resident]
    year = fiscal_year(change.change_date)
    # A 転入 during a fiscal year already started is invited at once; earlier ones were (or will be) covered by
    # the 年度開始 command of their year.
    if change.change_type is m.ResidentChangeType.MOVE_IN and started_year and year >= started_year:
        out.extend(
            invitations_for(
                resident,
                state.book.entries,
                fiscal_year=year,
                trigger=m.InvitationTrigger.MOVE_IN,
                rules=ctx.rules,
            )
        )
    return new_state, out


def apply_result(
    state: PersonState, result: m.ScreeningResult, ctx: Context, source: m.SourcePointer | None
) -> tuple[PersonState, list[m.Event]]:
    """A result: 突合 against the change log and the book; the new book and the ledger / error / 副本 records."""
    person_log = state.log if state.log.changes else None
    book, out = process_result(state.book, result, person_log, ctx, source)
    return replace(state, book=book), out


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
