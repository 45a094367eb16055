"""Kill -9 the processors and the sinks at several points of a load of thousands of events: the ledger and the SQL
tables end identical to an uninterrupted run — nothing lost, nothing duplicated."""

from pathlib import Path
from typing import Any

import pytest

from hub.scenario import run_scenario
from tests.integration.conftest import Endpoints
from tests.integration.pipeline import Pipeline, running_pipeline, tenant_code

# This test found real defects of the first build: faust-streaming dropped messages while its flow was suspended (36 of
# 2,500 people lost across four restarts), and its workaround lost a follow-up in CI; the processors now run on the
# hub's runtime (hub/engine/README.md).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

SEED, SIZE, YEAR = 11, 2500, 2025
# Tenant-specific columns differ between the two runs by construction: ids derive from the tenant, the simulator
# picks other municipalities than the tenant for 転入元/転出先, and source offsets depend on the interleaving.
IGNORED = {
    "tenant",
    "source_event_id",
    "result_event_id",
    "source_topic",
    "source_partition",
    "source_offset",
    "previous_municipality",
    "next_municipality",
}


def _snapshot(pipeline: Pipeline) -> dict[str, list[dict[str, Any]]]:
    return {
        table: [{k: v for k, v in row.items() if k not in IGNORED} for row in pipeline.rows(table)]
        for table in ("residents", "ledger_entries", "screening_errors", "invitations")
    }


def _run(endpoints: Endpoints, workdir: Path, tenant: str, kills: dict[tuple[str, int], str] | None) -> dict[str, Any]:
    workdir.mkdir()
    with running_pipeline(endpoints, workdir, tenant) as pipeline:

        def on_chunk(stage: str, i: int) -> None:
            victim = (kills or {}).get((stage, i))
            if victim:
                pipeline.restart(victim)

        run = run_scenario(
            pipeline.settings, seed=SEED, size=SIZE, fiscal_year=YEAR, dirty_share=0.1, progress=False, chunks=4,
            on_chunk=on_chunk, start_fiscal_year=lambda: pipeline.cli("fiscal-year", "start", str(YEAR)),
            timeout_s=600,
        )  # fmt: skip
        assert sum(run.published.values()) > 4000
        if kills:
            assert pipeline.restarts["processors"] >= 3
            assert pipeline.restarts["sinks"] >= 1
        return _snapshot(pipeline)


@pytest.mark.timeout(1500)
def test_sigkill_during_a_load_changes_nothing(endpoints: Endpoints, tmp_path: Path) -> None:
    calm = _run(endpoints, tmp_path / "calm", tenant_code("01205"), None)  # 室蘭市
    kills = {
        ("住基 population", 1): "processors",
        ("住基異動", 2): "processors",
        ("検診結果", 0): "sinks",
        ("検診結果", 1): "processors",
        ("検診結果", 2): "processors",
    }
    stormy = _run(endpoints, tmp_path / "stormy", tenant_code("01206"), kills)  # 釧路市
    for table, rows in calm.items():
        assert len(rows) > 0, table
        diffs = [
            (i, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)})
            for i, (a, b) in enumerate(zip(rows, stormy[table], strict=False))
            if a != b
        ]
        assert (len(stormy[table]), diffs[:5]) == (len(rows), []), table
