"""The whole pipeline as separate processes on the real broker: processors and sinks, killable and restartable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Producer

from hub.kafka import producer_config
from hub.pii import key_file_of, open_key_file
from hub.settings import Settings, load_settings
from hub.validation import tenant_check_digit
from schemas.models import Event
from schemas.serde import TopicSerde, registry_client
from sinks import tables
from sinks.residents import readable_row
from tests.integration.conftest import Endpoints
from topics.catalog import Topic

# The staff accounts Pipeline.start_year creates in a pipeline's database (test accounts: a fixed password).
STAFF_ADMIN, STAFF_HEALTH = "it-admin", "it-health"
STAFF_PASSWORD = "integration-test-passphrase"


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
        self.staff_ready = False  # the database has its admin and health staff member (see start_year)

    @property
    def settings(self) -> Settings:
        return load_settings({k: v for k, v in self.env.items() if k.startswith("KENSHIN_")})

    def cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        run = subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env or self.env, input=stdin,
                             capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert run.returncode == 0, f"{args}: {run.stdout}{run.stderr}"
        return run

    def start_year(self, year: int) -> None:
        """年度開始 as staff run it: `fiscal-year start` under a login with the health role, all through the CLI.

        The first call creates the database's first admin (`staff init`) and, under the admin's session, the health
        staff member (`staff add`); every call logs that member in. `login` keeps the session in a file of the state
        directory: the one the env names, else the pipeline's own (not the shared default), so that no other test's
        login replaces it in between.
        """
        env = {"KENSHIN_STATE_DIR": str(self.workdir / "staff-state"), **self.env}
        password = ("--password-stdin",)
        if not self.staff_ready:
            self.cli("staff", "init", STAFF_ADMIN, "--name", "試験管理者", *password, stdin=STAFF_PASSWORD, env=env)
            self.cli("login", STAFF_ADMIN, *password, stdin=STAFF_PASSWORD, env=env)
            self.cli("staff", "add", STAFF_HEALTH, "--name", "試験保健担当", "--role", "health", *password,
                     stdin=STAFF_PASSWORD, env=env)  # fmt: skip
            self.staff_ready = True
        self.cli("login", STAFF_HEALTH, *password, stdin=STAFF_PASSWORD, env=env)
        self.cli("fiscal-year", "start", str(year), env=env)

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

    def check(self) -> None:
        """Fail at once when a worker has died on its own (run_scenario's drain waits call it at every turn)."""
        if dead := self.exited():
            raise AssertionError(f"workers exited on their own: {dead}\n{self.log_tails()}")

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of every worker's log (kept or killed), for a failure's message: what each was doing."""
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            out.append(f"--- {log.name} (last {min(lines, len(text))} of {len(text)} lines)")
            out += [line for line in text[-lines:] if not line.startswith("%")]  # librdkafka's own noise
        return "\n".join(out)

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

    def publish(self, topic: Topic, events: Sequence[Event]) -> None:
        """Publish ``events`` on ``topic`` as an upstream system would, and wait for the broker's acknowledgement."""
        settings = self.settings
        with registry_client(settings.schema_registry_config()) as registry:
            serde: TopicSerde[Event] = TopicSerde(topic, registry)
            producer = Producer(producer_config(settings))
            for event in events:
                producer.produce(topic.name, key=serde.key(event), value=serde.value(event))
            assert producer.flush(30) == 0

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
                rows = [dict(r._mapping) for r in conn.execute(query)]
        finally:
            engine.dispose()
        if table != "residents":
            return rows
        keys = open_key_file(key_file_of(self.settings))  # the key file the processes seal with
        return [readable_row(r, keys) for r in rows]  # the 個人番号 opened: tenants' runs compare on it


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
