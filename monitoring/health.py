"""Liveness and readiness: named checks a process registers, evaluated when /health/* is asked.

* **live**: the process's main loop is not stuck (a :class:`Heartbeat` the loop beats); a failing liveness check
  means "restart me".
* **ready**: the process does its job now (e.g. partitions assigned, database reachable); a failing readiness
  check means "running, but do not count on me yet". Ready implies live, and a process that has registered no
  readiness check is not ready: it must say what ready means for it.

Checks are plain callables returning ``bool``; one that raises counts as failing and is reported by its
exception's class name only (messages may carry connection strings or data).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Check = Callable[[], bool]


@dataclass(frozen=True)
class Status:
    ok: bool
    checks: dict[str, str]  # name -> "ok" | "failing" | "error: <ExceptionClass>"

    def to_json(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "failing", "checks": self.checks}


class Heartbeat:
    """Fresh while :meth:`beat` was called less than ``stale_after_s`` ago (the start counts as a beat)."""

    def __init__(self, stale_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if stale_after_s <= 0:
            raise ValueError("stale_after_s must be positive")
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age_s(self) -> float:
        return self._clock() - self._last

    def fresh(self) -> bool:
        return self.age_s() < self.stale_after_s


def cached(check: Check, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> Check:
    """``check`` evaluated at most once per ``ttl_s`` (for checks that cost a round trip, e.g. to the database)."""
    lock = threading.Lock()
    state: dict[str, float | bool] = {}

    def run() -> bool:
        with lock:
            now = clock()
            at = state.get("at")
            if at is None or now - float(at) >= ttl_s:
                try:
                    state["ok"] = bool(check())
                except Exception:
                    state.pop("at", None)
                    raise
                state["at"] = now
            return bool(state["ok"])

    return run


class Health:
    """The process's liveness and readiness checks (thread-safe: checks are added while the server runs)."""

    def __init__(self) -> None:
        self._live: dict[str, Check] = {}
        self._ready: dict[str, Check] = {}
        self._lock = threading.Lock()

    def live_when(self, name: str, check: Check) -> None:
        with self._lock:
            self._live[name] = check

    def ready_when(self, name: str, check: Check) -> None:
        with self._lock:
            self._ready[name] = check

    def liveness(self) -> Status:
        with self._lock:
            checks = dict(self._live)
        return _run(checks)

    def readiness(self) -> Status:
        with self._lock:
            ready = dict(self._ready)
        if not ready:
            return Status(False, {"readiness checks": "failing"})
        live = self.liveness()
        status = _run(ready)
        return Status(live.ok and status.ok, {**live.checks, **status.checks})

    def is_live(self) -> bool:
        return self.liveness().ok

    def is_ready(self) -> bool:
        return self.readiness().ok


def _run(checks: dict[str, Check]) -> Status:
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            results[name] = "ok" if check() else "failing"
        except Exception as exc:  # noqa: BLE001 - a check that raises is a failing check, reported by class
            results[name] = f"error: {type(exc).__name__}"
    return Status(all(v == "ok" for v in results.values()), results)
