"""The hub's Prometheus metrics: one bundle per process, built on a registry passed in.

Modelled on faust's ``sensors/prometheus.py``: every metric of the hub is declared here, once, on the
:class:`~prometheus_client.CollectorRegistry` given to :class:`HubMetrics`, and processes update them through the
small typed hook methods below (tests give each bundle a fresh registry). Nothing here touches the global registry.

Naming follows the Prometheus conventions: the ``kenshin_hub_`` prefix, base units in the name (``_seconds``),
``_total`` on counters (prometheus-client appends it), no type names in names. Labels are few and bounded:
``topic`` and ``step`` come from code (the topic catalog, step names); ``reason``, ``outcome`` and ``operation``
are enum-like codes that pass :func:`code`, which turns anything that is not a word of capital letters and
underscores (no digits: never a 宛名番号, 個人番号 or 受付番号) into ``OTHER`` and caps the distinct values of
each label. ``tenant`` (a 団体コード, an organisation's public code) is checked with its check digit.

Counters count processing, so a message that is processed again after a restart is counted again; use them for
rates, not as exact business totals (SQL has those).
"""

from __future__ import annotations

import enum
import importlib.metadata
import logging
import platform
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from hub.validation import is_valid_tenant_code
from schemas.models import ErrorReason, OperationOutcome, ProvisionOutcome, ScreeningKind
from schemas.models import StaffOperationType as Operation

log = logging.getLogger("kenshin_hub.monitoring")

PREFIX = "kenshin_hub"
OTHER = "OTHER"
MAX_CODES_PER_LABEL = 40
_CODE = re.compile(r"[A-Z][A-Z_]{0,47}")
# Per-event processing takes milliseconds; a sink's batch transaction up to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DeadLetterReason(enum.StrEnum):
    """Why a message went to a dead-letter topic (the letter itself carries the worded reason)."""

    UNDECODABLE = "UNDECODABLE"  # not Avro of the topic's schema (or not Avro at all)
    INVALID = "INVALID"  # decoded, but breaks the model's invariants or the rules refuse it
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"  # a failure that is not the data's fault, still failing after retries
    SINK_REFUSED = "SINK_REFUSED"  # a SQL sink could not map the event to its row
    DATABASE_REFUSED = "DATABASE_REFUSED"  # the database rejected the row


class LedgerChange(enum.StrEnum):
    NEW = "NEW"  # the first version of a person × kind × fiscal year entry
    UPDATED = "UPDATED"  # a later version: a correction or an attached follow-up


class LoginOutcome(enum.StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


def code(value: str | enum.Enum) -> str:
    """``value`` as a label value if it is an enum-like code (``NOT_PERMITTED``), else ``OTHER``."""
    text = str(value.value if isinstance(value, enum.Enum) else value).strip().upper()
    return text if _CODE.fullmatch(text) else OTHER


class _Codes:
    """The distinct codes a label has taken; past ``MAX_CODES_PER_LABEL`` new ones become ``OTHER``."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, value: str | enum.Enum) -> str:
        label = code(value)
        with self.lock:
            if label in self.seen:
                return label
            if len(self.seen) >= MAX_CODES_PER_LABEL:
                log.warning("%s: more than %d distinct codes; counting new ones as OTHER", self.metric, len(self.seen))
                return OTHER
            self.seen.add(label)
        return label


class _HeldProvisions(Collector):
    """Per tenant: provisions currently held for staff review, and the age of the oldest at scrape time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._state: dict[str, tuple[int, float | None]] = {}
        self._lock = threading.Lock()

    def set(self, tenant: str, count: int, oldest_held_at: datetime | None) -> None:
        with self._lock:
            self._state[tenant] = (count, oldest_held_at.timestamp() if oldest_held_at is not None else None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        held = GaugeMetricFamily(
            f"{PREFIX}_held_provisions",
            "Provisions held by the 自動応答不可フラグ, awaiting staff review",
            labels=["tenant"],
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_held_provisions_oldest_age_seconds",
            "Age of the oldest provision awaiting staff review (0 when none is held)",
            labels=["tenant"],
        )
        now = self._clock()
        with self._lock:
            state = dict(self._state)
        for tenant, (count, oldest) in sorted(state.items()):
            held.add_metric([tenant], count)
            age.add_metric([tenant], max(now - oldest, 0.0) if count and oldest is not None else 0.0)
        yield held
        yield age

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Declares the names to the registry (no samples): clashes are found at registration, not at a scrape.
        yield GaugeMetricFamily(f"{PREFIX}_held_provisions", "", labels=["tenant"])
        yield GaugeMetricFamily(f"{PREFIX}_held_provisions_oldest_age_seconds", "", labels=["tenant"])


def _version() -> str:
    try:
        return importlib.metadata.version("kenshin-hub")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class HubMetrics:
    """Every metric of one hub process, on ``registry``; update them through the hook methods.

    ``runtime`` adds the standard process, platform and GC collectors (``process_cpu_seconds_total``,
    ``process_resident_memory_bytes``, ``python_info``, …) to the same registry.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        process: str,
        runtime: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.process = process
        r = registry
        if runtime:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        Info(f"{PREFIX}_build", "Version of the hub and of Python this process runs", registry=r).info(
            {"version": _version(), "process": process, "python_version": platform.python_version()}
        )
        self._live = Gauge(f"{PREFIX}_live", "1 when the process's liveness checks pass (see /health/live)", registry=r)
        self._ready = Gauge(f"{PREFIX}_ready", "1 when the process is ready (see /health/ready)", registry=r)

        # --- every consuming process ---------------------------------------------------------------------------
        self._messages_in = Counter(
            f"{PREFIX}_messages_in",
            "Messages a step consumed from a topic (deliveries, replays included)",
            ["topic", "step"],
            registry=r,
        )
        self._messages_out = Counter(
            f"{PREFIX}_messages_out",
            "Records a step produced to a topic; for the SQL sinks, messages of a topic a step committed to SQL",
            ["topic", "step"],
            registry=r,
        )
        self._processing = Histogram(
            f"{PREFIX}_processing_duration_seconds",
            "Time to process one message (processors) or to write and commit one batch (sinks)",
            ["step"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._retries = Counter(
            f"{PREFIX}_processing_retries",
            "Attempts that failed for a reason other than the data and were retried",
            ["step"],
            registry=r,
        )
        self._dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Messages sent to a dead-letter topic, by source topic, step and reason",
            ["topic", "step", "reason"],
            registry=r,
        )
        self._lag = Gauge(
            f"{PREFIX}_consumer_lag_messages",
            "Messages of a partition not yet committed by the consumer group",
            ["group", "topic", "partition"],
            registry=r,
        )
        self._lag_failures = Counter(
            f"{PREFIX}_consumer_lag_read_failures",
            "Failed reads of the consumer group's lag (the gauge is stale)",
            ["group"],
            registry=r,
        )

        # --- processors --------------------------------------------------------------------------------------
        self._ledger_entries = Counter(
            f"{PREFIX}_ledger_entries",
            "Versions of がん検診台帳 entries produced, by kind and NEW/UPDATED",
            ["kind", "change"],
            registry=r,
        )
        self._matching_errors = Counter(
            f"{PREFIX}_matching_errors",
            "Results that failed 突合 (matching) or validation, by reason and kind",
            ["reason", "kind"],
            registry=r,
        )

        # --- provision flow (connector, 中間サーバー, network) ----------------------------------------------------
        self._provisions = Counter(
            f"{PREFIX}_provisions", "Provision requests answered or decided, by outcome", ["outcome"], registry=r
        )
        self._refusals = Counter(
            f"{PREFIX}_provision_refusals", "Provision requests refused, by reason", ["reason"], registry=r
        )
        self._holds = Counter(
            f"{PREFIX}_provision_holds", "Provisions held for staff review, by hold reason", ["reason"], registry=r
        )
        self._held = _HeldProvisions(clock)
        r.register(self._held)
        self._permit_failures = Counter(
            f"{PREFIX}_permit_verification_failures",
            "提供許可証 (provision permits) failing verification, by reason",
            ["reason"],
            registry=r,
        )

        # --- staff ---------------------------------------------------------------------------------------------
        self._logins = Counter(f"{PREFIX}_staff_logins", "Staff logins, by outcome", ["outcome"], registry=r)
        self._operations = Counter(
            f"{PREFIX}_staff_operations",
            "Recorded staff operations (logins included), by operation and outcome",
            ["operation", "outcome"],
            registry=r,
        )

        self._codes = {
            name: _Codes(name)
            for name in ("dead_letters", "matching_errors", "refusals", "holds", "permit_failures", "operations")
        }

    # --- health --------------------------------------------------------------------------------------------------

    def bind_health(self, live: Callable[[], bool], ready: Callable[[], bool]) -> None:
        """Expose ``kenshin_hub_live`` / ``kenshin_hub_ready`` from these checks (evaluated at each scrape)."""
        self._live.set_function(lambda: float(live()))
        self._ready.set_function(lambda: float(ready()))

    # --- every consuming process ---------------------------------------------------------------------------------

    def message_in(self, topic: str, step: str, count: int = 1) -> None:
        """``count`` messages of ``topic`` delivered to ``step``."""
        self._messages_in.labels(topic, step).inc(count)

    def message_out(self, topic: str, step: str, count: int = 1) -> None:
        """``count`` records ``step`` produced to ``topic`` (sinks: messages of ``topic`` committed to SQL)."""
        self._messages_out.labels(topic, step).inc(count)

    def processing_time(self, step: str, seconds: float) -> None:
        """One message (or one sink batch) took ``seconds`` in ``step``."""
        self._processing.labels(step).observe(seconds)

    def retry(self, step: str) -> None:
        self._retries.labels(step).inc()

    def dead_letter(self, topic: str, step: str, reason: DeadLetterReason) -> None:
        """A message of ``topic`` went to a dead-letter topic at ``step``."""
        self._dead_letters.labels(topic, step, self._codes["dead_letters"](reason)).inc()

    def consumer_lag(self, group: str, lag: dict[tuple[str, int], int]) -> None:
        """The lag of ``group`` per (topic, partition), as read by :class:`hub.lag.GroupLagReader`."""
        for (topic, partition), value in lag.items():
            self._lag.labels(group, topic, str(partition)).set(value)

    def consumer_lag_read_failed(self, group: str) -> None:
        self._lag_failures.labels(group).inc()

    # --- processors ----------------------------------------------------------------------------------------------

    def ledger_entry(self, kind: ScreeningKind, version: int) -> None:
        """A ledger entry version was produced (version 1: a NEW entry; later: UPDATED)."""
        change = LedgerChange.NEW if version == 1 else LedgerChange.UPDATED
        self._ledger_entries.labels(kind.value, change.value).inc()

    def matching_error(self, kind: ScreeningKind, reasons: Iterable[ErrorReason]) -> None:
        """A result failed matching; counted once per reason."""
        for reason in reasons:
            self._matching_errors.labels(self._codes["matching_errors"](reason), kind.value).inc()

    # --- provision flow ------------------------------------------------------------------------------------------

    def provision(self, outcome: ProvisionOutcome, reasons: Iterable[str | enum.Enum] = ()) -> None:
        """One provision request reached ``outcome``.

        ``HELD`` takes the hold reasons (:class:`~schemas.models.HoldReason`), ``REFUSED`` the refusal reason
        codes (e.g. ``NOT_PERMITTED``; ``UNSPECIFIED`` when none is given); other outcomes take none.
        """
        reasons = list(reasons)
        if reasons and outcome not in (ProvisionOutcome.HELD, ProvisionOutcome.REFUSED):
            raise ValueError(f"a {outcome.value} provision has no reasons")
        self._provisions.labels(outcome.value).inc()
        if outcome is ProvisionOutcome.REFUSED:
            for reason in reasons or ["UNSPECIFIED"]:
                self._refusals.labels(self._codes["refusals"](reason)).inc()
        elif outcome is ProvisionOutcome.HELD:
            for reason in reasons or [OTHER]:
                self._holds.labels(self._codes["holds"](reason)).inc()

    def held_provisions(self, tenant: str, count: int, oldest_held_at: datetime | None) -> None:
        """The provisions of ``tenant`` awaiting staff review now: how many, and since when the oldest waits.

        Call it whenever the held set changes (and at start-up); the age is computed at each scrape.
        """
        if not is_valid_tenant_code(tenant):
            raise ValueError("tenant must be a 団体コード")
        if count < 0 or (count and oldest_held_at is None):
            raise ValueError("a positive count needs oldest_held_at")
        if oldest_held_at is not None and oldest_held_at.tzinfo is None:
            raise ValueError("oldest_held_at must be timezone-aware")
        self._held.set(tenant, count, oldest_held_at)

    def permit_verification_failed(self, reason: str | enum.Enum) -> None:
        """A 提供許可証 failed verification (e.g. ``BAD_SIGNATURE``, ``EXPIRED``, ``NOT_FOR_THIS_REQUEST``)."""
        self._permit_failures.labels(self._codes["permit_failures"](reason)).inc()

    # --- staff ---------------------------------------------------------------------------------------------------

    def _staff_login(self, succeeded: bool) -> None:
        self._logins.labels((LoginOutcome.SUCCESS if succeeded else LoginOutcome.FAILED).value).inc()

    def staff_operation(self, operation: Operation, outcome: OperationOutcome) -> None:
        """A recorded staff operation; logins (``LOGIN``/``LOGIN_FAILED``) also count in ``staff_logins``."""
        self._operations.labels(self._codes["operations"](operation), outcome.value).inc()
        if operation is Operation.LOGIN:
            self._staff_login(outcome is OperationOutcome.SUCCESS)
        elif operation is Operation.LOGIN_FAILED:
            self._staff_login(False)


__all__ = ["DeadLetterReason", "HubMetrics", "LedgerChange", "LoginOutcome", "code"]
