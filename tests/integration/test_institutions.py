"""実施医療機関 as managed reference data, on the real pipeline: staff register and modify an institution from dates
(`institution register|modify`, recorded), and results are checked against the registry as it stood on their exam
date."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from processors.store import institution_versions
from schemas import models as m
from tests import samples
from tests.integration.conftest import Endpoints
from tests.integration.pipeline import running_pipeline, tenant_code
from topics import catalog

pytestmark = pytest.mark.integration

YEAR = 2025
CODE = "0110100110"
PEOPLE = ("0000000101", "0000000102", "0000000103", "0000000104")


def _wait(what: str, done: object, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_results_meet_the_institution_registry_as_it_stood_on_their_exam_date(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    tenant = tenant_code("01219")  # 紋別市: a tenant of its own (test_provision_kill counts 網走市 012114 exactly)
    with running_pipeline(endpoints, tmp_path, tenant) as pipeline:
        pipeline.start_year(YEAR)  # the staff accounts, the health login, the 年度開始
        env = {"KENSHIN_STATE_DIR": str(pipeline.workdir / "staff-state"), **pipeline.env}
        registered = pipeline.cli(
            "institution", "register", CODE, "--name", "春光台検診クリニック", "--kinds", "LUNG", "COLORECTAL",
            "--group", "yes", "--from", f"{YEAR}-06-01", "--reason", "新規委託契約", env=env,
        ).stdout  # fmt: skip
        modified = pipeline.cli(
            "institution", "modify", CODE, "--kinds", "COLORECTAL", "--from", f"{YEAR}-10-01",
            "--reason", "肺がん検診の委託終了", env=env,
        ).stdout  # fmt: skip
        engine = sa.create_engine(pipeline.settings.processors_url())
        try:  # the processors have both versions before any result of the institution reaches them

            def stored() -> bool:
                with engine.connect() as conn:
                    query = sa.select(sa.func.count()).where(institution_versions.c.tenant == tenant)
                    return int(conn.execute(query).scalar_one()) == 2

            _wait("the processors did not store the two institution changes", stored)
        finally:
            engine.dispose()
        on_july = pipeline.cli("institution", "list", "--on", f"{YEAR}-07-01", env=env).stdout
        on_november = pipeline.cli("institution", "list", "--on", f"{YEAR}-11-01", env=env).stdout
        history = pipeline.cli("institution", "show", CODE, env=env).stdout

        def person(n: int) -> m.PersonIdentity:
            return samples.person(name=f"春光 {n}", name_kana=f"シュンコウ {n}", birth_date=date(1970, 5, n + 1))

        moves = [
            m.ResidentChange(
                event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), tenant=tenant, source_system="juki",
                atena_no=atena, change_type=m.ResidentChangeType.MOVE_IN, change_date=date(YEAR, 4, 1),
                person=person(n), previous_municipality="011002",
            )
            for n, atena in enumerate(PEOPLE)
        ]  # fmt: skip
        pipeline.publish(catalog.RESIDENT_CHANGES, moves)
        _wait("the residents did not arrive", lambda: len(pipeline.rows("residents")) == len(PEOPLE))
        # LUNG before the registration, LUNG while registered, LUNG after it was taken off, COLORECTAL after
        lung, colorectal = m.ScreeningKind.LUNG, m.ScreeningKind.COLORECTAL
        cases = [(lung, date(YEAR, 5, 20)), (lung, date(YEAR, 7, 1)), (lung, date(YEAR, 11, 1)),
                 (colorectal, date(YEAR, 11, 1))]  # fmt: skip
        results = [
            dataclasses.replace(
                samples.primary_result(kind, reception_no=f"R-INST-{n}"), event_id=uuid.uuid4(), tenant=tenant,
                atena_no=PEOPLE[n], subject=person(n), institution_code=CODE, institution_name="春光台検診クリニック",
                exam_date=exam, setting=m.ExamSetting.GROUP,
            )
            for n, (kind, exam) in enumerate(cases)
        ]  # fmt: skip
        pipeline.publish(catalog.INSTITUTION_RESULTS, results)

        def settled() -> bool:
            done = {r["reception_no"] for r in pipeline.rows("ledger_entries")}
            done |= {r["reception_no"] for r in pipeline.rows("screening_errors")}
            return {r.reception_no for r in results} <= done

        _wait("the results were not all settled", settled)
        ledger = {str(r["reception_no"]) for r in pipeline.rows("ledger_entries")}
        errors = {str(r["reception_no"]): str(r["reasons"]) for r in pipeline.rows("screening_errors")}
        operations = [(r["operation"], r["target"], r["outcome"]) for r in pipeline.rows("staff_operations")]

    assert ledger == {"R-INST-1", "R-INST-3"}  # registered for LUNG on 07-01; for COLORECTAL on 11-01
    assert set(errors) == {"R-INST-0", "R-INST-2"}
    assert all("UNKNOWN_INSTITUTION" in reasons.split(",") for reasons in errors.values())
    assert "registered" in registered
    assert "modified" in modified
    assert CODE in on_july
    assert "肺がん" in on_july.split(CODE, 1)[1].splitlines()[0]
    assert "肺がん" not in on_november.split(CODE, 1)[1].splitlines()[0]
    assert "新規委託契約" in history
    assert "肺がん検診の委託終了" in history
    for action, day in (("register", f"{YEAR}-06-01"), ("modify", f"{YEAR}-10-01")):
        assert ("INSTITUTION_CHANGE", f"institution {CODE} {action} from {day}", "SUCCESS") in operations
