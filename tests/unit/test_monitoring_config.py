"""monitoring/: prometheus.yml, the alert rules and their tests (promtool), the Grafana dashboard, compose wiring."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from hub.settings import PROCESS_NAMES, Settings
from monitoring.metrics import HubMetrics
from tests.unit.test_monitoring import exercise

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus.yml"
RULES = MONITORING / "rules" / "kenshin-hub.rules.yml"
RULE_TESTS = MONITORING / "rules" / "kenshin-hub.tests.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "kenshin-hub.json"
JOBS = {f"kenshin-hub-{p}" for p in PROCESS_NAMES}
REQUIRED_ALERTS = {
    "KenshinHubProcessDown",  # a process down
    "KenshinHubConsumerLagGrowing",
    "KenshinHubDeadLetterRate",
    "KenshinHubHeldProvisionTooOld",
    "KenshinHubProvisionRefusalSpike",
}


def promtool_run(promtool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False)


def exposed_names() -> set[str]:
    """Every sample name a fully exercised bundle exposes (``…_total``, ``…_bucket``, the runtime collectors …)."""
    registry = CollectorRegistry()
    exercise(HubMetrics(registry, process="processors"))
    text = generate_latest(registry).decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    return {name for name in names if not name.endswith("_created")}  # present unless disable_created_metrics()


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:kenshin_hub|process)_[a-z0-9_]+)", expr))


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


# --- promtool ------------------------------------------------------------------------------------------------

prometheus = pytest.mark.prometheus


@prometheus
def test_promtool_check_config(promtool: str) -> None:
    run = promtool_run(promtool, "check", "config", str(PROMETHEUS_YML))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 rule files found" in run.stdout


@prometheus
def test_promtool_check_rules(promtool: str) -> None:
    run = promtool_run(promtool, "check", "rules", str(RULES))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(rules())} rules found" in run.stdout


@prometheus
def test_promtool_test_rules(promtool: str) -> None:
    run = promtool_run(promtool, "test", "rules", str(RULE_TESTS))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]}
    names = {rule["alert"] for rule in rules()}
    assert names == firing == quiet  # each alert: a case where it fires and one where it does not


@prometheus
def test_promtool_check_metrics_on_the_bundle(promtool: str) -> None:
    registry = CollectorRegistry()
    exercise(HubMetrics(registry, process="sinks"))
    run = promtool_run(promtool, "check", "metrics", stdin=generate_latest(registry).decode())
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == run.stderr.strip() == ""  # not even a lint warning


# --- consistency (no binary needed) --------------------------------------------------------------------------


def test_prometheus_yml_scrapes_every_process_on_its_default_port() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= JOBS
    defaults = Settings()
    for process in PROCESS_NAMES:
        [static] = jobs[f"kenshin-hub-{process}"]["static_configs"]
        assert static["targets"] == [f"hub-{process}:{defaults.metrics_port(process)}"]
        assert "labels" not in static  # a target label `process` would clash with kenshin_hub_build_info's
    assert config["rule_files"] == ["rules/kenshin-hub.rules.yml"]


def test_default_metrics_ports_are_distinct() -> None:
    defaults = Settings()
    ports = [defaults.metrics_port(p) for p in PROCESS_NAMES]
    assert len(set(ports)) == len(PROCESS_NAMES)
    assert all(port > 0 for port in ports)


def test_the_required_alerts_exist_and_cover_every_process() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    assert set(by_name) >= REQUIRED_ALERTS
    down = re.search(r'job=~"([^"]+)"', by_name["KenshinHubProcessDown"]["expr"])
    assert down is not None
    assert all(re.fullmatch(down.group(1), job) for job in JOBS)
    assert not re.fullmatch(down.group(1), "prometheus")
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_rules_and_dashboard_use_only_metrics_the_bundle_exposes() -> None:
    names = exposed_names()
    used = set().union(*(metric_names_in(r["expr"]) for r in rules()), *(metric_names_in(e) for e in dashboard_exprs()))
    assert used
    assert used <= names, sorted(used - names)


def test_the_dashboard_shows_every_process_and_every_hub_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for job in JOBS:
        assert any(f'job="{job}"' in e for e in dashboard_exprs()), job
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    provisioned = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
    hub_metrics = {n.removesuffix("_total").removesuffix("_bucket") for n in exposed_names() if "kenshin_hub" in n}
    hub_metrics -= {"kenshin_hub_live", "kenshin_hub_processing_duration_seconds_count"}
    hub_metrics -= {"kenshin_hub_processing_duration_seconds_sum"}
    shown = {n.removesuffix("_total").removesuffix("_bucket") for e in dashboard_exprs() for n in metric_names_in(e)}
    assert hub_metrics <= shown, sorted(hub_metrics - shown)


def test_compose_provisions_the_dashboard_and_mounts_the_rules() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    grafana = services["grafana"]["volumes"]
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/kenshin-hub.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./monitoring/grafana/dashboards:{path}:ro" in grafana
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./monitoring/rules:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
    for process in ("processors", "sinks"):
        service = services[f"hub-{process}"]
        assert service["command"] == ["run", process]
        port = Settings().metrics_port(process)
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert service["environment"]["KENSHIN_METRICS_HOST"] == "0.0.0.0"
