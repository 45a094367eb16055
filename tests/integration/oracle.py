"""What the pipeline must produce for a scenario, computed in-process from the pure rules in the same stage order.

The processors are shells around these rules (``processors.rules.steps``), so this is an oracle for the plumbing
(Kafka, the runtime, partitioning, acks, sinks, SQL) — the rules themselves are pinned by the simulator's ground truth
and the unit tests (``tests/unit/test_order.py`` proves the tables do not depend on the arrival order). The steps are
folded per person in the order the scenario publishes: the 住基 population, the 年度開始, the year's 住基異動, then the
results. The expected tables are the final books: entries and errors withdrawn on the way (a withdrawn entry or error
deletes its row) are in no table, and an entry's version is its count of inputs, whatever the order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from connectors.simulators.city import City
from connectors.simulators.institution import ResultPlan
from processors.rules.eligibility import load_rules
from processors.rules.institutions import load_institutions
from processors.rules.ledger import Context, load_fukuhon_policy
from processors.rules.steps import PersonState, apply_change, apply_result, year_start_notices
from schemas import models as m


@dataclass
class Expected:
    residents: dict[str, m.ResidentState] = field(default_factory=dict)
    ledger: dict[tuple[str, str, int], m.LedgerEntry] = field(default_factory=dict)
    errors: dict[str, m.ScreeningError] = field(default_factory=dict)
    invitations: dict[tuple[str, str, int, str], m.Invitation] = field(default_factory=dict)


def expected(city: City, plan: ResultPlan, fiscal_year: int) -> Expected:
    ctx = Context(load_rules(), load_institutions(), load_fukuhon_policy())
    states: dict[str, PersonState] = defaultdict(PersonState)
    out = Expected()

    def invite(notices: Iterable[m.Event]) -> None:
        for n in notices:
            if isinstance(n, m.Invitation):  # the invitations sink keeps the first of each key
                out.invitations.setdefault((n.atena_no, n.kind.value, n.fiscal_year, n.invitation_type.value), n)

    for change in city.initial:  # before the 年度開始: no 転入 notices
        states[change.atena_no], _ = apply_change(states[change.atena_no], change, ctx, started_year=0)
    for state in states.values():
        invite(year_start_notices(state, fiscal_year, ctx))
    for change in city.changes:
        states[change.atena_no], emitted = apply_change(states[change.atena_no], change, ctx, started_year=fiscal_year)
        invite(emitted)
    for result in plan.results:
        states[result.atena_no], _ = apply_result(states[result.atena_no], result, ctx, None)
    for atena, state in states.items():
        resident = state.log.state()
        if resident is not None:
            out.residents[atena] = resident
        for entry in state.book.entries:
            out.ledger[(entry.atena_no, entry.kind.value, entry.fiscal_year)] = entry
        for error in state.book.errors:
            out.errors[error.reception_no] = error
    return out
