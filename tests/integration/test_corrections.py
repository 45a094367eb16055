"""エラー処理 on the real pipeline: staff correct, accept and void through the CLI, the processors apply each
decision from ``hub.ledger-decisions.v1``, and a result resubmitted under the right 宛名番号 resolves the error of the
wrong one (the phantom error), through the reception index."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from schemas import models as m
from tests import samples
from tests.integration.conftest import Endpoints
from tests.integration.pipeline import STAFF_HEALTH, running_pipeline, tenant_code
from topics import catalog

pytestmark = pytest.mark.integration

YEAR = 2025
INST = "0110100011"  # performs every kind
A, B = "0000000201", "0000000202"
NOBODY_1, NOBODY_2 = "0000000299", "0000000298"  # 宛名番号 nobody has: the institutions' typos


def _wait(what: str, done: object, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def _person(n: int) -> m.PersonIdentity:
    return samples.person(name=f"訂正 {n}", name_kana=f"テイセイ {n}", birth_date=date(1970, 5, n))


def test_staff_correct_accept_and_void_and_a_resubmission_under_the_right_atena_resolves_the_wrong_ones_error(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    tenant = tenant_code("01222")  # 士別市: a tenant of its own
    with running_pipeline(endpoints, tmp_path, tenant) as pipeline:
        pipeline.start_year(YEAR)
        env = {"KENSHIN_STATE_DIR": str(pipeline.workdir / "staff-state"), **pipeline.env}
        now = datetime.now(UTC)
        moves = [
            m.ResidentChange(
                event_id=uuid.uuid4(), occurred_at=now, tenant=tenant, source_system="juki", atena_no=atena,
                change_type=m.ResidentChangeType.MOVE_IN, change_date=date(YEAR, 4, 1), person=_person(n),
                previous_municipality="011002",
            )
            for n, atena in ((1, A), (2, B))
        ]  # fmt: skip
        pipeline.publish(catalog.RESIDENT_CHANGES, moves)
        _wait("the residents did not arrive", lambda: len(pipeline.rows("residents")) == 2)

        def result(reception: str, kind: m.ScreeningKind, atena: str, subject: m.PersonIdentity, minutes: int = 0):  # type: ignore[no-untyped-def]
            return dataclasses.replace(
                samples.primary_result(kind, reception_no=reception), event_id=uuid.uuid4(), tenant=tenant,
                occurred_at=now + timedelta(minutes=minutes), atena_no=atena, subject=subject,
                institution_code=INST, exam_date=date(YEAR, 6, 10),
            )  # fmt: skip

        colorectal, lung = m.ScreeningKind.COLORECTAL, m.ScreeningKind.LUNG
        mistyped = dataclasses.replace(_person(1), name_kana="テイセイ イチ")
        results = [
            result("R-E7-1", colorectal, NOBODY_1, _person(2)),  # B's result under a wrong 宛名番号
            result("R-E7-2", colorectal, A, mistyped),  # A's, the kana mistyped: KANA_MISMATCH
            result("R-E7-3", lung, B, _person(2)),  # B's, clean: enters the 台帳 (voided below)
            result("R-E7-4", lung, NOBODY_2, _person(1)),  # A's under a wrong 宛名番号 …
        ]
        pipeline.publish(catalog.INSTITUTION_RESULTS, results)

        def errors() -> dict[tuple[str, str], dict[str, object]]:
            return {(str(r["reception_no"]), str(r["atena_no"])): r for r in pipeline.rows("screening_errors")}

        _wait("the errors did not arrive", lambda: len(errors()) == 3)
        _wait("B's lung entry did not arrive", lambda: len(pipeline.rows("ledger_entries")) == 1)
        # … and sent again by the institution under the right one, with the same 受付番号
        pipeline.publish(catalog.INSTITUTION_RESULTS, [result("R-E7-4", lung, A, _person(1), minutes=5)])

        corrected = pipeline.cli(
            "errors", "correct", "R-E7-1", "--set", f"atena_no={B}", "--reason", "医療機関に確認し宛名番号を訂正",
            env=env,
        ).stdout  # fmt: skip
        accepted = pipeline.cli(
            "errors", "accept", "R-E7-2", "--reason", "本人確認済み (カナの誤記)", env=env
        ).stdout  # fmt: skip
        voided = pipeline.cli(
            "ledger", "void", B, "--kind", "LUNG", "--year", str(YEAR), "--reason", "重複登録", env=env
        ).stdout  # fmt: skip
        # an error whose reasons are fixed at their source is not accepted: a clear refusal, nothing sent
        pipeline.publish(
            catalog.INSTITUTION_RESULTS,
            [dataclasses.replace(result("R-E7-5", lung, A, _person(1)), institution_code="0119999999")],
        )
        _wait("R-E7-5 was not settled", lambda: ("R-E7-5", A) in errors())
        refused = subprocess.run([sys.executable, "-m", "hub.cli", "errors", "accept", "R-E7-5", "--reason", "x"],
                                 env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip

        _wait("the phantom error was not resolved", lambda: errors()[("R-E7-4", NOBODY_2)]["status"] == "RESOLVED")
        final_errors = errors()
        ledger = {(str(r["atena_no"]), str(r["kind"])): r for r in pipeline.rows("ledger_entries")}
        versions = pipeline.rows("ledger_versions")
        operations = [(r["operation"], r["outcome"]) for r in pipeline.rows("staff_operations")]

    # 訂正 of the 宛名番号: the result is B's now, the wrong one's error is resolved by the staff member
    e1 = final_errors[("R-E7-1", NOBODY_1)]
    assert (e1["status"], e1["resolved_by"]) == ("RESOLVED", STAFF_HEALTH)
    assert str(e1["resolution"]).startswith("訂正")
    assert ledger[(B, "COLORECTAL")]["decided_by"] == STAFF_HEALTH
    assert ledger[(B, "COLORECTAL")]["decision_reason"] == "医療機関に確認し宛名番号を訂正"
    assert "RESOLVED" in corrected
    # 受理: A's mistyped result enters the 台帳 as sent, the error resolved with the reason
    e2 = final_errors[("R-E7-2", A)]
    assert (e2["status"], e2["resolution"]) == ("RESOLVED", "受理: 本人確認済み (カナの誤記)")
    assert ledger[(A, "COLORECTAL")]["reception_no"] == "R-E7-2"
    assert "RESOLVED" in accepted
    # 取消: B's lung entry is gone; its withdrawn version says who and why
    assert (B, "LUNG") not in ledger
    [gone] = [v for v in versions if v["atena_no"] == B and v["kind"] == "LUNG" and v["withdrawn"]]
    assert (gone["decided_by"], gone["decision_reason"]) == (STAFF_HEALTH, "重複登録")
    assert "取消 (withdrawn)" in voided
    # the phantom error: resolved by the resubmission under the right 宛名番号, whose entry stands
    e4 = final_errors[("R-E7-4", NOBODY_2)]
    assert (e4["resolved_by"], e4["resolution"]) == ("resubmission", f"再提出: この受付番号は宛名番号 {A} の提出が有効")
    assert ledger[(A, "LUNG")]["reception_no"] == "R-E7-4"
    assert ("R-E7-4", A) not in final_errors
    # refused with the reason, recorded as a failed operation
    assert refused.returncode == 1
    assert "UNKNOWN_INSTITUTION must be fixed at its source" in refused.stderr
    assert final_errors[("R-E7-5", A)]["status"] == "OPEN"
    for operation in ("CORRECT_RESULT", "ACCEPT_RESULT", "VOID_ENTRY"):
        assert (operation, "SUCCESS") in operations
    assert ("ACCEPT_RESULT", "FAILED") in operations
