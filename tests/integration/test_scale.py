"""Scale-out and faults on PostgreSQL: two processor workers and two sink workers in one group give the same tables
as one of each, while workers are added, removed and SIGKILLed at random points of a load of more than 20,000
events (rebalances under load). Nothing lost, nothing duplicated."""

import random
from pathlib import Path
from typing import Any

import pytest

from hub.scenario import run_scenario
from tests.integration.conftest import Endpoints
from tests.integration.pg import temporary_postgres
from tests.integration.pipeline import Pipeline, assert_same_tables, running_pipeline, snapshot, tenant_code

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

SEED, SIZE, YEAR = 23, 12_000, 2025
CHUNKS = 5  # per stage: 3 stages x 5 chunks = 15 points where the workers change
KINDS = ("processors", "sinks")


class Storm:
    """At each chunk, one random change of the workers: SIGKILL one (and start its replacement), add one, or stop one
    with SIGTERM (scale-in). Always at least one worker of each kind, at most three."""

    def __init__(self, pipeline: Pipeline, seed: int) -> None:
        self.pipeline = pipeline
        self.rng = random.Random(seed)
        self.serial = 10
        self.actions: list[str] = []

    def workers(self, kind: str) -> list[str]:
        return sorted(n for n in self.pipeline.procs if n == kind or n.startswith(f"{kind}-"))

    def __call__(self, stage: str, i: int) -> None:
        assert self.pipeline.exited() == {}, f"a worker crashed: {self.pipeline.exited()}"
        kind = self.rng.choice(KINDS)
        names = self.workers(kind)
        action = self.rng.choice(("kill", "kill", "add", "remove"))
        if action == "add" and len(names) >= 3:
            action = "kill"
        if action == "remove" and len(names) <= 1:
            action = "add"
        victim = self.rng.choice(names)
        if action == "kill":
            self.pipeline.kill(victim)
            self.pipeline.restarts[kind] += 1
            self.pipeline.start(kind, victim)
        elif action == "add":
            self.serial += 1
            self.pipeline.start(kind, f"{kind}-{self.serial}")
        else:
            self.pipeline.terminate(victim)
        self.actions.append(f"{stage}#{i}: {action} {victim if action != 'add' else kind}")


def _run(endpoints: Endpoints, workdir: Path, tenant: str, url: str, stormy: bool) -> dict[str, Any]:
    workdir.mkdir()
    with running_pipeline(endpoints, workdir, tenant, database_url=url, workers=2 if stormy else 1) as pipeline:
        storm = Storm(pipeline, seed=7) if stormy else None
        try:
            run = run_scenario(
                pipeline.settings, seed=SEED, size=SIZE, fiscal_year=YEAR, dirty_share=0.1, progress=False,
                chunks=CHUNKS if stormy else 1, on_chunk=storm,
                start_fiscal_year=lambda: pipeline.start_year(YEAR), check=pipeline.check, timeout_s=900,
            )  # fmt: skip
        except TimeoutError as exc:  # a stall: say what every worker was doing, and what the storm did
            actions = storm.actions if storm is not None else []
            raise AssertionError(f"{exc}\nstorm: {actions}\n{pipeline.log_tails()}") from exc
        assert sum(run.published.values()) > 20_000
        assert pipeline.exited() == {}, f"a worker crashed: {pipeline.exited()}"
        if storm is not None:
            assert len(storm.actions) >= 10, storm.actions
            assert sum(a.split(": ")[1].startswith("kill") for a in storm.actions) >= 5, storm.actions
        return snapshot(pipeline)


@pytest.mark.timeout(2400)
def test_workers_added_removed_and_killed_under_load_on_postgresql_change_nothing(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    with temporary_postgres() as calm_url:
        calm = _run(endpoints, tmp_path / "calm", tenant_code("01209"), calm_url, stormy=False)  # 夕張市
    with temporary_postgres() as stormy_url:
        stormy = _run(endpoints, tmp_path / "stormy", tenant_code("01208"), stormy_url, stormy=True)  # 北見市
    assert_same_tables(calm, stormy)
