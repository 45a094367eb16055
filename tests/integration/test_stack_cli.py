"""The local stack as a user drives it: `stack up && topics apply && schemas register && stack down`, twice."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from hub.runtime.stack import LocalStack
from tests.integration.conftest import Endpoints, local_stack_settings
from topics.admin import apply, describe
from topics.catalog import RESIDENTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _stack_env(tmp_path: Path) -> dict[str, str]:
    settings = local_stack_settings(tmp_path / "state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSHIN_")}
    env.update(
        {
            "KENSHIN_STATE_DIR": str(settings.state_dir),
            "KENSHIN_STACK_KAFKA_PORT": str(settings.stack_kafka_port),
            "KENSHIN_STACK_CONTROLLER_PORT": str(settings.stack_controller_port),
            "KENSHIN_STACK_REGISTRY_PORT": str(settings.stack_registry_port),
        }
    )
    if "KENSHIN_CACHE_DIR" in os.environ:
        env["KENSHIN_CACHE_DIR"] = os.environ["KENSHIN_CACHE_DIR"]
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_up_apply_register_down_twice_in_a_row(tmp_path: Path, endpoints: Endpoints) -> None:
    env = _stack_env(tmp_path)
    try:
        for _round in range(2):
            for args in (
                ("stack", "up"),
                ("stack", "up"),
                ("stack", "status"),
                ("topics", "apply"),
                ("schemas", "register"),
                ("stack", "down"),
            ):
                run = _cli(env, *args)
                assert run.returncode == 0, f"{args}: {run.stdout}{run.stderr}"
                if args == ("stack", "status"):
                    assert f"127.0.0.1:{env['KENSHIN_STACK_KAFKA_PORT']}" in run.stdout
                    assert "registry   running" in run.stdout
        status = _cli(env, "stack", "status")
        assert status.returncode == 1
        assert "stopped" in status.stdout
        # `down` stopped only its own processes: the session's cluster still answers.
        assert AdminClient({"bootstrap.servers": endpoints.bootstrap}).list_topics(timeout=10).brokers
    finally:
        _cli(env, "stack", "down", "--purge")


def test_registered_schemas_and_topics_survive_a_restart(tmp_path: Path) -> None:
    env = _stack_env(tmp_path)
    try:
        assert _cli(env, "stack", "up").returncode == 0
        assert _cli(env, "topics", "apply").returncode == 0
        first = _cli(env, "schemas", "register")
        assert _cli(env, "stack", "down").returncode == 0
        assert _cli(env, "stack", "up").returncode == 0
        again = _cli(env, "schemas", "register")
        assert again.returncode == 0
        assert again.stdout == first.stdout  # same schema ids after the restart
        assert "topics already match the catalog" in _cli(env, "topics", "apply").stdout
    finally:
        _cli(env, "stack", "down", "--purge")


def test_three_node_cluster_survives_the_loss_of_one_node(tmp_path: Path) -> None:
    settings = local_stack_settings(tmp_path / "state3", nodes=3)
    stack = LocalStack(settings, echo=lambda _line: None)
    try:
        info = stack.up(nodes=3)
        assert len(info.bootstrap.split(",")) == 3
        admin = AdminClient({"bootstrap.servers": info.bootstrap})
        apply(admin, [RESIDENTS])
        # apply waits until the broker it asks shows the topic; describe may ask another broker, whose copy of the
        # KRaft metadata log can lag behind by seconds on a loaded machine (CI saw it absent there): bounded wait
        deadline = time.monotonic() + 60
        [state] = describe(admin, [RESIDENTS])
        while not state.exists and time.monotonic() < deadline:
            time.sleep(0.5)
            [state] = describe(admin, [RESIDENTS])
        assert state.replication_factor == 3
        assert state.configs["min.insync.replicas"] == "2"

        victim = int((settings.state_dir / "pids" / "kafka-3.pid").read_text())
        os.kill(victim, signal.SIGKILL)
        producer = Producer({"bootstrap.servers": info.bootstrap, "acks": "all", "enable.idempotence": True})
        for i in range(100):
            producer.produce(RESIDENTS.name, key=f"012041:{i}".encode(), value=b"x")
        assert producer.flush(60) == 0  # two in-sync replicas of three still accept acks=all

        consumer = Consumer(
            {"bootstrap.servers": info.bootstrap, "group.id": "three-nodes", "auto.offset.reset": "earliest"}
        )
        consumer.subscribe([RESIDENTS.name])
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 100 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                seen += 1
        consumer.close()
        assert seen == 100
    finally:
        stack.down(purge=True)


def test_up_with_another_node_count_is_refused(tmp_path: Path) -> None:
    env = _stack_env(tmp_path)
    try:
        assert _cli(env, "stack", "up").returncode == 0
        run = _cli(env, "stack", "up", "--nodes", "3")
        assert run.returncode == 1
        assert "stack down --purge" in run.stderr
    finally:
        _cli(env, "stack", "down", "--purge")
