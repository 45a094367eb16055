"""がん検診台帳: a person's ledger book, derived from everything known about them. Pure functions.

A person's book keeps every distinct result received for them (with where it was read), and what was last emitted
from them: the standing ledger entries (one per kind × fiscal year) and the standing screening errors (one per
受付番号). After every event the book is derived again from the person's 住基 change log and all their results
(:func:`derive`), and the records that changed are emitted (:func:`settle`). The derivation depends on the *set* of
inputs, never on the order they arrived in, so the final tables are the same whatever the interleaving of
``juki.resident-changes.v1`` and ``institution.results.v1`` (proved by ``tests/unit/test_order.py``):

* **訂正 (correction).** The submissions of one 受付番号 are ordered by (発生日時 ``occurred_at``, イベントID)
  (:func:`correction_order`): the greatest one stands for the 受付番号, the earlier ones are superseded, whatever
  order they arrive in. The contract has no correction flag: a re-submission with the same 受付番号 *is* the
  correction (``screening_result.avsc``); the イベントID only breaks a tie of identical timestamps.
* **Waiting (pending).** A result that does not match is kept, and matched again whenever the person's log or their
  other results change: one that arrived before the 転入/出生 that registers its person (UNKNOWN_PERSON), before the
  転入 that makes them resident on the exam date (NOT_RESIDENT_ON_EXAM_DATE), before a 転居 or 氏名変更 it already
  reflects, or a 精検 before its 1次 (NO_PRIMARY_FOR_FOLLOW_UP), enters the ledger when that data arrives. Most
  reasons depend on 住基 data or on other results (a 精検's FOLLOW_UP_WITHOUT_REFERRAL on what its 1次, or a
  correction of it, said), so every failing result is re-matched, not only the "waiting" ones;
  ``matching.WAITING_REASONS`` names the reasons that usually mean the data has not arrived yet. Until it matches,
  a result stands as an OPEN error: staff see it (:meth:`LedgerBook.waiting`).
* **Placing primaries.** Each kind's standing primaries are placed in exam order (受診日, 受付番号): the first one
  that matches holds its fiscal year (a later one of that year gets INTERVAL_NOT_MET) and the interval rule looks at
  the years held before it. A follow-up attaches to the entry of its 1次's 受付番号 (the latest attaching one in
  exam order when there are several) if that 1次 said 要精検 (``follow_up_required``), and it matches: from an
  institution registered for 精検, with the items of its kind (``items.toml``).
* **Errors.** A 受付番号 whose standing submission fails has an OPEN error; one whose standing submission matches
  after an earlier one failed has a RESOLVED one (``resolved_by="resubmission"``); any other has none, and an error
  that was raised for it is withdrawn (:class:`ErrorWithdrawn`). So an error that was only waiting ends as if it had
  never been raised.
* **Withdrawal.** An entry that no longer stands (its 受付番号 corrected into another year, a 転出 dated before the
  exam arriving late, an earlier exam of the same year arriving late, …) is withdrawn (:class:`EntryWithdrawn` and a
  副本 DELETE).

Versions and ranks. An entry's ``version`` is a logical clock of the inputs it depends on (:func:`entry_version`): the
person's 住基 changes plus the results of its kind up to its fiscal year (with every submission of their 受付番号),
minus one, so the first entry of a person with one 住基 record is version 1. It grows with every such input, so every
emitted state outranks the ones before it, and it ends the same in every order; an entry is emitted again when its
clock moved, even with unchanged content, so that the final row carries the final clock. A 副本 is emitted only when
its content changes (numbered with the entry's version at the time, so its numbers may skip). An error's
``detected_at`` is the 発生日時 of the 受付番号's standing submission, which only grows; for a given standing
submission the later record wins. Every record's イベントID derives from its content, so a replay is harmless.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from importlib import resources

from hub.validation import JST, fiscal_year, fiscal_year_end, legal_age
from processors.rules.decisions import DecisionRules, packaged_decisions
from processors.rules.eligibility import EligibilityRules, RulesError
from processors.rules.institutions import InstitutionRegistry
from processors.rules.items import ItemRules, packaged_items
from processors.rules.matching import WAITING_REASONS, MatchOutcome, match
from processors.rules.residents import PersonLog
from schemas.models import (
    ErrorReason,
    ErrorStatus,
    Event,
    FukuhonOperation,
    FukuhonRegistration,
    LedgerDecision,
    LedgerDecisionType,
    LedgerEntry,
    LedgerFollowUp,
    PersonIdentity,
    ReceptionClaim,
    ResultStage,
    ScreeningError,
    ScreeningHistory,
    ScreeningKind,
    ScreeningResult,
    Sex,
    SourcePointer,
)
from schemas.record import ModelError

NAMESPACE = uuid.UUID("0b6f3c9e-54a1-4d0e-8f7b-5c2a9d1e3f47")
LEDGER_SOURCE = "kenshin-hub.ledger"
MATCHING_SOURCE = "kenshin-hub.matching"
RESUBMISSION = "resubmission"  # resolved_by of an error settled by a later submission of its 受付番号 (not by staff)
RESOLVED_NOTE = "a corrected result with the same 受付番号 matched"
WITHDRAWN_NOTE = "取消: the 受付番号's standing result matches now (later 住基 or 1次 data, or a correction)"

Key = tuple[ScreeningKind, int]  # (kind, fiscal year) of a ledger entry
EntryOf = tuple[ScreeningKind, str]  # (kind, 受付番号) of the primary holding an entry


def stable_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts))


def correction_order(result: ScreeningResult) -> tuple[datetime, str]:
    """Order of the submissions of one 受付番号: the greatest stands, the others are superseded."""
    return (result.occurred_at, str(result.event_id))


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


# --- what a book holds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A result as the book keeps it: where it was read, and whether it is trusted without matching.

    ``trusted`` results are rebuilt from the entries of a book stored before books kept their results: they matched
    then, and are not matched again (they still take part in placing primaries and attaching follow-ups).
    """

    result: ScreeningResult
    source: SourcePointer | None = None
    trusted: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "result": self.result.to_json(),
            "source": self.source.to_json() if self.source is not None else None,
            "trusted": self.trusted,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Received:
        source = data.get("source")
        return cls(
            result=ScreeningResult.from_json(str(data["result"])),
            source=SourcePointer.from_json(str(source)) if source else None,
            trusted=bool(data.get("trusted", False)),
        )


def _key_text(kind: ScreeningKind, year: int) -> str:
    return f"{kind.value}:{year}"


@dataclass(frozen=True)
class LedgerBook:
    """One person's book: every result received, and the entries and errors that stood when it was last settled."""

    entries: tuple[LedgerEntry, ...] = ()  # standing entries as last emitted, by (kind, fiscal year)
    seen: frozenset[str] = frozenset()  # イベントID of every result received (also before books kept results)
    errors: tuple[ScreeningError, ...] = ()  # the standing error record of each 受付番号, as last emitted
    results: tuple[Received, ...] = ()  # every distinct result received, by イベントID
    registered: frozenset[str] = frozenset()  # "KIND:year" of every entry that has had a 副本
    bases: tuple[tuple[str, int], ...] = ()  # "KIND:year" -> version offset of the entries of a book stored before
    # (kind, fiscal year, 団体コード) of each screening the person had in the municipality they came from (転入前の
    # 受診履歴, ledger.history.v1): they count for the interval rule and the notices, never as entries of this city
    elsewhere: tuple[tuple[str, int, str], ...] = ()
    # every decision on a 受付番号 of this person, by イベントID: staff's (受理, 訂正, 処理済, 取消) and the matching's
    # SUPERSEDED (a later submission of the 受付番号 stands under another 宛名番号); see :func:`derive`
    decisions: tuple[LedgerDecision, ...] = ()

    def all_results(self) -> tuple[Received, ...]:
        """Every submission: the results received and the staff's corrections (a 訂正 is a submission of its own),
        those that stay under this person's 宛名番号 (the others are forwarded: :func:`forwards`).
        """
        if not self.decisions:
            return self.results
        corrected = [Received(r) for d, r in self.corrected() if r.atena_no == d.atena_no]
        return (*self.results, *corrected) if corrected else self.results

    def corrected(self) -> list[tuple[LedgerDecision, ScreeningResult]]:
        """Each 訂正 with its corrected submission: as forwarded, or built from the submission it corrects (once that
        is in the book; a correction of a correction too). One that does not make a valid result is left out
        (it was refused when it arrived, :func:`add_decision`).
        """
        fixes = sorted((d for d in self.decisions if d.decision is LedgerDecisionType.CORRECT), key=decision_order)
        if not fixes:
            return []
        known = {r.result.event_id: r.result for r in self.results}
        out: list[tuple[LedgerDecision, ScreeningResult]] = []
        for d in fixes:
            if d.result is not None:
                out.append((d, d.result))
                continue
            of = known.get(d.result_event_id) if d.result_event_id is not None else None
            if of is None:
                continue  # the submission it corrects has not arrived yet
            try:
                fixed = correct(of, d)
            except (ModelError, ValueError):
                continue
            known[fixed.event_id] = fixed
            out.append((d, fixed))
        return out

    def decision(self, event_id: uuid.UUID) -> LedgerDecision | None:
        return next((d for d in self.decisions if d.event_id == event_id), None)

    def attended_elsewhere(self, kind: ScreeningKind) -> set[int]:
        return {year for k, year, _ in self.elsewhere if k == kind.value}

    def entry(self, kind: str, year: int) -> LedgerEntry | None:
        return next((e for e in self.entries if e.kind == kind and e.fiscal_year == year), None)

    def error(self, reception_no: str) -> ScreeningError | None:
        return next((e for e in self.errors if e.reception_no == reception_no), None)

    def received(self, event_id: uuid.UUID) -> Received | None:
        return next((r for r in self.results if r.result.event_id == event_id), None)

    def submissions(self, reception_no: str) -> list[Received]:
        """The submissions of ``reception_no``, in correction order (the last one stands)."""
        subs = [r for r in self.all_results() if r.result.reception_no == reception_no]
        return sorted(subs, key=lambda r: correction_order(r.result))

    def waiting(self) -> tuple[ScreeningError, ...]:
        """The OPEN errors that only wait for data (every reason is a waiting one): 住基/1次待ち for staff."""
        return tuple(e for e in self.errors if e.status is ErrorStatus.OPEN and set(e.reasons) <= WAITING_REASONS)


@dataclass(frozen=True, kw_only=True)
class EntryWithdrawn(Event):
    """取消 of a ledger entry: ``entry`` (as it last stood, numbered with this withdrawal's version) no longer stands.

    Published (:func:`published`) as ``replace(entry, withdrawn=True)`` on ``ledger.entries.v1``; the ledger sink
    deletes the row when the withdrawal's version is at least the stored one.
    """

    entry: LedgerEntry


@dataclass(frozen=True, kw_only=True)
class ErrorWithdrawn(Event):
    """取消 of a screening error: the error of ``error.reception_no`` no longer stands (its row goes).

    Published (:func:`published`) as ``replace(error, status=WITHDRAWN)`` on ``screening.errors.v1``; the errors sink
    deletes the row when the record ranks at least as high as the stored one. ``error.detected_at`` is the 発生日時
    of the 受付番号's standing submission.
    """

    error: ScreeningError


def published(event: Event) -> Event:
    """The record as it goes on its topic: a withdrawal as its entry / error marked withdrawn, others as they are."""
    if isinstance(event, EntryWithdrawn):
        return replace(event.entry, withdrawn=True)
    if isinstance(event, ErrorWithdrawn):
        return replace(event.error, status=ErrorStatus.WITHDRAWN)
    return event


@dataclass(frozen=True)
class Context:
    rules: EligibilityRules
    institutions: InstitutionRegistry
    fukuhon: FukuhonPolicy
    items: ItemRules = field(default_factory=packaged_items)  # 別添1 items per kind (``items.toml``)
    decisions: DecisionRules = field(default_factory=packaged_decisions)  # what staff may accept (decisions.toml)
    today: Callable[[], date] = field(default=lambda: datetime.now(JST).date())  # the city's date (scope)

    def in_scope(self, sex: Sex, birth: date) -> bool:
        """Whether a person of this 性別 and 生年月日 can be a target this fiscal year (else: kept minimal)."""
        return self.rules.can_be_target(sex, birth, fiscal_year(self.today()))


# --- 副本 ------------------------------------------------------------------------------------------------------


def fukuhon_for(entry: LedgerEntry, policy: FukuhonPolicy, operation: FukuhonOperation) -> FukuhonRegistration:
    """The 副本 of ``entry``, numbered with its version.

    ``operation`` is the caller's: REGISTER for the first 副本 of a record id, UPDATE for the later ones, DELETE for a
    withdrawn entry (:func:`settle` knows which from ``LedgerBook.registered``). The version alone cannot tell: an
    entry's first version is a count of inputs and may be above 1 (a result that waited for its 転入, a correction
    that arrived first), and the 中間サーバー refuses a second REGISTER of a record id.
    """
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
        operation=operation,
        data=data,
    )


def _same_copy(a: FukuhonRegistration, b: FukuhonRegistration) -> bool:
    """Whether two 副本 of a record say the same (apart from their version and bookkeeping)."""
    return replace(a, event_id=b.event_id, occurred_at=b.occurred_at, version=b.version, operation=b.operation) == b


# --- the derivation ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """What a book's inputs stand for: the entries and the error records, before comparing with what was emitted."""

    entries: Mapping[Key, LedgerEntry]
    errors: Mapping[str, ScreeningError]


def _by_reception(results: Iterable[Received]) -> dict[str, list[Received]]:
    out: dict[str, list[Received]] = {}
    for r in results:
        out.setdefault(r.result.reception_no, []).append(r)
    for subs in out.values():
        subs.sort(key=lambda r: correction_order(r.result))
    return out


def entry_version(book: LedgerBook, key: Key, log: PersonLog | None) -> int:
    """The logical clock of the entry ``key``: what it depends on, counted (see the module docstring).

    Counted: every 住基 change of the person, every screening of the entry's kind up to its fiscal year received
    from the previous municipality, and every submission of a 受付番号 that has a primary of the entry's
    kind up to its fiscal year, or a follow-up of that kind pointing to one; minus one (plus an offset for books
    stored before books kept their results). Nothing else can change the entry, so it grows with every input that
    can, and it is the same whatever the order the inputs arrived in.
    """
    kind, year = key
    results = [r.result for r in book.all_results()]
    primaries = {
        r.reception_no
        for r in results
        if r.stage is ResultStage.PRIMARY and r.kind is kind and fiscal_year(r.exam_date) <= year
    }
    counted = primaries | {
        r.reception_no
        for r in results
        if r.stage is ResultStage.FOLLOW_UP and r.kind is kind and r.primary_reception_no in primaries
    }
    base = dict(book.bases).get(_key_text(kind, year), 0)
    changes = len(log.changes) if log is not None else 0
    elsewhere = sum(1 for k, y, _ in book.elsewhere if k == kind.value and y <= year)
    decided = sum(  # a 訂正 counts as the submission it makes
        1 for d in book.decisions if d.decision is not LedgerDecisionType.CORRECT and d.reception_no in counted
    )
    return base + changes + elsewhere + decided + sum(1 for r in results if r.reception_no in counted) - 1


# --- decisions on a 受付番号 ----------------------------------------------------------------------------------------

DECISION_LABEL = {
    LedgerDecisionType.ACCEPT: "受理",
    LedgerDecisionType.CORRECT: "訂正",
    LedgerDecisionType.RESOLVE: "処理済",
    LedgerDecisionType.VOID: "取消",
}
_STAFF = frozenset(DECISION_LABEL)


def decision_order(d: LedgerDecision) -> tuple[datetime, str]:
    return (d.occurred_at, str(d.event_id))


def correct(of: ScreeningResult, d: LedgerDecision) -> ScreeningResult:
    """The submission ``of`` with the fields of the 訂正 ``d`` corrected: a new submission of its 受付番号, made by
    the staff member at the decision's time (a :class:`ModelError` / ``ValueError`` when the fields do not make a
    valid result).
    """
    fields = dict(d.corrections or {})
    subject = of.subject
    changes: dict[str, object] = {}
    for name, value in fields.items():
        if name.startswith("subject."):
            attr = name.removeprefix("subject.")
            typed: object = value
            if attr == "birth_date":
                typed = date.fromisoformat(value)
            elif attr == "sex":
                typed = Sex(value)
            subject = replace(subject, **{attr: typed})  # type: ignore[arg-type]
        elif name == "exam_date":
            changes[name] = date.fromisoformat(value)
        else:
            changes[name] = value or None if name == "primary_reception_no" else value
    return replace(
        of,
        event_id=stable_id("corrected", d.event_id),
        occurred_at=d.occurred_at,
        source_system=d.source_system,
        subject=subject,
        **changes,  # type: ignore[arg-type]
    )


def forwards(book: LedgerBook, cause: uuid.UUID) -> list[Event]:
    """The 訂正 that move a submission to another 宛名番号, as forwarded to that person's 台帳 (the corrected result
    whole; the same イベントID whenever they are sent again, so a second copy changes nothing): those that ``cause``
    (the 訂正 itself, or the submission it corrects arriving after it) makes.
    """
    return [
        replace(
            d,
            event_id=stable_id("forwarded", d.event_id),
            atena_no=fixed.atena_no,
            result=fixed,
            corrections=None,
        )
        for d, fixed in book.corrected()
        if d.result is None and fixed.atena_no != d.atena_no and cause in (d.event_id, d.result_event_id)
    ]


def corrected_claims(book: LedgerBook, cause: uuid.UUID) -> list[Event]:
    """The reception claims of the corrections that stay with this person that ``cause`` makes (see forwards)."""
    out: list[Event] = []
    for d, fixed in book.corrected():
        if fixed.atena_no == d.atena_no and cause in (d.event_id, d.result_event_id):
            out += claims(book, fixed, d.staff_id)
    return out


def mark_order(d: LedgerDecision) -> tuple[datetime, str]:
    """Where a SUPERSEDED mark sits in the correction order of its 受付番号 (that of the submission elsewhere)."""
    return (d.superseded_at or d.occurred_at, str(d.result_event_id))


@dataclass(frozen=True)
class Decisions:
    """A book's decisions as :func:`derive` uses them."""

    on: Mapping[uuid.UUID, LedgerDecision] = field(default_factory=dict)  # 受理/処理済/取消 by the submission (latest)
    corrections: Mapping[uuid.UUID, LedgerDecision] = field(default_factory=dict)  # 訂正 by its submission's id
    marks: Mapping[str, LedgerDecision] = field(default_factory=dict)  # 受付番号 -> the latest SUPERSEDED
    voids: Mapping[str, LedgerDecision] = field(default_factory=dict)  # 受付番号 -> the latest 取消
    staff: tuple[LedgerDecision, ...] = ()  # every staff decision, in decision order

    def behind(self, receptions: set[str]) -> LedgerDecision | None:
        """The latest staff decision on any of ``receptions`` (who last decided on what an entry is made of)."""
        found = [d for d in self.staff if d.reception_no in receptions]
        return found[-1] if found else None


_NO_DECISIONS = Decisions()


def decisions_of(book: LedgerBook) -> Decisions:
    if not book.decisions:
        return _NO_DECISIONS
    on: dict[uuid.UUID, LedgerDecision] = {}
    corrections: dict[uuid.UUID, LedgerDecision] = {}
    marks: dict[str, LedgerDecision] = {}
    staff = sorted((d for d in book.decisions if d.decision in _STAFF), key=decision_order)
    for d, fixed in book.corrected():
        corrections[fixed.event_id] = d
    voids: dict[str, LedgerDecision] = {}
    for d in staff:  # in decision order: the latest decision stands
        if d.decision is LedgerDecisionType.VOID:
            voids[d.reception_no] = d
        elif d.decision is not LedgerDecisionType.CORRECT and d.result_event_id is not None:
            on[d.result_event_id] = d
    for d in book.decisions:
        if d.decision is LedgerDecisionType.SUPERSEDED:
            known = marks.get(d.reception_no)
            if known is None or mark_order(d) > mark_order(known):
                marks[d.reception_no] = d
    return Decisions(on, corrections, marks, voids, tuple(staff))


def _entry_receptions(kind: ScreeningKind, rec: str, follow_ups: Iterable[Received]) -> set[str]:
    """The 受付番号 an entry is made of: its 1次's ``rec``, and those of the 精検 that point to it."""
    return {rec} | {
        f.result.reception_no
        for f in follow_ups
        if f.result.stage is ResultStage.FOLLOW_UP and f.result.kind is kind and f.result.primary_reception_no == rec
    }


def _with_decision(entry: LedgerEntry, decided: LedgerDecision | None) -> LedgerEntry:
    if decided is None:
        return entry
    return replace(entry, decided_by=decided.staff_id, decision_reason=decided.reason)


def _accepting(outcome: MatchOutcome, ctx: Context, accepted: bool) -> MatchOutcome:
    """An accepted submission's outcome: it matches when staff may accept every reason it fails for."""
    if accepted and ctx.decisions.accepts(outcome.reasons):
        return MatchOutcome(())
    return outcome


def _primary_outcome(
    r: Received, log: PersonLog | None, ctx: Context, held: set[int], accepted: bool = False
) -> MatchOutcome:
    """A primary against the log and the years of its kind already held (by exams placed before it); an
    ``accepted`` one (受理) as staff accepted it, but never into a fiscal year its kind already holds.
    """
    result = r.result
    outcome = (
        MatchOutcome(())
        if r.trusted
        else match(result, log, rules=ctx.rules, institutions=ctx.institutions, attended_years=held, items=ctx.items)
    )
    outcome = _accepting(outcome, ctx, accepted)
    if outcome.ok and fiscal_year(result.exam_date) in held:
        return MatchOutcome((ErrorReason.INTERVAL_NOT_MET,))  # already screened this fiscal year
    return outcome


def _follow_up_outcome(
    r: Received,
    log: PersonLog | None,
    ctx: Context,
    holders: Mapping[Key, Received],
    entry_of: Mapping[EntryOf, Key],
    accepted: bool = False,
) -> tuple[MatchOutcome, Key | None]:
    """A follow-up against the log and the entries held: its outcome, and the entry it attaches to when it matches.

    Its 1次 is the primary holding an entry under its ``primary_reception_no`` (of its kind); that 1次 must have said
    要精検. A trusted follow-up (from a book stored before books kept results) matched then: it needs its 1次 only.
    """
    result = r.result
    key = entry_of.get((result.kind, result.primary_reception_no or ""))
    primary = holders[key].result.primary if key is not None else None
    if r.trusted:
        outcome = MatchOutcome(()) if key is not None else MatchOutcome((ErrorReason.NO_PRIMARY_FOR_FOLLOW_UP,))
    else:
        referred = primary is not None and primary.follow_up_required
        outcome = match(
            result,
            log,
            rules=ctx.rules,
            institutions=ctx.institutions,
            has_primary=key is not None,
            referred=referred,
            items=ctx.items,
        )
        outcome = _accepting(outcome, ctx, accepted)
    return outcome, key if outcome.ok else None


def _open_error(r: Received, outcome: MatchOutcome) -> ScreeningError:
    result = r.result
    return ScreeningError(
        event_id=stable_id(
            "error", result.tenant, result.reception_no, result.event_id, *outcome.reasons, *outcome.mismatched_fields
        ),
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
        source=r.source,
        result_event_id=result.event_id,
    )


def _resolved(
    standing: Received,
    failed: Received,
    outcome: MatchOutcome,
    by: str = RESUBMISSION,
    note: str = RESOLVED_NOTE,
    at: datetime | None = None,
) -> ScreeningError:
    """The error of ``failed``, settled by the later ``standing`` submission of its 受付番号 that matched (or, with
    ``by`` and ``note``, by a submission elsewhere or a staff decision, at ``at``).
    """
    error = _open_error(failed, outcome)
    detected = standing.result.occurred_at
    extra = () if (by, note) == (RESUBMISSION, RESOLVED_NOTE) else (by, note)
    return replace(
        error,
        event_id=stable_id(
            "resolved", error.tenant, error.reception_no, standing.result.event_id, error.event_id, *extra
        ),
        occurred_at=at or detected,
        status=ErrorStatus.RESOLVED,
        detected_at=detected,  # the standing submission's: only grows, whatever the order (module docstring)
        resolved_at=at or detected,
        resolved_by=by,
        resolution=note,
    )


def _decided_error(standing: Received, outcome: MatchOutcome, d: LedgerDecision) -> ScreeningError:
    """The error of ``standing`` settled by the staff decision ``d`` (受理, 処理済 or 取消), with its reason."""
    return _resolved(
        standing, standing, outcome, str(d.staff_id), f"{DECISION_LABEL[d.decision]}: {d.reason}", d.occurred_at
    )


def _moved_note(mark: LedgerDecision) -> str:
    how = "訂正" if mark.staff_id else "再提出"
    return f"{how}: この受付番号は宛名番号 {mark.superseded_by} の提出が有効"


def _withdrawn(error: ScreeningError, standing: ScreeningResult) -> ErrorWithdrawn:
    at = standing.occurred_at
    event_id = stable_id("withdrawn", error.event_id, standing.event_id)
    gone = replace(
        error,
        event_id=event_id,
        occurred_at=at,
        detected_at=max(at, error.detected_at),
        resolved_at=None,
        resolved_by=MATCHING_SOURCE,
        resolution=WITHDRAWN_NOTE,
    )
    return ErrorWithdrawn(
        event_id=event_id, occurred_at=at, tenant=error.tenant, source_system=MATCHING_SOURCE, error=gone
    )


def _entry(
    book: LedgerBook,
    key: Key,
    primary: Received,
    follow: Received | None,
    person: PersonIdentity,
    log: PersonLog | None,
    decided: LedgerDecision | None = None,
) -> LedgerEntry:
    p = primary.result
    if p.primary is None or p.setting is None:
        raise ValueError("a PRIMARY result carries its findings and setting")  # the model guarantees it
    latest = max((r.result for r in (primary, follow) if r is not None), key=correction_order)
    follow_up = None
    if follow is not None:
        f = follow.result
        if f.follow_up is None:
            raise ValueError("a FOLLOW_UP result carries its findings")  # the model guarantees it
        follow_up = LedgerFollowUp(
            reception_no=f.reception_no,
            exam_date=f.exam_date,
            exam_age=legal_age(person.birth_date, f.exam_date),
            institution_code=f.institution_code,
            institution_name=f.institution_name,
            findings=f.follow_up,
        )
    version = entry_version(book, key, log)
    return LedgerEntry(
        event_id=stable_id("ledger", p.tenant, p.atena_no, p.kind, key[1], version),
        occurred_at=latest.occurred_at,
        tenant=p.tenant,
        source_system=LEDGER_SOURCE,
        atena_no=p.atena_no,
        kind=p.kind,
        fiscal_year=key[1],
        version=version,
        person=person,
        reception_no=p.reception_no,
        exam_date=p.exam_date,
        exam_age=legal_age(person.birth_date, p.exam_date),
        institution_code=p.institution_code,
        institution_name=p.institution_name,
        setting=p.setting,
        primary=p.primary,
        follow_up=follow_up,
        source_event_id=latest.event_id,
        decided_by=decided.staff_id if decided is not None else None,
        decision_reason=decided.reason if decided is not None else None,
    )


def derive(book: LedgerBook, log: PersonLog | None, ctx: Context) -> View:
    """The entries and errors that ``book``'s results and decisions stand for against ``log`` (module docstring).

    Decisions (:class:`LedgerDecision`), each bound to the submission it was made on, and applying while that
    submission stands for its 受付番号:

    * 受理 (ACCEPT): the submission matches when every reason it fails for may be accepted (``decisions.toml``),
      never into a fiscal year its kind already holds; its error stands RESOLVED by the staff member, with the reason;
    * 処理済 (RESOLVE): while it fails, its error stands RESOLVED by the staff member (if later data makes it match,
      it enters the 台帳; the errors sink keeps the staff's resolution, which outranks the processors' withdrawal);
    * 取消 (VOID, on a 受付番号: its submissions made up to the decision): they count for nothing: nothing enters the
      台帳 (its entry, or its 精検 in one, is withdrawn, with a 副本 DELETE) and no error stands (one it had is
      withdrawn); a later submission is matched on its own;
    * 訂正 (CORRECT): the corrected result is a submission of the 受付番号 of its own (the latest, so it stands);
    * SUPERSEDED: a later submission of the 受付番号 stands under another 宛名番号. While the person's own latest
      submission is older, the 受付番号 is not theirs: nothing of it enters their 台帳, and an error of it stands
      RESOLVED (``resolved_by`` the staff member whose 訂正 moved it, or ``resubmission``).
    """
    state = log.state() if log is not None else None
    decided = decisions_of(book)
    receptions = _by_reception(book.all_results())
    standing: dict[str, Received] = {}
    moved: dict[str, LedgerDecision] = {}
    for rec, subs in receptions.items():
        mark = decided.marks.get(rec)
        if mark is not None and correction_order(subs[-1].result) < mark_order(mark):
            moved[rec] = mark
        else:
            standing[rec] = subs[-1]
    on = {rec: d for rec, s in standing.items() if (d := decided.on.get(s.result.event_id)) is not None}
    accepted = {rec for rec, d in on.items() if d.decision is LedgerDecisionType.ACCEPT}
    voided = {  # a 取消 voids the 受付番号's submissions made up to it
        rec for rec, s in standing.items() if (v := decided.voids.get(rec)) and s.result.occurred_at <= v.occurred_at
    }
    outcomes: dict[str, MatchOutcome] = {}
    raw: dict[str, MatchOutcome] = {}  # an accepted submission's outcome before it was accepted

    holders: dict[Key, Received] = {}
    held: dict[ScreeningKind, set[int]] = {}
    primaries = [s for s in standing.values() if s.result.stage is ResultStage.PRIMARY]
    for s in sorted(primaries, key=lambda s: (s.result.kind, s.result.exam_date, s.result.reception_no)):
        rec = s.result.reception_no
        years = held.setdefault(s.result.kind, book.attended_elsewhere(s.result.kind))
        if rec in accepted:
            raw[rec] = _primary_outcome(s, log, ctx, years)
        outcome = _primary_outcome(s, log, ctx, years, rec in accepted)
        outcomes[rec] = outcome
        if outcome.ok and rec not in voided:
            year = fiscal_year(s.result.exam_date)
            holders[(s.result.kind, year)] = s
            years.add(year)
    entry_of = {(s.result.kind, s.result.reception_no): key for key, s in holders.items()}

    attached: dict[Key, Received] = {}
    follow_ups = [s for s in standing.values() if s.result.stage is ResultStage.FOLLOW_UP]
    for s in sorted(follow_ups, key=lambda s: (s.result.exam_date, s.result.reception_no)):
        rec = s.result.reception_no
        if rec in accepted:
            raw[rec] = _follow_up_outcome(s, log, ctx, holders, entry_of)[0]
        outcome, key = _follow_up_outcome(s, log, ctx, holders, entry_of, rec in accepted)
        outcomes[rec] = outcome
        if key is not None and rec not in voided:
            attached[key] = s  # the latest in exam order

    entries: dict[Key, LedgerEntry] = {}
    for key, s in holders.items():
        person = state.person if state is not None else s.result.subject  # no log: only a trusted result
        made_of = _entry_receptions(s.result.kind, s.result.reception_no, follow_ups) if decided.staff else set()
        behind = decided.behind(made_of) if made_of else None
        entries[key] = _entry(book, key, s, attached.get(key), person, log, behind)

    errors: dict[str, ScreeningError] = {}
    for rec, subs in receptions.items():
        mark = moved.get(rec)
        if mark is not None:
            for earlier in reversed(subs):
                if not (failed := _superseded_outcome(earlier, log, ctx, holders, entry_of)).ok:
                    by = mark.staff_id or RESUBMISSION
                    errors[rec] = _resolved(subs[-1], earlier, failed, by, _moved_note(mark), mark.superseded_at)
                    break
            continue
        if rec in voided:
            continue  # a void submission counts for nothing: no entry, no error
        outcome, d = outcomes[rec], on.get(rec)
        if not outcome.ok:
            closed = d is not None and d.decision is LedgerDecisionType.RESOLVE
            errors[rec] = _decided_error(subs[-1], outcome, d) if closed and d else _open_error(subs[-1], outcome)
            continue
        if d is not None and d.decision is LedgerDecisionType.ACCEPT and not raw[rec].ok:
            errors[rec] = _decided_error(subs[-1], raw[rec], d)
            continue
        correction = decided.corrections.get(subs[-1].result.event_id)
        for earlier in reversed(subs[:-1]):
            earlier_outcome = _superseded_outcome(earlier, log, ctx, holders, entry_of)
            if not earlier_outcome.ok:
                if correction is not None:
                    note = f"{DECISION_LABEL[correction.decision]}: {correction.reason}"
                    errors[rec] = _resolved(subs[-1], earlier, earlier_outcome, str(correction.staff_id), note)
                else:
                    errors[rec] = _resolved(subs[-1], earlier, earlier_outcome)
                break
    return View(entries, errors)


def _superseded_outcome(
    r: Received,
    log: PersonLog | None,
    ctx: Context,
    holders: Mapping[Key, Received],
    entry_of: Mapping[EntryOf, Key],
) -> MatchOutcome:
    """How a superseded submission fares against the same log and the entries held by the other 受付番号."""
    result = r.result
    if result.stage is ResultStage.PRIMARY:
        rec = result.reception_no
        others = {y for (k, y), s in holders.items() if k is result.kind and s.result.reception_no != rec}
        return _primary_outcome(r, log, ctx, others)
    return _follow_up_outcome(r, log, ctx, holders, entry_of)[0]


# --- settling: what changed is emitted ---------------------------------------------------------------------------


def settle(book: LedgerBook, log: PersonLog | None, ctx: Context) -> tuple[LedgerBook, list[Event]]:
    """Derive ``book`` again against ``log``; the book with what now stands, and the records that changed.

    Entries (and their 副本) come first, by (kind, fiscal year), then errors, by 受付番号. Settling a book again with
    nothing new emits nothing.
    """
    view = derive(book, log, ctx)
    out: list[Event] = []
    registered = set(book.registered)
    old_entries = {(e.kind, e.fiscal_year): e for e in book.entries}
    for key in sorted(old_entries.keys() | view.entries.keys()):
        old, new = old_entries.get(key), view.entries.get(key)
        text = _key_text(*key)
        if new is not None:
            if new == old:
                continue
            out.append(new)
            operation = FukuhonOperation.UPDATE if text in registered else FukuhonOperation.REGISTER
            copy = fukuhon_for(new, ctx.fukuhon, operation)
            if old is None or not _same_copy(fukuhon_for(old, ctx.fukuhon, operation), copy):
                out.append(copy)
                registered.add(text)
        elif old is not None:
            version = entry_version(book, key, log)
            gone = replace(old, version=version, event_id=stable_id("ledger", old.tenant, old.atena_no, *key, version))
            if book.decisions:
                behind = decisions_of(book).behind(_entry_receptions(old.kind, old.reception_no, book.all_results()))
                gone = _with_decision(replace(gone, decided_by=None, decision_reason=None), behind)
            out.append(
                EntryWithdrawn(
                    event_id=gone.event_id,
                    occurred_at=gone.occurred_at,
                    tenant=gone.tenant,
                    source_system=LEDGER_SOURCE,
                    entry=gone,
                )
            )
            if text in registered:
                out.append(fukuhon_for(gone, ctx.fukuhon, FukuhonOperation.DELETE))

    errors: list[ScreeningError] = []
    old_errors = {e.reception_no: e for e in book.errors}
    own = {r.result.reception_no for r in book.all_results() if not r.trusted}
    for rec in sorted(old_errors.keys() | view.errors.keys()):
        old_error, new_error = old_errors.get(rec), view.errors.get(rec)
        if new_error is not None:
            errors.append(new_error)
            if new_error != old_error:
                out.append(new_error)
        elif old_error is not None:
            if rec not in own:
                errors.append(old_error)  # from a book stored before books kept results: left as it was
                continue
            out.append(_withdrawn(old_error, book.submissions(rec)[-1].result))
    entries = tuple(view.entries[k] for k in sorted(view.entries))
    return replace(book, entries=entries, errors=tuple(errors), registered=frozenset(registered)), out


@dataclass(frozen=True)
class BookChanges:
    """What one step changed in a book, as an operator counts it (the processors' metrics).

    The records a step emits are no measure of that: an entry is emitted again whenever its version (a count of
    inputs) moves, a result seen before re-emits what it stands for, and an error is re-emitted as it settles.
    """

    new_entries: tuple[LedgerEntry, ...] = ()  # a (kind, fiscal year) that had never stood before
    updated_entries: tuple[LedgerEntry, ...] = ()  # content changed, or standing again after a withdrawal
    opened_errors: tuple[ScreeningError, ...] = ()  # newly OPEN; ``reasons`` narrowed to the newly raised ones


_NIL = uuid.UUID(int=0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _content(entry: LedgerEntry) -> LedgerEntry:
    """``entry`` without its bookkeeping (イベントID, 発生日時, version, source result): what the ledger says."""
    return replace(entry, event_id=_NIL, occurred_at=_EPOCH, version=1, source_event_id=_NIL)


def book_changes(before: LedgerBook, after: LedgerBook) -> BookChanges:
    """What changed from ``before`` to ``after`` (see :class:`BookChanges`).

    An entry is NEW the first time its (kind, fiscal year) stands (``registered`` remembers every one that has), and
    UPDATED when what it says changes or it stands again after a withdrawal. An error counts when its 受付番号
    becomes OPEN, when another failing submission stands for it, or, for the same submission, with the reasons it
    did not have (a result that waited for 住基 as UNKNOWN_PERSON and then disagrees with it).
    """
    old_entries = {(e.kind, e.fiscal_year): e for e in before.entries}
    new: list[LedgerEntry] = []
    updated: list[LedgerEntry] = []
    for entry in after.entries:
        old = old_entries.get((entry.kind, entry.fiscal_year))
        if old is None:
            first = _key_text(entry.kind, entry.fiscal_year) not in before.registered
            (new if first else updated).append(entry)
        elif _content(old) != _content(entry):
            updated.append(entry)
    opened: list[ScreeningError] = []
    for error in after.errors:
        if error.status is not ErrorStatus.OPEN:
            continue
        prior = before.error(error.reception_no)
        reasons = error.reasons
        if prior is not None and prior.status is ErrorStatus.OPEN and prior.result_event_id == error.result_event_id:
            reasons = tuple(r for r in error.reasons if r not in prior.reasons)
        if reasons:
            opened.append(replace(error, reasons=reasons))
    return BookChanges(tuple(new), tuple(updated), tuple(opened))


def _better_source(old: SourcePointer | None, new: SourcePointer | None) -> SourcePointer | None:
    """Of two positions of the same result, the first one (so a redelivery elsewhere changes nothing)."""
    if old is None or new is None:
        return old or new
    return min(old, new, key=lambda s: (s.topic, s.partition, s.offset))


def process_result(
    book: LedgerBook, result: ScreeningResult, log: PersonLog | None, ctx: Context, source: SourcePointer | None
) -> tuple[LedgerBook, list[Event]]:
    """The book after ``result`` and the records that changed (the same records again for a result seen before)."""
    key = str(result.event_id)
    known = book.received(result.event_id)
    if known is None and key in book.seen:
        return book, replay(book, result)  # seen by a book stored before books kept results
    if known is not None:
        better = _better_source(known.source, source)
        if better == known.source:
            return book, replay(book, result)
        results = tuple(replace(r, source=better) if r is known else r for r in book.results)
        book, out = settle(replace(book, results=results), log, ctx)
        return book, out or replay(book, result)
    received = Received(result, source)
    results = tuple(sorted((*book.results, received), key=lambda r: str(r.result.event_id)))
    return settle(replace(book, results=results, seen=book.seen | {key}), log, ctx)


def claims(book: LedgerBook, submission: ScreeningResult, staff_id: str | None = None) -> list[Event]:
    """Where this person's latest submission of a 受付番号 is, for the reception index (``ledger.receptions.v1``),
    when ``submission`` is it: a 受付番号 resubmitted under another 宛名番号 is then no longer this person's
    (:func:`processors.rules.receptions.supersessions`).
    """
    if book.submissions(submission.reception_no)[-1].result.event_id != submission.event_id:
        return []
    return [
        ReceptionClaim(
            event_id=stable_id("claim", submission.tenant, submission.reception_no, submission.event_id),
            occurred_at=submission.occurred_at,
            tenant=submission.tenant,
            source_system=MATCHING_SOURCE,
            reception_no=submission.reception_no,
            atena_no=submission.atena_no,
            submitted_at=submission.occurred_at,
            result_event_id=submission.event_id,
            staff_id=staff_id,
        )
    ]


def add_decision(
    book: LedgerBook, decision: LedgerDecision, log: PersonLog | None, ctx: Context
) -> tuple[LedgerBook, list[Event]]:
    """The book after a decision on one of its 受付番号 (see :func:`derive`), and the records that changed. The same
    decision again changes nothing.
    """
    if book.decision(decision.event_id) is not None:
        return book, []
    if decision.decision is LedgerDecisionType.SUPERSEDED:
        known = decisions_of(book).marks.get(decision.reception_no)
        if known is not None and mark_order(known) >= mark_order(decision):
            return book, []  # an older mark than the one the book has: nothing can change
    if decision.corrections is not None and decision.result_event_id is not None:
        of = book.received(decision.result_event_id)
        if of is not None:
            correct(of.result, decision)  # fields that make no valid result: refused (dead-lettered) here
    decisions = tuple(sorted((*book.decisions, decision), key=lambda d: str(d.event_id)))
    return settle(replace(book, decisions=decisions), log, ctx)


def add_history(
    book: LedgerBook, history: ScreeningHistory, log: PersonLog | None, ctx: Context
) -> tuple[LedgerBook, list[Event]]:
    """The book after a screening received from the previous municipality, and the records that changed (a result
    within the kind's interval of it becomes an error). The same screening again changes nothing.
    """
    item = (history.kind.value, history.fiscal_year, history.from_tenant)
    if item in book.elsewhere:
        return book, []
    return settle(replace(book, elsewhere=tuple(sorted({*book.elsewhere, item}))), log, ctx)


def rematch(book: LedgerBook, log: PersonLog | None, ctx: Context) -> tuple[LedgerBook, list[Event]]:
    """The book after the person's 住基 log changed: every result matched again, the records that changed."""
    return settle(book, log, ctx)


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


# --- the stored form -------------------------------------------------------------------------------------------


def encode_book(book: LedgerBook) -> dict[str, object]:
    return {
        "entries": [e.to_json() for e in book.entries],
        "seen": sorted(book.seen),
        "errors": [e.to_json() for e in book.errors],
        "results": [r.to_dict() for r in book.results],
        "registered": sorted(book.registered),
        "bases": dict(book.bases),
        "elsewhere": [list(x) for x in book.elsewhere],
        **({"decisions": [d.to_json() for d in book.decisions]} if book.decisions else {}),
    }


def decode_book(data: Mapping[str, object] | None) -> LedgerBook:
    """A stored book; one stored before books kept their results is rebuilt from its entries (see :class:`Received`)."""
    if not data:
        return LedgerBook()
    entries = tuple(LedgerEntry.from_json(str(x)) for x in _list(data.get("entries")))
    errors = tuple(ScreeningError.from_json(str(x)) for x in _list(data.get("errors")))
    seen = frozenset(str(x) for x in _list(data.get("seen")))
    if "results" not in data:
        return _from_entries(entries, errors, seen)
    bases = data.get("bases")
    return LedgerBook(
        entries=entries,
        seen=seen,
        errors=errors,
        results=tuple(Received.from_dict(x) for x in _list(data.get("results")) if isinstance(x, Mapping)),
        registered=frozenset(str(x) for x in _list(data.get("registered"))),
        bases=tuple(sorted((str(k), int(str(v))) for k, v in bases.items())) if isinstance(bases, Mapping) else (),
        elsewhere=tuple(sorted((str(k), int(str(y)), str(t)) for k, y, t in map(_list, _list(data.get("elsewhere"))))),
        decisions=tuple(LedgerDecision.from_json(str(x)) for x in _list(data.get("decisions"))),
    )


def _from_entries(
    entries: tuple[LedgerEntry, ...], errors: tuple[ScreeningError, ...], seen: frozenset[str]
) -> LedgerBook:
    """A book of the first stored form (entries, seen, errors): its entries' results rebuilt as trusted ones."""
    results: list[Received] = []
    for e in entries:
        follow = e.follow_up
        # The rebuilt results give back the entry: its 発生日時 and source are those of the last one that fed it.
        at = datetime.combine(e.exam_date, time(0), tzinfo=UTC) if follow is not None else e.occurred_at
        primary_id = stable_id("legacy", e.tenant, e.atena_no, e.kind, e.reception_no) if follow else e.source_event_id
        header = {"tenant": e.tenant, "source_system": LEDGER_SOURCE, "atena_no": e.atena_no, "subject": e.person}
        results.append(
            Received(
                ScreeningResult(
                    event_id=primary_id,
                    occurred_at=at,
                    reception_no=e.reception_no,
                    kind=e.kind,
                    stage=ResultStage.PRIMARY,
                    institution_code=e.institution_code,
                    institution_name=e.institution_name,
                    exam_date=e.exam_date,
                    setting=e.setting,
                    primary=e.primary,
                    **header,  # type: ignore[arg-type]
                ),
                trusted=True,
            )
        )
        if follow is not None:
            results.append(
                Received(
                    ScreeningResult(
                        event_id=e.source_event_id,
                        occurred_at=e.occurred_at,
                        reception_no=follow.reception_no,
                        kind=e.kind,
                        stage=ResultStage.FOLLOW_UP,
                        institution_code=follow.institution_code,
                        institution_name=follow.institution_name,
                        exam_date=follow.exam_date,
                        follow_up=follow.findings,
                        primary_reception_no=e.reception_no,
                        **header,  # type: ignore[arg-type]
                    ),
                    trusted=True,
                )
            )
    return LedgerBook(
        entries=entries,
        seen=seen | {str(r.result.event_id) for r in results},
        errors=errors,
        results=tuple(sorted(results, key=lambda r: str(r.result.event_id))),
        registered=frozenset(_key_text(e.kind, e.fiscal_year) for e in entries),
        bases=tuple(sorted((_key_text(e.kind, e.fiscal_year), e.version + 1) for e in entries)),
    )


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
