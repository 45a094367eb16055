"""The whole pipeline as separate processes on the real broker: processors and sinks, killable and restartable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub.settings import Settings, load_settings
from hub.validation import tenant_check_digit
from sinks import tables
from tests.integration.conftest import Endpoints


def tenant_code(body: str) -> str:
    """A valid 団体コード from its five digits (tests give every scenario its own tenant)."""
    return body + str(tenant_check_digit(body))


class Pipeline:
    """The hub's processes for one tenant; SQLite files in ``workdir`` unless ``database_url`` (PostgreSQL) is given,
    which then holds both the sinks' tables and the processors' store."""

    def __init__(self, endpoints: Endpoints, workdir: Path, tenant: str, database_url: str | None = None) -> None:
        self.workdir = workdir
        self.tenant = tenant
        self.db_path = workdir / "kenshin.db"
        self.database_url = database_url or f"sqlite:///{self.db_path}"
        self.env = endpoints.env()
        self.env["KENSHIN_TENANT"] = tenant
        self.env["KENSHIN_DATABASE_URL"] = self.database_url
        self.env["KENSHIN_PROCESSORS_DATABASE_URL"] = database_url or f"sqlite:///{workdir / 'processors.db'}"
        self.env["KENSHIN_LOG_LEVEL"] = "WARNING"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts = {"processors": 0, "sinks": 0}

    @property
    def settings(self) -> Settings:
        return load_settings({k: v for k, v in self.env.items() if k.startswith("KENSHIN_")})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        run = subprocess.run([sys.executable, "-m", "hub.cli", *args], env=self.env, capture_output=True, text=True,
                             timeout=300, check=False)  # fmt: skip
        assert run.returncode == 0, f"{args}: {run.stdout}{run.stderr}"
        return run

    def start(self, what: str, name: str | None = None) -> None:
        """Start `run <what>` as ``name`` (default ``what``; several workers of one kind need names of their own)."""
        name = name or what
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "hub.cli", "run", what], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        log.close()

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or committed on the way out."""
        proc = self.procs.pop(name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def terminate(self, name: str) -> None:
        """SIGTERM: the worker finishes its batch and leaves the group (a scale-in)."""
        proc = self.procs.pop(name)
        proc.terminate()
        proc.wait(timeout=60)

    def restart(self, what: str, name: str | None = None) -> None:
        self.kill(name or what)
        self.restarts[what] += 1
        self.start(what, name)

    def exited(self) -> dict[str, int]:
        """Workers that ended on their own (a crash), with their exit codes."""
        return {name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def rows(self, table: str) -> list[dict[str, object]]:
        """This tenant's rows of one of the hub's tables, typed by its SQLAlchemy definition (dates as dates).

        Only this tenant's: the topics are shared within a test session, and the sinks also write what other tests
        left on them (another tenant's residents, say) when their group reads past it.
        """
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                definition = tables.metadata.tables[table]
                query = sa.select(definition).order_by(*definition.primary_key.columns)
                if "tenant" in definition.c:
                    query = query.where(definition.c.tenant == self.tenant)
                return [dict(r._mapping) for r in conn.execute(query)]
        finally:
            engine.dispose()


@contextmanager
def running_pipeline(
    endpoints: Endpoints, workdir: Path, tenant: str, database_url: str | None = None, workers: int = 1
) -> Iterator[Pipeline]:
    pipeline = Pipeline(endpoints, workdir, tenant, database_url)
    pipeline.cli("setup")
    for what in ("processors", "sinks"):
        for n in range(workers):
            pipeline.start(what, what if n == 0 else f"{what}-{n + 1}")
    try:
        yield pipeline
    finally:
        pipeline.stop()


# Columns that differ between two tenants' runs of one scenario by construction: ids derive from the tenant, the
# simulator picks other municipalities than the tenant for 転入元/転出先, and source offsets depend on interleaving.
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
TABLES = ("residents", "ledger_entries", "screening_errors", "invitations")
Snapshot = dict[str, list[dict[str, Any]]]


def snapshot(pipeline: Pipeline) -> Snapshot:
    """The hub's tables of one run, without the columns that differ between tenants by construction."""
    return {
        table: [{k: v for k, v in row.items() if k not in IGNORED} for row in pipeline.rows(table)] for table in TABLES
    }


def assert_same_tables(calm: Snapshot, other: Snapshot) -> None:
    """Every table of ``other`` equals ``calm``'s, row for row (the first differences are shown)."""
    for table, rows in calm.items():
        assert len(rows) > 0, table
        diffs = [
            (i, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)})
            for i, (a, b) in enumerate(zip(rows, other[table], strict=False))
            if a != b
        ]
        assert (len(other[table]), diffs[:5]) == (len(rows), []), table
