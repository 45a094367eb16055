"""がん検診台帳: a person's ledger book and what one result does to it. Pure functions.

A person's book holds their current ledger entries (one per kind × fiscal year), the results already seen and the
open screening errors of their 受付番号. Processing a result returns the new book and the records to emit. Every
record is deterministic (its イベントID derives from its key and version), and a result seen before re-emits the
same records: after a crash, replays are harmless downstream.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources

from hub.validation import fiscal_year, fiscal_year_end, legal_age
from processors.rules.eligibility import EligibilityRules, RulesError
from processors.rules.institutions import InstitutionRegistry
from processors.rules.matching import MatchOutcome, match
from processors.rules.residents import PersonLog
from schemas.models import (
    ErrorReason,
    ErrorStatus,
    Event,
    FukuhonOperation,
    FukuhonRegistration,
    LedgerEntry,
    LedgerFollowUp,
    ResultStage,
    ScreeningError,
    ScreeningResult,
    SourcePointer,
)

NAMESPACE = uuid.UUID("0b6f3c9e-54a1-4d0e-8f7b-5c2a9d1e3f47")
LEDGER_SOURCE = "kenshin-hub.ledger"
MATCHING_SOURCE = "kenshin-hub.matching"


def stable_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts))


@dataclass(frozen=True)
class FukuhonPolicy:
    version: str
    info_name_code: str
    dataset_item_code: str
    publication_years: int
    items: Mapping[str, str]


_ITEM_FIELDS = {
    "kind",
    "fiscal_year",
    "exam_date",
    "exam_age",
    "follow_up_required",
    "followup_exam_date",
    "followup_judgement",
    "stomach_method",
}


def load_fukuhon_policy() -> FukuhonPolicy:
    data = tomllib.loads(resources.files("processors.rules").joinpath("fukuhon.toml").read_text(encoding="utf-8"))
    items = data.get("items", {})
    if not items or not all(v in _ITEM_FIELDS for v in items.values()):
        raise RulesError(f"fukuhon.toml: items must map item codes to {sorted(_ITEM_FIELDS)}")
    code = data.get("info_name_code", "")
    if not (len(code) == 16 and code.startswith("TM") and code[2:].isdigit()):
        raise RulesError("fukuhon.toml: info_name_code must be 'TM' + 14 digits")
    return FukuhonPolicy(
        str(data["version"]), code, str(data["dataset_item_code"]), int(data["publication_years"]), dict(items)
    )


@dataclass(frozen=True)
class LedgerBook:
    entries: tuple[LedgerEntry, ...] = ()
    seen: frozenset[str] = frozenset()
    errors: tuple[ScreeningError, ...] = ()  # the latest error record of each 受付番号 of this person

    def entry(self, kind: str, year: int) -> LedgerEntry | None:
        return next((e for e in self.entries if e.kind == kind and e.fiscal_year == year), None)

    def error(self, reception_no: str) -> ScreeningError | None:
        return next((e for e in self.errors if e.reception_no == reception_no), None)


@dataclass(frozen=True)
class Context:
    rules: EligibilityRules
    institutions: InstitutionRegistry
    fukuhon: FukuhonPolicy


def _replace_entry(book: LedgerBook, entry: LedgerEntry) -> tuple[LedgerEntry, ...]:
    rest = tuple(e for e in book.entries if not (e.kind == entry.kind and e.fiscal_year == entry.fiscal_year))
    return tuple(sorted((*rest, entry), key=lambda e: (e.kind, e.fiscal_year)))


def _replace_error(book: LedgerBook, error: ScreeningError) -> tuple[ScreeningError, ...]:
    return (*(e for e in book.errors if e.reception_no != error.reception_no), error)


def fukuhon_for(entry: LedgerEntry, policy: FukuhonPolicy) -> FukuhonRegistration:
    values: dict[str, object] = {
        "kind": entry.kind.value,
        "fiscal_year": entry.fiscal_year,
        "exam_date": entry.exam_date.isoformat(),
        "exam_age": entry.exam_age,
        "follow_up_required": "1" if entry.primary.follow_up_required else "0",
        "followup_exam_date": entry.follow_up.exam_date.isoformat() if entry.follow_up else None,
        "followup_judgement": entry.follow_up.findings.judgement.value if entry.follow_up else None,
        "stomach_method": entry.primary.stomach.method.value if entry.primary.stomach else None,
    }
    data = {code: str(values[name]) for code, name in policy.items.items() if values[name] is not None}
    end_year = entry.fiscal_year + policy.publication_years
    return FukuhonRegistration(
        event_id=stable_id("fukuhon", entry.tenant, entry.atena_no, entry.kind, entry.fiscal_year, entry.version),
        occurred_at=entry.occurred_at,
        tenant=entry.tenant,
        source_system=LEDGER_SOURCE,
        record_id=f"KH{entry.tenant}{entry.atena_no}{entry.kind.value[:3]}{entry.fiscal_year}",
        atena_no=entry.atena_no,
        info_name_code=policy.info_name_code,
        dataset_item_code=policy.dataset_item_code,
        record_key=f"{entry.atena_no}:{entry.kind.value}:{entry.fiscal_year}",
        version=entry.version,
        publication_start=entry.occurred_at.date(),
        publication_end=fiscal_year_end(end_year),
        operation=FukuhonOperation.REGISTER if entry.version == 1 else FukuhonOperation.UPDATE,
        data=data,
    )


def _error(result: ScreeningResult, outcome: MatchOutcome, source: SourcePointer | None) -> ScreeningError:
    return ScreeningError(
        event_id=stable_id("error", result.tenant, result.reception_no, result.event_id),
        occurred_at=result.occurred_at,
        tenant=result.tenant,
        source_system=MATCHING_SOURCE,
        reception_no=result.reception_no,
        atena_no=result.atena_no,
        kind=result.kind,
        stage=result.stage,
        reasons=outcome.reasons,
        mismatched_fields=outcome.mismatched_fields,
        status=ErrorStatus.OPEN,
        detected_at=result.occurred_at,
        source=source,
        result_event_id=result.event_id,
    )


def _resolved(error: ScreeningError, result: ScreeningResult) -> ScreeningError:
    return replace(
        error,
        event_id=stable_id("resolved", error.tenant, error.reception_no, result.event_id),
        occurred_at=result.occurred_at,
        status=ErrorStatus.RESOLVED,
        resolved_at=result.occurred_at,
        resolved_by="resubmission",
        resolution="a corrected result with the same 受付番号 matched",
    )


def _new_version(old: LedgerEntry | None, new: LedgerEntry) -> LedgerEntry:
    """``new`` numbered after ``old``; ``old`` itself when nothing but the bookkeeping changed."""
    if old is not None:
        same = replace(
            new,
            event_id=old.event_id,
            occurred_at=old.occurred_at,
            version=old.version,
            source_event_id=old.source_event_id,
        )
        if same == old:
            return old
    version = 1 if old is None else old.version + 1
    key = (new.tenant, new.atena_no, new.kind, new.fiscal_year, version)
    return replace(new, version=version, event_id=stable_id("ledger", *key))


def _emit_entry(
    book: LedgerBook, old: LedgerEntry | None, entry: LedgerEntry, result: ScreeningResult, ctx: Context
) -> tuple[LedgerBook, list[Event]]:
    out: list[Event] = [entry]
    if entry is not old:
        out.append(fukuhon_for(entry, ctx.fukuhon))
    errors = book.errors
    open_error = book.error(result.reception_no)
    if open_error is not None and open_error.status is ErrorStatus.OPEN:
        resolved = _resolved(open_error, result)
        errors = _replace_error(book, resolved)
        out.append(resolved)
    return replace(book, entries=_replace_entry(book, entry), errors=errors), out


def _primary(
    book: LedgerBook, result: ScreeningResult, log: PersonLog | None, ctx: Context, source: SourcePointer | None
) -> tuple[LedgerBook, list[Event]]:
    year = fiscal_year(result.exam_date)
    current = book.entry(result.kind, year)
    attended = {e.fiscal_year for e in book.entries if e.kind == result.kind}
    outcome = match(result, log, rules=ctx.rules, institutions=ctx.institutions, attended_years=attended)
    if outcome.ok and current is not None and current.reception_no != result.reception_no:
        outcome = MatchOutcome((ErrorReason.INTERVAL_NOT_MET,))  # already screened this fiscal year
    if not outcome.ok:
        error = _error(result, outcome, source)
        return replace(book, errors=_replace_error(book, error)), [error]
    state = log.state() if log is not None else None
    if state is None or result.primary is None or result.setting is None:
        raise ValueError("a matched primary result has a resident and its findings")  # match() guarantees it
    entry = LedgerEntry(
        event_id=result.event_id,
        occurred_at=result.occurred_at,
        tenant=result.tenant,
        source_system=LEDGER_SOURCE,
        atena_no=result.atena_no,
        kind=result.kind,
        fiscal_year=year,
        version=1,
        person=state.person,
        reception_no=result.reception_no,
        exam_date=result.exam_date,
        exam_age=legal_age(state.person.birth_date, result.exam_date),
        institution_code=result.institution_code,
        institution_name=result.institution_name,
        setting=result.setting,
        primary=result.primary,
        follow_up=current.follow_up if current is not None else None,
        source_event_id=result.event_id,
    )
    return _emit_entry(book, current, _new_version(current, entry), result, ctx)


def _follow_up(
    book: LedgerBook, result: ScreeningResult, log: PersonLog | None, ctx: Context, source: SourcePointer | None
) -> tuple[LedgerBook, list[Event]]:
    primary = next(
        (e for e in book.entries if e.kind == result.kind and e.reception_no == result.primary_reception_no), None
    )
    outcome = match(result, log, rules=ctx.rules, institutions=ctx.institutions, has_primary=primary is not None)
    if not outcome.ok or primary is None:
        error = _error(result, outcome, source)
        return replace(book, errors=_replace_error(book, error)), [error]
    if result.follow_up is None:
        raise ValueError("a FOLLOW_UP result carries its findings")  # the model guarantees it
    follow = LedgerFollowUp(
        reception_no=result.reception_no,
        exam_date=result.exam_date,
        exam_age=legal_age(primary.person.birth_date, result.exam_date),
        institution_code=result.institution_code,
        institution_name=result.institution_name,
        findings=result.follow_up,
    )
    updated = replace(primary, follow_up=follow, occurred_at=result.occurred_at, source_event_id=result.event_id)
    return _emit_entry(book, primary, _new_version(primary, updated), result, ctx)


def process_result(
    book: LedgerBook, result: ScreeningResult, log: PersonLog | None, ctx: Context, source: SourcePointer | None
) -> tuple[LedgerBook, list[Event]]:
    """The book after ``result`` and the records to emit (the same records again for a result seen before)."""
    key = str(result.event_id)
    if key in book.seen:
        return book, replay(book, result)
    if result.stage is ResultStage.PRIMARY:
        book, out = _primary(book, result, log, ctx, source)
    else:
        book, out = _follow_up(book, result, log, ctx, source)
    return replace(book, seen=book.seen | {key}), out


def replay(book: LedgerBook, result: ScreeningResult) -> list[Event]:
    """What a result seen before stands for now: its 受付番号's error record, or the entry it fed."""
    out: list[Event] = []
    error = book.error(result.reception_no)
    if error is not None:
        out.append(error)
    for entry in book.entries:
        if entry.reception_no == result.reception_no or (
            entry.follow_up is not None and entry.follow_up.reception_no == result.reception_no
        ):
            out.append(entry)
    return out


def encode_book(book: LedgerBook) -> dict[str, object]:
    return {
        "entries": [e.to_json() for e in book.entries],
        "seen": sorted(book.seen),
        "errors": [e.to_json() for e in book.errors],
    }


def decode_book(data: Mapping[str, object] | None) -> LedgerBook:
    if not data:
        return LedgerBook()
    entries = tuple(LedgerEntry.from_json(str(x)) for x in _list(data.get("entries")))
    errors = tuple(ScreeningError.from_json(str(x)) for x in _list(data.get("errors")))
    return LedgerBook(entries=entries, seen=frozenset(str(x) for x in _list(data.get("seen"))), errors=errors)


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
