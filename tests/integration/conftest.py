"""The real broker for the integration tier.

The session's Kafka comes from, in order:
1. ``KENSHIN_KAFKA_BOOTSTRAP_SERVERS`` (and ``KENSHIN_SCHEMA_REGISTRY_URL``) when set: an existing cluster;
2. testcontainers, when a Docker engine answers;
3. the project's own local stack (`kenshin-hub stack up`), started on free ports in a temporary state directory
   and stopped at the end of the session. This is what CI uses: there is no Docker engine on its machines.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from hub.runtime.stack import LocalStack
from hub.settings import PROCESS_NAMES, Settings, env_name, load_settings
from schemas.serde import registry_client


@dataclass(frozen=True)
class Endpoints:
    bootstrap: str
    registry_url: str
    origin: str

    def settings(self, **extra: str) -> Settings:
        env = {"KENSHIN_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KENSHIN_SCHEMA_REGISTRY_URL": self.registry_url}
        env.update(extra)
        return load_settings(env)

    def env(self) -> dict[str, str]:
        """Environment for a `kenshin-hub` subprocess pointed at this cluster.

        Metrics ports are 0 (any free port): test processes never collide with each other, with a concurrent
        session or with a hub running on the default ports.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("KENSHIN_")}
        env["KENSHIN_KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap
        env["KENSHIN_SCHEMA_REGISTRY_URL"] = self.registry_url
        env["KENSHIN_RETENTION_SCHEDULE"] = "off"  # the tests seed old data on purpose; retention has its own tests
        for process in PROCESS_NAMES:
            env[env_name(f"metrics_{process}_port")] = "0"
        return env


OWNER_FILE = "pytest-owner.pid"  # the pytest process that started a stack in this state dir


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(count: int) -> int:
    """First port of ``count`` consecutive free loopback ports, below the ephemeral range.

    Ports in the ephemeral range can be taken by any outgoing connection between the check and the broker's bind
    (seen in CI: a broker exited at start-up); ports below it are only ever taken by a listener.
    """
    rng = random.Random()
    high = max(_ephemeral_start(), 12000)
    for _ in range(200):
        base = rng.randrange(10000, high - count)
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no block of free ports found")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def local_stack_settings(state_dir: Path, nodes: int = 1, security: str = "plaintext") -> Settings:
    """Settings of a local stack on free ports in ``state_dir``.

    The session's shared stack is plaintext, so every test's clients stay simple; the secured default is proven by
    tests/integration/test_security.py (the pipeline and the provision flow over SASL_SSL with the real ACLs) and
    test_stack_cli.py (the CLI's `stack up` as a new user runs it).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / OWNER_FILE).write_text(str(os.getpid()))
    env = {
        "KENSHIN_STACK_SECURITY": security,
        "KENSHIN_STATE_DIR": str(state_dir),
        "KENSHIN_STACK_KAFKA_PORT": str(free_port_block(nodes)),
        "KENSHIN_STACK_CONTROLLER_PORT": str(free_port_block(nodes)),
        "KENSHIN_STACK_REGISTRY_PORT": str(free_port_block(1)),
    }
    if "KENSHIN_CACHE_DIR" in os.environ:
        env["KENSHIN_CACHE_DIR"] = os.environ["KENSHIN_CACHE_DIR"]
    return load_settings(env)


def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no Docker"
        return False


def _testcontainers(stack: ExitStack) -> Endpoints:  # pragma: no cover - only where a Docker engine runs
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:8.0.0").with_kraft())
    registry = DockerContainer("apicurio/apicurio-registry-mem:2.6.13.Final").with_exposed_ports(8080)
    registry = stack.enter_context(registry)
    wait_for_logs(registry, "Listening on", timeout=120)
    url = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(8080)}/apis/ccompat/v7"
    return Endpoints(kafka.get_bootstrap_server(), url, "testcontainers")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_stale_stacks(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Stop local stacks left by earlier sessions that died without their teardown (e.g. a crash).

    A stack whose owning pytest process still runs belongs to a concurrent session (a second checkout, a helper)
    and is left alone.
    """
    from hub.runtime.process import stop

    root = tmp_path_factory.getbasetemp().parent
    for pid_file in root.glob("pytest-*/*/pids/*.pid"):
        state_dir = pid_file.parent.parent
        owner = state_dir / OWNER_FILE
        try:
            if _alive(int(owner.read_text().strip())):
                continue
        except (OSError, ValueError):
            pass
        stop(pid_file, str(state_dir.resolve()), timeout=10)


@pytest.fixture(scope="session")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    if os.environ.get("KENSHIN_KAFKA_BOOTSTRAP_SERVERS"):
        url = os.environ.get("KENSHIN_SCHEMA_REGISTRY_URL", Settings().schema_registry_url)
        yield Endpoints(os.environ["KENSHIN_KAFKA_BOOTSTRAP_SERVERS"], url, "environment")
        return
    with ExitStack() as stack:
        if _docker_answers():
            yield _testcontainers(stack)
            return
        _stop_stale_stacks(tmp_path_factory)
        settings = local_stack_settings(tmp_path_factory.mktemp("stack"))
        local = LocalStack(settings, echo=lambda _line: None)
        stack.callback(local.down, purge=True)
        info = local.up()
        yield Endpoints(info.bootstrap, info.registry_url, "local stack")


@pytest.fixture
def admin(endpoints: Endpoints) -> AdminClient:
    return AdminClient({"bootstrap.servers": endpoints.bootstrap})


@pytest.fixture
def registry(endpoints: Endpoints) -> Iterator[SchemaRegistryClient]:
    with registry_client({"url": endpoints.registry_url}) as client:
        yield client


@pytest.fixture
def unique() -> str:
    """A suffix that keeps one test's topics and groups apart from every other test's."""
    return uuid.uuid4().hex[:10]
