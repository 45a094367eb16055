"""The whole pipeline as separate processes on the real broker: processors and sinks, killable and restartable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from hub.settings import Settings, load_settings
from hub.validation import tenant_check_digit
from sinks import tables
from tests.integration.conftest import Endpoints


def tenant_code(body: str) -> str:
    """A valid 団体コード from its five digits (tests give every scenario its own tenant)."""
    return body + str(tenant_check_digit(body))


class Pipeline:
    def __init__(self, endpoints: Endpoints, workdir: Path, tenant: str) -> None:
        self.workdir = workdir
        self.db_path = workdir / "kenshin.db"
        self.env = endpoints.env()
        self.env["KENSHIN_TENANT"] = tenant
        self.env["KENSHIN_DATABASE_URL"] = f"sqlite:///{self.db_path}"
        self.env["KENSHIN_PROCESSORS_DATABASE_URL"] = f"sqlite:///{workdir / 'processors.db'}"
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

    def start(self, what: str) -> None:
        log = (self.workdir / f"{what}.log").open("ab")
        self.procs[what] = subprocess.Popen([sys.executable, "-m", "hub.cli", "run", what], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        log.close()

    def kill(self, what: str) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or committed on the way out."""
        proc = self.procs.pop(what)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def restart(self, what: str) -> None:
        self.kill(what)
        self.restarts[what] += 1
        self.start(what)

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
        """Every row of one of the hub's tables, typed by its SQLAlchemy definition (dates as dates)."""
        engine = sa.create_engine(f"sqlite:///{self.db_path}")
        try:
            with engine.connect() as conn:
                definition = tables.metadata.tables[table]
                result = conn.execute(sa.select(definition).order_by(*definition.primary_key.columns))
                return [dict(r._mapping) for r in result]
        finally:
            engine.dispose()


@contextmanager
def running_pipeline(endpoints: Endpoints, workdir: Path, tenant: str) -> Iterator[Pipeline]:
    pipeline = Pipeline(endpoints, workdir, tenant)
    pipeline.cli("setup")
    pipeline.start("processors")
    pipeline.start("sinks")
    try:
        yield pipeline
    finally:
        pipeline.stop()
