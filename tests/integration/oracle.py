"""What the pipeline must produce for a scenario, computed in-process from the pure rules in the same stage order.

The processors are shells around these rules, so this is an oracle for the plumbing (Kafka, the runtime, partitioning,
acks, sinks, SQL) — the rules themselves are pinned by the simulator's ground truth and the unit tests.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from connectors.simulators.city import City
from connectors.simulators.institution import ResultPlan
from hub.validation import fiscal_year as fiscal_year_of
from processors.rules.eligibility import load_rules
from processors.rules.institutions import load_institutions
from processors.rules.invitations import invitations_for
from processors.rules.ledger import Context, LedgerBook, load_fukuhon_policy, process_result
from processors.rules.residents import PersonLog
from schemas import models as m


@dataclass
class Expected:
    residents: dict[str, m.ResidentState] = field(default_factory=dict)
    ledger: dict[tuple[str, str, int], m.LedgerEntry] = field(default_factory=dict)
    errors: dict[str, m.ScreeningError] = field(default_factory=dict)
    invitations: dict[tuple[str, str, int, str], m.Invitation] = field(default_factory=dict)


def expected(city: City, plan: ResultPlan, fiscal_year: int) -> Expected:
    ctx = Context(load_rules(), load_institutions(), load_fukuhon_policy())
    logs: dict[str, PersonLog] = defaultdict(PersonLog)
    books: dict[str, LedgerBook] = defaultdict(LedgerBook)
    out = Expected()

    def invite(notices: list[m.Invitation]) -> None:
        for n in notices:
            out.invitations.setdefault((n.atena_no, n.kind.value, n.fiscal_year, n.invitation_type.value), n)

    for change in city.initial:
        logs[change.atena_no], _ = logs[change.atena_no].add(change)
    for atena, log in logs.items():
        state = log.state()
        if state is not None:
            invite(invitations_for(state, books[atena].entries, fiscal_year=fiscal_year,
                                   trigger=m.InvitationTrigger.FISCAL_YEAR_START, rules=ctx.rules))  # fmt: skip
    for change in city.changes:
        logs[change.atena_no], _ = logs[change.atena_no].add(change)
        state = logs[change.atena_no].state()
        if state is not None and change.change_type is m.ResidentChangeType.MOVE_IN:
            year = fiscal_year_of(change.change_date)
            if year >= fiscal_year:
                invite(invitations_for(state, books[change.atena_no].entries, fiscal_year=year,
                                       trigger=m.InvitationTrigger.MOVE_IN, rules=ctx.rules))  # fmt: skip
    for atena, log in logs.items():
        state = log.state()
        if state is not None:
            out.residents[atena] = state
    for result in plan.results:
        log = logs.get(result.atena_no)
        books[result.atena_no], _ = process_result(books[result.atena_no], result, log, ctx, None)
    for book in books.values():
        for entry in book.entries:
            out.ledger[(entry.atena_no, entry.kind.value, entry.fiscal_year)] = entry
        for error in book.errors:
            out.errors[error.reception_no] = error
    return out
