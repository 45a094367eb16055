"""`topics apply` returns only once the cluster shows what it changed.

On KRaft a config or partition change is acknowledged when the controller has committed it; the broker that
answers the next describe applies the metadata record in its own time. CI once read the old `retention.ms` right
after `apply` had changed it. The fake admin below answers describes from a view that lags behind the writes by a
set number of reads, as such a broker does.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest

from topics import admin as topics_admin
from topics.admin import apply, describe
from topics.catalog import INVITATIONS

pytestmark = pytest.mark.unit


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


@dataclasses.dataclass
class View:
    partitions: int
    configs: dict[str, str]

    def copy(self) -> View:
        return View(self.partitions, dict(self.configs))


class LaggingAdmin:
    """One topic's partitions and configs; each write shows in describes only after `lag` further reads."""

    def __init__(self, name: str, partitions: int, configs: dict[str, str], lag: int) -> None:
        self.name = name
        self.committed = View(partitions, dict(configs))
        self.visible = self.committed.copy()
        self.lag = lag
        self.reads_until_visible: int | None = None

    def _read(self) -> View:
        if self.reads_until_visible is not None:
            if self.reads_until_visible == 0:
                self.visible = self.committed.copy()
                self.reads_until_visible = None
            else:
                self.reads_until_visible -= 1
        return self.visible

    def _wrote(self) -> None:
        self.reads_until_visible = self.lag

    def list_topics(self, timeout: float) -> Any:
        view = self._read()
        partitions = {i: SimpleNamespace(replicas=[1], leader=1) for i in range(view.partitions)}
        topic = SimpleNamespace(error=None, partitions=partitions)
        return SimpleNamespace(brokers={1: object()}, topics={self.name: topic})

    def describe_configs(self, resources: list[Any]) -> dict[Any, Future[Any]]:
        view = self._read()
        entries = {k: SimpleNamespace(value=v) for k, v in view.configs.items()}
        return {r: _done(entries) for r in resources}

    def create_partitions(self, new: list[Any]) -> dict[str, Future[None]]:
        self.committed.partitions = new[0].new_total_count
        self._wrote()
        return {self.name: _done(None)}

    def incremental_alter_configs(self, resources: list[Any]) -> dict[Any, Future[None]]:
        for entry in resources[0].incremental_configs:
            self.committed.configs[entry.name] = entry.value
        self._wrote()
        return {resources[0]: _done(None)}


def test_apply_waits_until_a_lagging_broker_shows_its_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    topic = dataclasses.replace(INVITATIONS, partitions=3)
    drifted = {**topics_admin.plan_for(topic, 1).configs(), "retention.ms": "1000"}
    fake = LaggingAdmin(topic.name, partitions=1, configs=drifted, lag=3)

    changes = apply(fake, [topic])  # type: ignore[arg-type]

    assert f"{topic.name}: partitions 1 -> 3" in changes
    assert any("retention.ms 1000 ->" in c for c in changes)
    [state] = describe(fake, [topic])  # type: ignore[arg-type]
    assert state.partitions == 3
    assert state.configs["retention.ms"] == str(topic.retention_ms)


def test_apply_says_which_topics_never_showed_their_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    topic = dataclasses.replace(INVITATIONS, partitions=3)
    fake = LaggingAdmin(topic.name, partitions=1, configs=topics_admin.plan_for(topic, 1).configs(), lag=10_000)

    with pytest.raises(TimeoutError, match=topic.name):
        apply(fake, [topic])  # type: ignore[arg-type]
