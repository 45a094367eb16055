"""受診勧奨 and 繰越受診通知: who gets a notice, as a pure function of the resident and their ledger.

Age is the legal age at the end of the fiscal year. Yearly kinds invite every target whose interval is met.
Biennial kinds (interval 2) invite by age parity, as municipalities do (節目: ages min_age, min_age + 2, …); a
target of the other parity who was invited last year and did not attend gets a 繰越受診通知 instead. Nobody who
moved out or died is invited.
"""

from __future__ import annotations

from collections.abc import Iterable

from hub.validation import age_at_fiscal_year_end
from processors.rules.eligibility import EligibilityRules, KindRule
from processors.rules.ledger import stable_id
from schemas.models import (
    Invitation,
    InvitationTrigger,
    InvitationType,
    LedgerEntry,
    ResidentState,
    ResidentStatus,
)

SOURCE = "kenshin-hub.invitations"


def _notice_type(rule: KindRule, state: ResidentState, year: int, attended: set[int]) -> InvitationType | None:
    person = state.person
    if not rule.invite or not rule.is_target(person.sex, person.birth_date, year):
        return None
    if not rule.interval_met(year, attended) or year in attended:
        return None
    if rule.interval_years != 2 or not rule.carry_over:
        return InvitationType.INVITATION
    age = age_at_fiscal_year_end(person.birth_date, year)
    if (age - rule.min_age) % 2 == 0:
        return InvitationType.INVITATION
    invited_last_year = rule.is_target(person.sex, person.birth_date, year - 1)
    if invited_last_year and (year - 1) not in attended:
        return InvitationType.CARRY_OVER
    return None


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
        attended = {e.fiscal_year for e in entries if e.kind == kind} | {y for k, y, _ in before if k == kind.value}
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
