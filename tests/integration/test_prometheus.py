"""A real Prometheus scrapes the running processors and sinks during a small load; the series are checked through
Prometheus's HTTP API, the expositions with `promtool check metrics`, the alert rules and the dashboard's queries on
the live server.

Prometheus runs from the Debian package's binary on a free loopback port, with monitoring/prometheus.yml (targets
rewritten to this host), the real alert rules, a temporary storage directory, and is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hub.lag import wait_drained
from hub.scenario import PROCESSOR_INPUTS, SINK_INPUTS, run_scenario
from processors.app import APP_ID
from schemas import models as m
from sinks.runner import GROUP_ID as SINKS_GROUP
from tests.integration.conftest import Endpoints, free_port_block
from tests.integration.helpers import produce
from tests.integration.pipeline import STAFF_ADMIN, Pipeline, tenant_code
from tests.integration.pipeline import STAFF_PASSWORD as PIPELINE_STAFF_PASSWORD
from topics import catalog

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
SEED, SIZE, YEAR = 5, 150, 2025
GARBAGE = 3  # undecodable messages on the 住基 topic: dead letters
WAIT_S = 90.0
STAFF_PASSWORD = "correct horse battery"
MATCHING_REASONS = {"KANA_MISMATCH", "BIRTH_DATE_MISMATCH", "NOT_RESIDENT_ON_EXAM_DATE", "NOT_ELIGIBLE_AGE"}


class PrometheusServer:
    def __init__(self, binary: str, workdir: Path, targets: dict[str, str]) -> None:
        """``targets``: job name -> host:port; jobs of monitoring/prometheus.yml not named there are dropped."""
        config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
        config["rule_files"] = [str(MONITORING / "rules" / "kenshin-hub.rules.yml")]
        jobs = [job for job in config["scrape_configs"] if job["job_name"] in targets]
        for job in jobs:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        config["scrape_configs"] = jobs
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.port = free_port_block(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={path}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/-/ready").status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout_s}s: {self.log.read_text()[-2000:]}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert response.status_code == 200, (expr, body)
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def values(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in self.query(expr)}

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, ok: Callable[[float | None], bool], timeout_s: float = WAIT_S) -> float | None:
        """Poll ``expr`` (one series or none) until ``ok`` holds for its value; the last value."""
        deadline = time.monotonic() + timeout_s
        got = self.scalar(expr)
        while not ok(got):
            assert time.monotonic() < deadline, f"{expr} = {got} after {timeout_s}s"
            time.sleep(0.5)
            got = self.scalar(expr)
        return got

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def pipeline(endpoints: Endpoints, tmp_path: Path) -> Iterator[Pipeline]:
    """Processors and sinks with known metrics ports, and a state directory of their own (staff sessions)."""
    pipeline = Pipeline(endpoints, tmp_path, tenant_code("01207"))  # 帯広市: a tenant of its own
    pipeline.env["KENSHIN_METRICS_PROCESSORS_PORT"] = str(free_port_block(1))
    pipeline.env["KENSHIN_METRICS_SINKS_PORT"] = str(free_port_block(1))
    pipeline.env["KENSHIN_STATE_DIR"] = str(tmp_path / "state")
    pipeline.cli("setup")
    pipeline.start("processors")
    pipeline.start("sinks")
    try:
        yield pipeline
    finally:
        pipeline.stop()


@pytest.fixture
def prometheus(prometheus_server_bin: str, pipeline: Pipeline, tmp_path: Path) -> Iterator[PrometheusServer]:
    nobody = free_port_block(1)  # the provision processes are not part of this test: their targets are down
    targets = {f"kenshin-hub-{p}": f"127.0.0.1:{nobody}" for p in ("connector", "chukan", "network")}
    for process in ("processors", "sinks"):
        targets[f"kenshin-hub-{process}"] = f"127.0.0.1:{pipeline.env[f'KENSHIN_METRICS_{process.upper()}_PORT']}"
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    server = PrometheusServer(prometheus_server_bin, workdir, targets)
    try:
        server.wait_ready()
        yield server
    finally:
        server.close()


def staff(pipeline: Pipeline, *args: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args, "--password-stdin"], env=pipeline.env,
                          input=password + "\n", capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_prometheus_scrapes_the_hub_during_a_load(
    pipeline: Pipeline, prometheus: PrometheusServer, promtool: str
) -> None:
    started = time.monotonic()
    base = {p: f"http://127.0.0.1:{pipeline.env[f'KENSHIN_METRICS_{p.upper()}_PORT']}" for p in ("processors", "sinks")}
    # Both processes become ready (partitions assigned; the sinks' database reachable), as Prometheus sees it.
    for process in ("processors", "sinks"):
        prometheus.wait_for(f'kenshin_hub_ready{{job="kenshin-hub-{process}"}}', lambda v: v == 1)

    # --- the load: a small city through the pipeline, garbage on the 住基 topic, staff logins -------------------
    run = run_scenario(
        pipeline.settings, seed=SEED, size=SIZE, fiscal_year=YEAR, dirty_share=0.3, progress=False,
        start_fiscal_year=lambda: pipeline.start_year(YEAR), check=pipeline.check, timeout_s=180,
        echo=lambda _line: None,
    )  # fmt: skip
    garbage_key = f"{pipeline.settings.tenant}:0000000000".encode()
    produce(pipeline.settings.kafka_bootstrap_servers, catalog.RESIDENT_CHANGES.name,
            [(garbage_key, b"\x00not avro at all")] * GARBAGE)  # fmt: skip
    # The first admin came from `staff init` when the year was started (Pipeline.start_year: an admin, a health
    # staff member, two logins, FISCAL_YEAR_START); a second `staff init` is refused; that admin adds monitor1.
    refused = staff(pipeline, "staff", "init", "monitor1", "--name", "監視担当", password=STAFF_PASSWORD)
    assert refused.returncode == 1
    assert "staff accounts exist already" in refused.stderr, refused.stderr
    for done in (
        staff(pipeline, "login", STAFF_ADMIN, password=PIPELINE_STAFF_PASSWORD),
        staff(pipeline, "staff", "add", "monitor1", "--name", "監視担当", "--role", "admin", password=STAFF_PASSWORD),
        staff(pipeline, "login", "monitor1", password=STAFF_PASSWORD),
    ):
        assert done.returncode == 0, done.stderr
    wrong = staff(pipeline, "login", "monitor1", password="not the password")
    assert wrong.returncode == 1
    assert "login failed" in wrong.stderr, wrong.stderr  # refused as a login, and recorded: not any other error
    conf = dict(pipeline.settings.kafka_config())
    wait_drained(conf, APP_ID, PROCESSOR_INPUTS, timeout_s=120)
    wait_drained(conf, SINKS_GROUP, (*SINK_INPUTS, catalog.STAFF_OPERATIONS.name), timeout_s=120)
    load_s = time.monotonic() - started

    # --- what Prometheus has: wait until the last scrapes carry the drained state -----------------------------
    changes = run.published["住基 population"] + run.published["住基異動"]
    results = run.published["検診結果"]
    p = prometheus
    p.wait_for('sum(kenshin_hub_staff_logins_total{job="kenshin-hub-sinks"})', lambda v: (v or 0) >= 5)
    p.wait_for(
        'sum(kenshin_hub_messages_in_total{job="kenshin-hub-processors", topic="juki.resident-changes.v1"})',
        lambda v: (v or 0) >= changes + GARBAGE,
    )
    p.wait_for('max(kenshin_hub_consumer_lag_messages{job="kenshin-hub-processors"})', lambda v: v == 0)
    p.wait_for('max(kenshin_hub_consumer_lag_messages{job="kenshin-hub-sinks"})', lambda v: v == 0)

    # Targets: the two processes up, the three provision processes (absent here) down.
    assert p.values("up", "job") == {
        ("kenshin-hub-processors",): 1, ("kenshin-hub-sinks",): 1,
        ("kenshin-hub-connector",): 0, ("kenshin-hub-chukan",): 0, ("kenshin-hub-network",): 0,
    }  # fmt: skip
    build = p.values("kenshin_hub_build_info", "job", "process", "version")
    assert build == {("kenshin-hub-processors", "processors", "0.1.0"): 1, ("kenshin-hub-sinks", "sinks", "0.1.0"): 1}
    assert p.values("kenshin_hub_live", "job") == {("kenshin-hub-processors",): 1, ("kenshin-hub-sinks",): 1}

    # Messages in and out per topic and step: at least what was published (a replay may count twice).
    inputs = p.values('kenshin_hub_messages_in_total{job="kenshin-hub-processors"}', "topic", "step")
    assert changes + GARBAGE <= inputs[("juki.resident-changes.v1", "residents.apply")] < 2 * changes
    assert results <= inputs[("institution.results.v1", "results.match")] < 2 * results
    assert inputs[("hub.commands.v1", "commands.apply")] >= catalog.HUB_COMMANDS.partitions
    outputs = p.values('kenshin_hub_messages_out_total{job="kenshin-hub-processors"}', "topic", "step")
    ledger_rows = [r for r in pipeline.rows("ledger_entries") if r["tenant"] == pipeline.settings.tenant]
    error_rows = [r for r in pipeline.rows("screening_errors") if r["tenant"] == pipeline.settings.tenant]
    assert len(ledger_rows) > 20
    assert len(error_rows) > 5
    assert outputs[("ledger.entries.v1", "results.match")] >= len(ledger_rows)
    assert outputs[("screening.errors.v1", "results.match")] >= len(error_rows)
    assert outputs[("residents.v1", "residents.apply")] >= sum(p.in_scope for p in run.city.residents.values())
    assert outputs[("invitations.v1", "commands.apply")] > 0
    assert outputs[("juki.resident-changes.dlq.v1", "residents.apply")] >= GARBAGE
    sink_out = p.values('kenshin_hub_messages_out_total{job="kenshin-hub-sinks"}', "topic", "step")
    assert sink_out[("ledger.entries.v1", "sinks.ledger")] >= len(ledger_rows)
    assert sink_out[("screening.errors.v1", "sinks.errors")] >= len(error_rows)

    # Ledger entries: what changed, by kind, not the records produced (an entry is re-emitted whenever its version,
    # a count of inputs, moves; withdrawals go to the same topic): NEW once per entry that first stood, so at least
    # one per SQL row, UPDATED per change of what an entry says; never more than the ledger records produced.
    ledger = p.values('kenshin_hub_ledger_entries_total{job="kenshin-hub-processors"}', "kind", "change")
    ledger_out = sum(v for (topic, _), v in outputs.items() if topic == "ledger.entries.v1")
    assert len(ledger_rows) <= sum(v for (_, change), v in ledger.items() if change == "NEW")
    assert sum(ledger.values()) <= ledger_out
    assert {kind for kind, _ in ledger} == {r["kind"] for r in ledger_rows}

    # Matching errors by reason: the dirty cases of the load; dead letters by reason.
    reasons = p.values('sum by (reason) (kenshin_hub_matching_errors_total{job="kenshin-hub-processors"})', "reason")
    assert {r for (r,) in reasons} >= MATCHING_REASONS
    assert {r for (r,) in reasons} <= {e.value for e in m.ErrorReason}
    assert sum(reasons.values()) >= sum(1 for r in error_rows if r["status"] == m.ErrorStatus.OPEN.value)
    dead = p.values("kenshin_hub_dead_letters_total", "job", "topic", "step", "reason")
    assert dead[("kenshin-hub-processors", "juki.resident-changes.v1", "residents.apply", "UNDECODABLE")] >= GARBAGE

    # Processing latency: every step observed, quantiles plausible (positive, under the histogram's top bucket).
    counts = p.values("sum by (step) (kenshin_hub_processing_duration_seconds_count)", "step")
    assert counts[("results.match",)] >= results
    assert counts[("sinks.batch",)] >= 1
    p99 = p.values(
        "histogram_quantile(0.99, sum by (step, le) (kenshin_hub_processing_duration_seconds_bucket))", "step"
    )
    assert all(0 < v <= 30 for v in p99.values()), p99

    # Consumer lag: one series per partition of each group's topics, all 0 once drained.
    lag = p.values("kenshin_hub_consumer_lag_messages", "group", "topic", "partition")
    processors_partitions = {(t.name, str(i)) for t in catalog.ALL_TOPICS if t.name in PROCESSOR_INPUTS
                             for i in range(t.partitions)}  # fmt: skip
    assert {(t, part) for (g, t, part) in lag if g == APP_ID} == processors_partitions
    records = catalog.for_tenant(catalog.PROVISION_RECORDS, pipeline.settings.tenant).name  # the city's own records
    sink_topics = {*SINK_INPUTS, catalog.STAFF_OPERATIONS.name, records}
    assert {t for (g, t, _) in lag if g == SINKS_GROUP} == sink_topics
    assert set(lag.values()) == {0}

    # Staff logins, counted by the sinks from chukan.staff-operations.v1.
    logins = p.values('kenshin_hub_staff_logins_total{job="kenshin-hub-sinks"}', "outcome")
    assert logins[("SUCCESS",)] >= 4  # it-admin twice, it-health, monitor1
    assert logins[("FAILED",)] >= 1
    operations = p.values("kenshin_hub_staff_operations_total", "operation", "outcome")
    assert operations[("INIT", "SUCCESS")] >= 1  # the first admin
    assert operations[("INIT", "DENIED")] >= 1  # accounts exist already
    assert operations[("ACCOUNT_CREATED", "SUCCESS")] >= 2  # it-health, monitor1
    assert operations[("FISCAL_YEAR_START", "SUCCESS")] >= 1
    assert operations[("LOGIN_FAILED", "DENIED")] >= 1

    # The alert rules run on this server without errors; the missing provision processes make
    # KenshinHubProcessDown pending for them, and only for them.
    groups = p.http.get("/api/v1/rules").json()["data"]["groups"]
    rule_names = {rule["name"] for g in groups for rule in g["rules"]}
    assert rule_names >= {"KenshinHubProcessDown", "KenshinHubDeadLetterRate", "KenshinHubConsumerLagGrowing"}
    assert all(rule["health"] == "ok" for g in groups for rule in g["rules"]), groups
    down = p.values('ALERTS{alertname="KenshinHubProcessDown"}', "job")
    assert set(down) == {("kenshin-hub-connector",), ("kenshin-hub-chukan",), ("kenshin-hub-network",)}

    # Every query of the Grafana dashboard is valid PromQL here, and the hub's panels have data.
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "kenshin-hub.json").read_text())
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            # A window as long as the test: a loaded machine can make a scrape miss its 1 s timeout, and a 1m window
            # with fewer than two samples left is empty although the series has data (seen in a full run).
            expr = target["expr"].replace("$__rate_interval", "10m").replace("$__range", "10m")
            expr = expr.replace('job=~"$job"', 'job=~"kenshin-hub-.+"')
            assert "$" not in expr, expr
            if not p.query(expr):
                empty.append(panel["title"])
    provision_panels = {"Provisions /min by outcome", "Refusals by reason (time range)", "Holds by reason (time range)",
                        "Held provisions awaiting review", "Oldest held provision age",
                        "提供許可証 verification failures by reason", "Retries /s by step",
                        "Lag read failures /min"}  # fmt: skip
    assert set(empty) <= provision_panels, empty

    # Health endpoints, and the expositions pass `promtool check metrics` without a single lint remark.
    for process, url in base.items():
        assert httpx.get(f"{url}/health/live", timeout=5).json() == {"status": "ok", "checks": {"loop": "ok"}}
        ready = httpx.get(f"{url}/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        exposition = httpx.get(f"{url}/metrics", timeout=5).text
        lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", ""), (process, lint)
        assert not re.search(r'"\d{8,}"', exposition), "a long number (a person's id?) in a label value"
    print(f"load {load_s:.1f}s, whole test {time.monotonic() - started:.1f}s")
