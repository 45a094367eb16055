"""The metrics bundle on fresh registries, the health checks, the HTTP endpoint and the lag sampler."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub.errors import CommandError
from hub.settings import load_settings
from monitoring.health import Health, Heartbeat, cached
from monitoring.lag import LagSampler
from monitoring.metrics import MAX_CODES_PER_LABEL, OTHER, DeadLetterReason, HubMetrics, code
from monitoring.process import monitored
from monitoring.server import MonitorServer
from schemas.models import (
    ErrorReason,
    HoldReason,
    OperationOutcome,
    ProvisionOutcome,
    ScreeningKind,
    StaffOperationType,
)

pytestmark = pytest.mark.unit

# Every label the bundle may use. A new label must be added here on purpose: never a person's id.
ALLOWED_LABELS = {
    "topic", "step", "reason", "kind", "change", "group", "partition", "outcome", "operation", "tenant",
    "version", "process", "python_version",
}  # fmt: skip


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> HubMetrics:
    return HubMetrics(registry, process="sinks", runtime=False)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def exercise(metrics: HubMetrics) -> None:
    """Call every hook once, so that every labelled series exists."""
    metrics.message_in("ledger.entries.v1", "sinks.ledger")
    metrics.message_out("ledger.entries.v1", "sinks.ledger")
    metrics.processing_time("sinks.batch", 0.02)
    metrics.retry("results.match")
    metrics.dead_letter("juki.resident-changes.v1", "residents.apply", DeadLetterReason.UNDECODABLE)
    metrics.consumer_lag("kenshin-hub-sinks", {("ledger.entries.v1", 0): 3})
    metrics.consumer_lag_read_failed("kenshin-hub-sinks")
    metrics.ledger_entry(ScreeningKind.STOMACH, 1)
    metrics.matching_error(ScreeningKind.LUNG, [ErrorReason.KANA_MISMATCH])
    metrics.provision(ProvisionOutcome.REFUSED, ["NOT_PERMITTED"])
    metrics.provision(ProvisionOutcome.HELD, [HoldReason.ITEM_FLAG])
    metrics.held_provisions("012041", 1, datetime.now(UTC))
    metrics.permit_verification_failed("EXPIRED")
    metrics.staff_operation(StaffOperationType.LOGIN, OperationOutcome.SUCCESS)


# --- the bundle ----------------------------------------------------------------------------------------------


def test_processing_hooks_count_per_topic_and_step(registry: CollectorRegistry, metrics: HubMetrics) -> None:
    metrics.message_in("juki.resident-changes.v1", "residents.apply")
    metrics.message_in("juki.resident-changes.v1", "residents.apply")
    metrics.message_out("residents.v1", "residents.apply", 3)
    metrics.processing_time("residents.apply", 0.003)
    metrics.processing_time("residents.apply", 0.2)
    metrics.dead_letter("juki.resident-changes.v1", "residents.apply", DeadLetterReason.INVALID)
    topic_in = {"topic": "juki.resident-changes.v1", "step": "residents.apply"}
    assert value(registry, "kenshin_hub_messages_in_total", **topic_in) == 2
    assert value(registry, "kenshin_hub_messages_out_total", topic="residents.v1", step="residents.apply") == 3
    assert value(registry, "kenshin_hub_processing_duration_seconds_count", step="residents.apply") == 2
    assert value(registry, "kenshin_hub_processing_duration_seconds_bucket", step="residents.apply", le="0.005") == 1
    assert value(registry, "kenshin_hub_processing_duration_seconds_sum", step="residents.apply") == pytest.approx(
        0.203
    )
    assert value(registry, "kenshin_hub_dead_letters_total", **topic_in, reason="INVALID") == 1


def test_ledger_entries_matching_errors_and_lag(registry: CollectorRegistry, metrics: HubMetrics) -> None:
    metrics.ledger_entry(ScreeningKind.BREAST, 1)
    metrics.ledger_entry(ScreeningKind.BREAST, 2)
    metrics.ledger_entry(ScreeningKind.BREAST, 3)
    metrics.matching_error(ScreeningKind.LUNG, [ErrorReason.KANA_MISMATCH, ErrorReason.BIRTH_DATE_MISMATCH])
    metrics.matching_error(ScreeningKind.LUNG, [ErrorReason.KANA_MISMATCH])
    metrics.consumer_lag("g", {("t", 0): 7, ("t", 1): 0})
    metrics.consumer_lag("g", {("t", 0): 2})
    assert value(registry, "kenshin_hub_ledger_entries_total", kind="BREAST", change="NEW") == 1
    assert value(registry, "kenshin_hub_ledger_entries_total", kind="BREAST", change="UPDATED") == 2
    assert value(registry, "kenshin_hub_matching_errors_total", reason="KANA_MISMATCH", kind="LUNG") == 2
    assert value(registry, "kenshin_hub_matching_errors_total", reason="BIRTH_DATE_MISMATCH", kind="LUNG") == 1
    assert value(registry, "kenshin_hub_consumer_lag_messages", group="g", topic="t", partition="0") == 2
    assert value(registry, "kenshin_hub_consumer_lag_messages", group="g", topic="t", partition="1") == 0


def test_provision_outcomes_and_reasons(registry: CollectorRegistry, metrics: HubMetrics) -> None:
    metrics.provision(ProvisionOutcome.PROVIDED_AUTOMATICALLY)
    metrics.provision(ProvisionOutcome.PROVIDED_AUTOMATICALLY)
    metrics.provision(ProvisionOutcome.PROVIDED_AFTER_REVIEW)
    metrics.provision(ProvisionOutcome.HELD, [HoldReason.PERSON_FLAG, HoldReason.ITEM_FLAG])
    metrics.provision(ProvisionOutcome.REFUSED, ["NOT_PERMITTED"])
    metrics.provision(ProvisionOutcome.REFUSED)
    metrics.permit_verification_failed("BAD_SIGNATURE")
    outcomes = {o.value: value(registry, "kenshin_hub_provisions_total", outcome=o.value) for o in ProvisionOutcome}
    assert outcomes == {
        "PROVIDED_AUTOMATICALLY": 2, "PROVIDED_AFTER_REVIEW": 1, "HELD": 1, "REFUSED": 2, "ERROR": None,
    }  # fmt: skip
    assert value(registry, "kenshin_hub_provision_holds_total", reason="PERSON_FLAG") == 1
    assert value(registry, "kenshin_hub_provision_holds_total", reason="ITEM_FLAG") == 1
    assert value(registry, "kenshin_hub_provision_refusals_total", reason="NOT_PERMITTED") == 1
    assert value(registry, "kenshin_hub_provision_refusals_total", reason="UNSPECIFIED") == 1
    assert value(registry, "kenshin_hub_permit_verification_failures_total", reason="BAD_SIGNATURE") == 1
    with pytest.raises(ValueError, match="has no reasons"):
        metrics.provision(ProvisionOutcome.PROVIDED_AUTOMATICALLY, ["NOT_PERMITTED"])


def test_held_provisions_age_is_computed_at_scrape_time(registry: CollectorRegistry) -> None:
    clock = Clock(now=datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp())
    metrics = HubMetrics(registry, process="chukan", runtime=False, clock=clock)
    assert value(registry, "kenshin_hub_held_provisions", tenant="012041") is None  # nothing until told
    metrics.held_provisions("012041", 3, datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    metrics.held_provisions("011002", 0, None)
    assert value(registry, "kenshin_hub_held_provisions", tenant="012041") == 3
    assert value(registry, "kenshin_hub_held_provisions_oldest_age_seconds", tenant="012041") == 3 * 3600
    clock.now += 600
    assert value(registry, "kenshin_hub_held_provisions_oldest_age_seconds", tenant="012041") == 3 * 3600 + 600
    assert value(registry, "kenshin_hub_held_provisions_oldest_age_seconds", tenant="011002") == 0
    with pytest.raises(ValueError, match="団体コード"):
        metrics.held_provisions("012040", 1, datetime.now(UTC))
    with pytest.raises(ValueError, match="needs oldest_held_at"):
        metrics.held_provisions("012041", 1, None)
    with pytest.raises(ValueError, match="timezone-aware"):
        metrics.held_provisions("012041", 1, datetime(2026, 6, 1, 9, 0))


def test_staff_operations_count_logins_by_outcome(registry: CollectorRegistry, metrics: HubMetrics) -> None:
    metrics.staff_operation(StaffOperationType.LOGIN, OperationOutcome.SUCCESS)
    metrics.staff_operation(StaffOperationType.LOGIN_FAILED, OperationOutcome.DENIED)
    metrics.staff_operation(StaffOperationType.LOGIN_FAILED, OperationOutcome.DENIED)
    metrics.staff_operation(StaffOperationType.APPROVE, OperationOutcome.DENIED)
    assert value(registry, "kenshin_hub_staff_logins_total", outcome="SUCCESS") == 1
    assert value(registry, "kenshin_hub_staff_logins_total", outcome="FAILED") == 2
    assert value(registry, "kenshin_hub_staff_operations_total", operation="APPROVE", outcome="DENIED") == 1
    assert value(registry, "kenshin_hub_staff_operations_total", operation="LOGIN_FAILED", outcome="DENIED") == 2


@pytest.mark.parametrize(
    "personal",
    ["123456789018", "0000123456", "R2025-0000123", "山田太郎", "ヤマダ", "NOT PERMITTED", "", "A" * 60, "X1"],
)
def test_a_person_s_id_or_free_text_never_becomes_a_label(
    registry: CollectorRegistry, metrics: HubMetrics, personal: str
) -> None:
    assert code(personal) == OTHER
    metrics.provision(ProvisionOutcome.REFUSED, [personal])
    metrics.permit_verification_failed(personal)
    exposition = generate_latest(registry).decode()
    assert value(registry, "kenshin_hub_provision_refusals_total", reason=OTHER) == 1
    if personal:
        assert personal not in exposition


def test_codes_are_enum_like_and_capped(registry: CollectorRegistry, metrics: HubMetrics) -> None:
    assert code(HoldReason.PERSON_FLAG) == "PERSON_FLAG"
    assert code("not_permitted") == "NOT_PERMITTED"
    for i in range(MAX_CODES_PER_LABEL + 5):
        metrics.permit_verification_failed("REASON_" + "".join(chr(ord("A") + int(d)) for d in f"{i:03d}"))
    reasons = {
        s.labels["reason"]
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        if family.name == "kenshin_hub_permit_verification_failures"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert len(reasons) == MAX_CODES_PER_LABEL + 1
    assert value(registry, "kenshin_hub_permit_verification_failures_total", reason=OTHER) == 5


def test_names_and_labels_follow_the_conventions(registry: CollectorRegistry, metrics: HubMetrics) -> None:
    exercise(metrics)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert len(families) >= 20
    for family in families:
        assert family.name.startswith("kenshin_hub_"), family.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name), family.name
        assert family.documentation, family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, (family.name, sample.labels)
    [build] = [f for f in families if f.name == "kenshin_hub_build_info"]
    assert build.samples[0].labels["process"] == "sinks"
    assert build.samples[0].value == 1


def test_each_process_has_its_own_registry() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    a = HubMetrics(first, process="processors")
    HubMetrics(second, process="sinks")
    a.message_in("t", "s")
    assert first.get_sample_value("kenshin_hub_messages_in_total", {"topic": "t", "step": "s"}) == 1
    assert second.get_sample_value("kenshin_hub_messages_in_total", {"topic": "t", "step": "s"}) is None
    assert first.get_sample_value("process_resident_memory_bytes") is not None  # runtime collectors are on it
    with pytest.raises(ValueError, match="Duplicated"):
        HubMetrics(first, process="processors")


# --- health --------------------------------------------------------------------------------------------------


def test_heartbeat_goes_stale_when_the_loop_stops_beating() -> None:
    clock = Clock()
    beat = Heartbeat(stale_after_s=10, clock=clock)
    assert beat.fresh()
    clock.now += 9.9
    assert beat.fresh()
    clock.now += 0.2
    assert not beat.fresh()
    beat.beat()
    assert beat.fresh()
    with pytest.raises(ValueError, match="positive"):
        Heartbeat(0)


def test_readiness_needs_checks_and_liveness() -> None:
    health = Health()
    assert health.is_live()  # nothing registered: the answering server is alive
    assert not health.is_ready()  # but nobody said what ready means
    alive = {"v": True}
    health.live_when("loop", lambda: alive["v"])
    health.ready_when("assigned", lambda: True)
    assert health.is_ready()
    alive["v"] = False
    assert not health.is_live()
    assert not health.is_ready()  # ready implies live
    assert health.readiness().checks == {"loop": "failing", "assigned": "ok"}


def test_a_raising_check_fails_and_is_reported_by_class_only() -> None:
    health = Health()
    health.ready_when("database", lambda: bool(1 / 0))
    status = health.readiness()
    assert not status.ok
    assert status.checks == {"database": "error: ZeroDivisionError"}


def test_cached_check_runs_once_per_ttl() -> None:
    clock = Clock()
    calls: list[float] = []

    def check() -> bool:
        calls.append(clock.now)
        return len(calls) % 2 == 1

    run = cached(check, ttl_s=5, clock=clock)
    assert run() is True
    clock.now += 4
    assert run() is True
    assert len(calls) == 1
    clock.now += 1
    assert run() is False
    assert len(calls) == 2


# --- the HTTP endpoint ---------------------------------------------------------------------------------------


@pytest.fixture
def server(registry: CollectorRegistry, metrics: HubMetrics) -> Iterator[tuple[MonitorServer, Health]]:
    health = Health()
    metrics.bind_health(health.is_live, health.is_ready)
    srv = MonitorServer(registry, health, "127.0.0.1", 0)
    try:
        yield srv, health
    finally:
        srv.close()


def test_metrics_and_health_over_http(server: tuple[MonitorServer, Health], metrics: HubMetrics) -> None:
    srv, health = server
    assert srv.port > 0
    metrics.message_in("t", "s")
    with httpx.Client(base_url=srv.url, timeout=5) as client:
        scraped = client.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        assert 'kenshin_hub_messages_in_total{step="s",topic="t"} 1.0' in scraped.text
        assert "kenshin_hub_ready 0.0" in scraped.text

        live = client.get("/health/live")
        assert (live.status_code, live.json()) == (200, {"status": "ok", "checks": {}})
        not_ready = client.get("/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["status"] == "failing"

        health.ready_when("assigned", lambda: True)
        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()) == (200, {"status": "ok", "checks": {"assigned": "ok"}})
        assert "kenshin_hub_ready 1.0" in client.get("/metrics").text
        assert client.get("/nothing").status_code == 404


def test_monitored_serves_on_the_process_port_and_beats(registry: CollectorRegistry) -> None:
    settings = load_settings({"KENSHIN_METRICS_CONNECTOR_PORT": "0"})
    with monitored(settings, "connector", stale_after_s=30, registry=registry) as monitor:
        monitor.beat()
        monitor.health.ready_when("connected", lambda: True)
        with httpx.Client(base_url=monitor.url, timeout=5) as client:
            body = client.get("/health/ready").json()
            assert body == {"status": "ok", "checks": {"loop": "ok", "connected": "ok"}}
            text = client.get("/metrics").text
        assert 'process="connector"' in text
        assert "_created" not in text  # no *_created series next to the counters
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{monitor.url}/metrics", timeout=2)  # closed with the block


def test_a_taken_port_is_a_clear_error_naming_the_setting() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load_settings({"KENSHIN_METRICS_SINKS_PORT": str(port)})
        with (
            pytest.raises(CommandError, match=f"127.0.0.1:{port}.*KENSHIN_METRICS_SINKS_PORT"),
            monitored(settings, "sinks", registry=CollectorRegistry()),
        ):
            pass


# --- the lag sampler -----------------------------------------------------------------------------------------


class FakeReader:
    def __init__(self, answers: list[dict[tuple[str, int], int] | Exception]) -> None:
        self.answers = answers
        self.closed = threading.Event()
        self.read = threading.Event()

    def lag(self, topics: object, timeout_s: float = 30.0) -> dict[tuple[str, int], int]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.read.set()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed.set()


def test_lag_sampler_sets_the_gauge_and_counts_failures(registry: CollectorRegistry, metrics: HubMetrics) -> None:
    reader = FakeReader([KafkaException(KafkaError(KafkaError._TRANSPORT)), {("t", 0): 4, ("t", 1): 1}])
    sampler = LagSampler({}, "g", ["t"], metrics, interval_s=0.01, reader=lambda _conf, _group: reader)  # type: ignore[arg-type,return-value]
    try:
        # Bounded by time, not by turns: `reader.read` stays set after the first read, so waiting on it returned at
        # once and 500 turns took microseconds, less than the sampler's next read on a loaded machine (CI failed).
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            if value(registry, "kenshin_hub_consumer_lag_messages", group="g", topic="t", partition="0") == 4:
                break
            time.sleep(0.01)
    finally:
        sampler.close()
    assert value(registry, "kenshin_hub_consumer_lag_messages", group="g", topic="t", partition="0") == 4
    assert value(registry, "kenshin_hub_consumer_lag_messages", group="g", topic="t", partition="1") == 1
    assert value(registry, "kenshin_hub_consumer_lag_read_failures_total", group="g") == 1
    assert reader.closed.is_set()
    assert sampler.samples >= 1


def test_health_json_is_utf8(server: tuple[MonitorServer, Health]) -> None:
    srv, health = server
    health.ready_when("台帳 database", lambda: True)
    response = httpx.get(f"{srv.url}/health/ready", timeout=5)
    assert json.loads(response.content.decode("utf-8"))["checks"] == {"台帳 database": "ok"}
