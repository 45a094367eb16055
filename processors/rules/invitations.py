"""受診勧奨 and 繰越受診通知: who gets a notice, as a pure function of the resident and their ledger.

Age is the legal age at the end of the fiscal year. Yearly kinds invite every target whose interval is met.
Biennial kinds (interval 2) invite by age parity, as municipalities do (節目: ages min_age, min_age + 2, …). Nobody
who moved out or died is invited.

繰越受診通知 is not mailed: the city's assessment (I.1 ② (2)) issues it when a resident who did not attend last
year asks to be screened this year. :func:`carry_over_refusals` is the rule for such a request: a target of a
biennial kind with 繰越 (``eligibility.toml``), in the off year of their parity, who was due last year and attended
neither last year nor this one. :func:`notice_decision` answers a request with the notice or the reasons not to.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from hub.validation import age_at_fiscal_year_end
from processors.rules.eligibility import EligibilityRules, KindRule
from processors.rules.ledger import stable_id
from schemas.models import (
    Invitation,
    InvitationTrigger,
    InvitationType,
    LedgerEntry,
    NoticeDecision,
    NoticeRefusal,
    NoticeRequest,
    ResidentState,
    ResidentStatus,
    Sex,
)

SOURCE = "kenshin-hub.invitations"


def _notice_type(rule: KindRule, state: ResidentState, year: int, attended: set[int]) -> InvitationType | None:
    """The notice the 年度開始 or a 転入 sends for one kind: a 受診勧奨, or none (繰越 is only on request)."""
    person = state.person
    if not rule.invite or not rule.is_target(person.sex, person.birth_date, year):
        return None
    if not rule.interval_met(year, attended) or year in attended:
        return None
    if rule.interval_years != 2:
        return InvitationType.INVITATION
    age = age_at_fiscal_year_end(person.birth_date, year)
    return InvitationType.INVITATION if (age - rule.min_age) % 2 == 0 else None


def carry_over_refusals(
    rule: KindRule, sex: Sex, birth: date, resident: bool, year: int, attended: Iterable[int]
) -> list[NoticeRefusal]:
    """Why a 繰越受診通知 for ``year`` cannot be issued to this person ([] = it can).

    ``attended`` are the fiscal years of the kind screened here or (転入前の受診履歴) in the previous municipality.
    """
    reasons: list[NoticeRefusal] = []
    if not resident:
        reasons.append(NoticeRefusal.NOT_RESIDENT)
    if rule.interval_years != 2 or not rule.carry_over:
        return [*reasons, NoticeRefusal.NO_CARRY_OVER_FOR_KIND]
    if not rule.is_target(sex, birth, year):
        reasons.append(NoticeRefusal.NOT_TARGET)
    elif (age_at_fiscal_year_end(birth, year) - rule.min_age) % 2 == 0:
        reasons.append(NoticeRefusal.DUE_THIS_YEAR)
    # else this is her off year, and last year (one year younger, of the even distance) was her regular one
    years = set(attended)
    if year - 1 in years:
        reasons.append(NoticeRefusal.ATTENDED_LAST_YEAR)
    if year in years:
        reasons.append(NoticeRefusal.ATTENDED_THIS_YEAR)
    return reasons


def attended_years(entries: Iterable[LedgerEntry], elsewhere: Iterable[tuple[str, int, str]], kind: str) -> set[int]:
    """The fiscal years of ``kind`` in the ledger or in the 転入前の受診履歴."""
    return {e.fiscal_year for e in entries if e.kind == kind} | {y for k, y, _ in elsewhere if k == kind}


def notice_decision(
    request: NoticeRequest,
    state: ResidentState | None,
    entries: Iterable[LedgerEntry],
    elsewhere: Iterable[tuple[str, int, str]],
    rules: EligibilityRules,
) -> list[Invitation | NoticeDecision]:
    """A 繰越受診通知の申出 decided: the notice and an issued decision, or a refused decision with its reasons.

    Ids derive from the request (the decision) and from the person, kind and year (the notice, as every notice's
    do), so a request redelivered, or asked twice, gives the same records.
    """
    if state is None:
        refusals = [NoticeRefusal.UNKNOWN_PERSON]
    else:
        person = state.person
        attended = attended_years(entries, elsewhere, request.kind.value)
        refusals = carry_over_refusals(
            rules.rule(request.kind),
            person.sex,
            person.birth_date,
            state.status is ResidentStatus.RESIDENT,
            request.fiscal_year,
            attended,
        )
    out: list[Invitation | NoticeDecision] = []
    if state is not None and not refusals:
        out.append(
            Invitation(
                event_id=stable_id(
                    "invitation",
                    state.tenant,
                    state.atena_no,
                    request.kind,
                    request.fiscal_year,
                    InvitationType.CARRY_OVER,
                ),
                occurred_at=request.occurred_at,
                tenant=state.tenant,
                source_system=SOURCE,
                atena_no=state.atena_no,
                kind=request.kind,
                fiscal_year=request.fiscal_year,
                invitation_type=InvitationType.CARRY_OVER,
                trigger=InvitationTrigger.REQUEST,
                age_at_fiscal_year_end=age_at_fiscal_year_end(state.person.birth_date, request.fiscal_year),
                person=state.person,
            )
        )
    out.append(
        NoticeDecision(
            event_id=stable_id("notice-decision", request.tenant, request.event_id),
            occurred_at=request.occurred_at,
            tenant=request.tenant,
            source_system=SOURCE,
            request_event_id=request.event_id,
            atena_no=request.atena_no,
            kind=request.kind,
            fiscal_year=request.fiscal_year,
            channel=request.channel,
            staff_id=request.staff_id,
            issued=not refusals,
            refusals=tuple(refusals),
        )
    )
    return out


def invitations_for(
    state: ResidentState,
    entries: Iterable[LedgerEntry],
    *,
    fiscal_year: int,
    trigger: InvitationTrigger,
    rules: EligibilityRules,
    elsewhere: Iterable[tuple[str, int, str]] = (),
) -> list[Invitation]:
    """The notices for one resident in ``fiscal_year`` (empty for people who are not residents now).

    ``elsewhere`` are the (kind, fiscal year, 団体コード) of screenings in the previous municipality: they count as
    attendances for the interval, as this city's own entries do.
    """
    if state.status is not ResidentStatus.RESIDENT:
        return []
    entries = list(entries)
    before = list(elsewhere)
    notices = []
    for kind, rule in rules.kinds.items():
        attended = attended_years(entries, before, kind.value)
        notice = _notice_type(rule, state, fiscal_year, attended)
        if notice is None:
            continue
        notices.append(
            Invitation(
                event_id=stable_id("invitation", state.tenant, state.atena_no, kind, fiscal_year, notice),
                occurred_at=state.occurred_at,
                tenant=state.tenant,
                source_system=SOURCE,
                atena_no=state.atena_no,
                kind=kind,
                fiscal_year=fiscal_year,
                invitation_type=notice,
                trigger=trigger,
                age_at_fiscal_year_end=age_at_fiscal_year_end(state.person.birth_date, fiscal_year),
                person=state.person,
            )
        )
    return notices
