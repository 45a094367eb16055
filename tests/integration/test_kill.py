"""Kill -9 the processors and the sinks at several points of a load of thousands of events: the ledger and the SQL
tables end identical to an uninterrupted run — nothing lost, nothing duplicated."""

from pathlib import Path
from typing import Any

import pytest

from hub.scenario import run_scenario
from tests.integration.conftest import Endpoints
from tests.integration.pipeline import assert_same_tables, running_pipeline, snapshot, tenant_code

# This test found real defects of the first build: faust-streaming dropped messages while its flow was suspended (36 of
# 2,500 people lost across four restarts), and its workaround lost a follow-up in CI; the processors now run on the
# hub's runtime (hub/engine/README.md).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

SEED, SIZE, YEAR = 11, 2500, 2025


def _run(endpoints: Endpoints, workdir: Path, tenant: str, kills: dict[tuple[str, int], str] | None) -> dict[str, Any]:
    workdir.mkdir()
    with running_pipeline(endpoints, workdir, tenant) as pipeline:

        def on_chunk(stage: str, i: int) -> None:
            victim = (kills or {}).get((stage, i))
            if victim:
                pipeline.restart(victim)

        run = run_scenario(
            pipeline.settings, seed=SEED, size=SIZE, fiscal_year=YEAR, dirty_share=0.1, progress=False, chunks=4,
            on_chunk=on_chunk, start_fiscal_year=lambda: pipeline.start_year(YEAR), check=pipeline.check,
            timeout_s=600,
        )  # fmt: skip
        assert sum(run.published.values()) > 4000
        if kills:
            assert pipeline.restarts["processors"] >= 3
            assert pipeline.restarts["sinks"] >= 1
        return snapshot(pipeline)


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
    assert_same_tables(calm, stormy)
