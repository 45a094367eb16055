"""`topics apply` against the real cluster: idempotent, and it mends drift."""

import dataclasses
import subprocess
import sys
import time

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource

from tests.integration.conftest import Endpoints
from tests.integration.helpers import private_topic
from topics.admin import apply, describe, listing, network_topics
from topics.catalog import CHUKAN_PERSONS, INVITATIONS, TopicSpec

pytestmark = pytest.mark.integration


def test_apply_twice_leaves_the_same_cluster(endpoints: Endpoints, admin: AdminClient) -> None:
    apply(admin)
    before = describe(admin)
    assert apply(admin) == []
    assert describe(admin) == before
    assert {s.name for s in before if s.exists} == {t.name for t in network_topics()}
    assert all(row["status"] == "ok" for row in listing(admin))
    # the provision flow's topics exist per municipality (012033 is a body of network.toml), never as templates
    on_cluster = admin.list_topics(timeout=30).topics
    assert "012033.chukan.persons.v1" in on_cluster
    assert "012033.chukan.persons.dlq.v1" in on_cluster
    assert CHUKAN_PERSONS.name not in on_cluster


def test_cli_apply_and_list(endpoints: Endpoints) -> None:
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-m", "hub.cli", "topics", "apply"],
            env=endpoints.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
    assert "topics already match the catalog" in run.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "hub.cli", "topics", "list"],
        env=endpoints.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "ledger.entries.v1" in listed.stdout
    assert "missing" not in listed.stdout


def _await_retention(admin: AdminClient, topic: TopicSpec, value: str) -> None:
    """The broker that answers describes applies a committed config change in its own time: wait (bounded)."""
    deadline = time.monotonic() + 30
    while describe(admin, [topic])[0].configs.get("retention.ms") != value:
        assert time.monotonic() < deadline, f"{topic.name} never showed retention.ms {value}"
        time.sleep(0.2)


def test_apply_mends_config_drift_and_adds_partitions(admin: AdminClient, unique: str) -> None:
    small = dataclasses.replace(private_topic(INVITATIONS, unique), partitions=1)
    apply(admin, [small])
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        small.name,
        incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    _await_retention(admin, small, "1000")

    grown = dataclasses.replace(small, partitions=3)
    changes = apply(admin, [grown])
    assert f"{grown.name}: partitions 1 -> 3" in changes
    assert any("retention.ms 1000 ->" in c for c in changes)
    [state] = describe(admin, [grown])
    assert state.partitions == 3
    assert state.configs["retention.ms"] == str(grown.retention_ms)
    assert apply(admin, [grown]) == []
