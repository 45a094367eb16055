"""The whole path on the real broker: 住基 and results in, exact ledger, errors and invitations out in SQL."""

from collections import Counter
from pathlib import Path

import pytest

from connectors.simulators.institution import ResultTruth
from hub.scenario import run_scenario
from schemas import models as m
from tests.integration.conftest import Endpoints
from tests.integration.oracle import expected
from tests.integration.pipeline import running_pipeline, tenant_code

pytestmark = pytest.mark.integration

SEED, SIZE, YEAR = 7, 600, 2025

# What every kind of dirty input must become.
REASON_OF = {
    ResultTruth.KANA_TYPO: m.ErrorReason.KANA_MISMATCH,
    ResultTruth.WRONG_BIRTH_DATE: m.ErrorReason.BIRTH_DATE_MISMATCH,
    ResultTruth.MOVED_OUT: m.ErrorReason.NOT_RESIDENT_ON_EXAM_DATE,
    ResultTruth.INELIGIBLE_AGE: m.ErrorReason.NOT_ELIGIBLE_AGE,
    ResultTruth.UNKNOWN_INSTITUTION: m.ErrorReason.UNKNOWN_INSTITUTION,
}


def test_known_population_through_the_pipeline(endpoints: Endpoints, tmp_path: Path) -> None:
    tenant = tenant_code("01203")  # 小樽市: a tenant of its own, apart from other tests' data
    with running_pipeline(endpoints, tmp_path, tenant) as pipeline:
        run = run_scenario(
            pipeline.settings, seed=SEED, size=SIZE, fiscal_year=YEAR, dirty_share=0.2, progress=False,
            start_fiscal_year=lambda: pipeline.cli("fiscal-year", "start", str(YEAR)), timeout_s=300,
        )  # fmt: skip
        ledger = pipeline.rows("ledger_entries")
        errors = pipeline.rows("screening_errors")
        invitations = pipeline.rows("invitations")
        residents = pipeline.rows("residents")

    plan = run.plan
    truth = Counter(plan.truth.values())
    assert all(truth[category] > 0 for category in REASON_OF), truth  # every kind of dirty case is in the load

    # Every dirty result is an error with the right reason; corrected ones are resolved, the others stay open.
    by_reception = {row["reception_no"]: row for row in errors if row["tenant"] == tenant}
    for reception_no in plan.dirty:
        row = by_reception[reception_no]
        assert REASON_OF[plan.truth[reception_no]].value in str(row["reasons"]).split(","), reception_no
        want = m.ErrorStatus.RESOLVED if reception_no in plan.corrections else m.ErrorStatus.OPEN
        assert row["status"] == want.value, reception_no
    assert set(by_reception) == set(plan.dirty)  # and nothing clean became an error

    # Exact contents against the rules applied in-process to the same inputs.
    want = expected(run.city, plan, YEAR)
    assert len(want.ledger) > 100
    got_ledger = {(r["atena_no"], r["kind"], r["fiscal_year"]): r for r in ledger if r["tenant"] == tenant}
    assert set(got_ledger) == set(want.ledger)
    for key, entry in want.ledger.items():
        row = got_ledger[key]
        assert (row["version"], row["reception_no"], row["exam_date"], row["exam_age"], row["institution_code"]) == (
            entry.version, entry.reception_no, entry.exam_date, entry.exam_age, entry.institution_code
        ), key  # fmt: skip
        judgement = entry.follow_up.findings.judgement.value if entry.follow_up else None
        assert row["followup_judgement"] == judgement, key
    assert {r: (e.status.value, ",".join(x.value for x in e.reasons)) for r, e in want.errors.items()} == {
        r: (row["status"], row["reasons"]) for r, row in by_reception.items()
    }
    got_invitations = {
        (r["atena_no"], r["kind"], r["fiscal_year"], r["invitation_type"]): r["trigger"]
        for r in invitations
        if r["tenant"] == tenant
    }
    assert got_invitations == {k: v.trigger.value for k, v in want.invitations.items()}
    assert {m.InvitationType.CARRY_OVER.value, m.InvitationType.INVITATION.value} <= {k[3] for k in got_invitations}
    assert {m.InvitationTrigger.MOVE_IN.value} <= set(got_invitations.values())

    # Residents: every person with their final status; nobody who left or died was invited after leaving.
    got_residents = {r["atena_no"]: r for r in residents if r["tenant"] == tenant}
    assert {a: s.status.value for a, s in want.residents.items()} == {a: r["status"] for a, r in got_residents.items()}
    assert {a: p.status.value for a, p in run.city.residents.items()} == {
        a: r["status"] for a, r in got_residents.items()
    }
