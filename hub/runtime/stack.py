"""`kenshin-hub stack up | down | status`: a real Kafka cluster and schema registry, no Docker.

State directory layout (``KENSHIN_STATE_DIR``)::

    stack.json                what `up` started: node count, cluster id, ports
    kafka/node-N/             server.properties, log4j2.properties, KRaft data
    registry/                 Apicurio Registry's H2 database file
    pids/*.pid, logs/*.log    one per process

The registry is Apicurio Registry (Confluent-compatible API under ``/apis/ccompat/v7``) with its storage in an
H2 file under the state directory, so registered schemas survive `down`/`up` exactly like the topics do.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hub.runtime import kafka, maven
from hub.runtime.errors import StackError
from hub.runtime.process import running_pid, spawn, stop
from hub.settings import Settings

READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class StackLayout:
    state_dir: Path

    @property
    def manifest(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def marker(self) -> str:
        return str(self.state_dir.resolve())

    def pid_file(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def kafka_root(self) -> Path:
        return self.state_dir.resolve() / "kafka"

    def registry_dir(self) -> Path:
        return self.state_dir.resolve() / "registry"


@dataclass(frozen=True)
class StackInfo:
    nodes: int
    bootstrap: str
    registry_url: str


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(what: str, check: Callable[[], bool], log: Path, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    delay = 0.2
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise StackError(f"{what} exited during start-up; last lines of {log}:\n{_log_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    raise StackError(f"{what} was not ready after {READY_TIMEOUT_S:.0f}s; see {log}:\n{_log_tail(log)}")


def _kafka_ready(bootstrap: str, expected_brokers: int) -> bool:
    """Ready when the admin client sees every broker and an active controller."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    try:
        cluster = admin.describe_cluster(request_timeout=3).result(timeout=5)
    except Exception:  # noqa: BLE001 - any failure here just means "not ready yet"
        return False
    return len(cluster.nodes) >= expected_brokers and cluster.controller is not None


def _registry_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as resp:  # noqa: S310 - our loopback URL
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class LocalStack:
    """The local cluster described by the settings' state directory and ports."""

    def __init__(self, settings: Settings, *, echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.layout = StackLayout(settings.state_dir)
        self.echo = echo

    # -- manifest -------------------------------------------------------------------------------------------

    def _read_manifest(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.layout.manifest.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.stack_registry_port}/apis/ccompat/v7"

    def _nodes(self, size: int) -> list[kafka.KafkaNode]:
        return kafka.cluster_nodes(
            self.layout.kafka_root(),
            size=size,
            broker_port=self.settings.stack_kafka_port,
            controller_port=self.settings.stack_controller_port,
        )

    # -- up ---------------------------------------------------------------------------------------------------

    def up(self, nodes: int = 1) -> StackInfo:
        if nodes < 1:
            raise StackError("--nodes must be at least 1")
        java = maven.require_java()
        manifest = self._read_manifest()
        if manifest is not None and manifest.get("nodes") != nodes:
            raise StackError(
                f"the stack in {self.layout.state_dir} was created with {manifest.get('nodes')} node(s); "
                f"run `kenshin-hub stack down --purge` before starting it with {nodes}"
            )
        libs = maven.resolve_kafka(self.settings.cache_dir)
        runner = maven.resolve_apicurio(self.settings.cache_dir)
        cluster_id = str(manifest["cluster_id"]) if manifest else kafka.new_cluster_id()
        members = self._nodes(nodes)
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        (self.layout.state_dir / "pids").mkdir(exist_ok=True)
        bootstrap = ",".join(n.bootstrap for n in members)
        self.layout.manifest.write_text(
            json.dumps(
                {
                    "nodes": nodes,
                    "cluster_id": cluster_id,
                    "bootstrap": bootstrap,
                    "registry_url": self.registry_url(),
                    "kafka_version": maven.KAFKA_VERSION,
                    "registry": f"Apicurio Registry {maven.APICURIO_VERSION}",
                },
                indent=2,
            )
        )
        for node in members:
            self._start_node(java, libs, node, cluster_id)
        self._start_registry(java, runner)
        started = [(f"kafka-{n.node_id}", n) for n in members]
        _wait(
            f"Kafka ({nodes} node(s))",
            lambda: _kafka_ready(bootstrap, nodes),
            self.layout.log_file(started[0][0]),
            lambda: all(running_pid(self.layout.pid_file(name), self.layout.marker) for name, _ in started),
        )
        _wait(
            "schema registry",
            lambda: _registry_ready(self.registry_url()),
            self.layout.log_file("registry"),
            lambda: running_pid(self.layout.pid_file("registry"), self.layout.marker) is not None,
        )
        return StackInfo(nodes=nodes, bootstrap=bootstrap, registry_url=self.registry_url())

    def _start_node(self, java: str, libs: Path, node: kafka.KafkaNode, cluster_id: str) -> None:
        name = f"kafka-{node.node_id}"
        if running_pid(self.layout.pid_file(name), self.layout.marker):
            self.echo(f"{name}: already running on {node.bootstrap}")
            return
        for port in (node.broker_port, node.controller_port):
            if _port_busy(port):
                raise StackError(f"port {port} for {name} is in use by another process; set KENSHIN_STACK_*_PORT")
        kafka.format_storage(java, libs, node, cluster_id)
        spawn(
            kafka.server_command(java, libs, node, self.settings.stack_kafka_heap),
            pid_file=self.layout.pid_file(name),
            log_file=self.layout.log_file(name),
        )
        self.echo(f"{name}: starting on {node.bootstrap}")

    def _start_registry(self, java: str, runner: Path) -> None:
        port = self.settings.stack_registry_port
        if running_pid(self.layout.pid_file("registry"), self.layout.marker):
            self.echo(f"registry: already running on {self.registry_url()}")
            return
        if _port_busy(port):
            raise StackError(
                f"port {port} for the registry is in use by another process; set KENSHIN_STACK_REGISTRY_PORT"
            )
        db_dir = self.layout.registry_dir()
        db_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "QUARKUS_HTTP_HOST": "127.0.0.1",
                "QUARKUS_HTTP_PORT": str(port),
                "REGISTRY_DATASOURCE_URL": f"jdbc:h2:file:{db_dir / 'registry'}",
                "QUARKUS_LOG_CONSOLE_JSON": "false",
            }
        )
        cmd = [java, "-Xmx384m", "-XX:+UseSerialGC", f"-Dkenshin.state={self.layout.marker}", "-jar", str(runner)]
        spawn(cmd, pid_file=self.layout.pid_file("registry"), log_file=self.layout.log_file("registry"), env=env)
        self.echo(f"registry: starting on {self.registry_url()}")

    # -- down / status ------------------------------------------------------------------------------------------

    def _process_names(self) -> list[str]:
        pids = self.layout.state_dir / "pids"
        return sorted(p.stem for p in pids.glob("*.pid")) if pids.exists() else []

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop what `up` started (registry first, then brokers); with ``purge`` delete the state too."""
        names = self._process_names()
        stopped = [n for n in names if n == "registry" and stop(self.layout.pid_file(n), self.layout.marker)]
        # The brokers together: stopped one after another, the last one has no KRaft quorum left and never finishes
        # its shutdown (it was SIGKILLed after the timeout).
        brokers = [n for n in names if n != "registry"]
        with ThreadPoolExecutor(max_workers=max(1, len(brokers))) as pool:
            done = list(pool.map(lambda n: stop(self.layout.pid_file(n), self.layout.marker), brokers))
        stopped += [n for n, ok in zip(brokers, done, strict=True) if ok]
        if purge:
            for sub in ("kafka", "registry", "pids", "logs"):
                shutil.rmtree(self.layout.state_dir / sub, ignore_errors=True)
            # The services' stores under the state directory go with the topics they count offsets in.
            for store in ("processors.db", "chukan.db", "network.db"):
                for suffix in ("", "-wal", "-shm"):
                    (self.layout.state_dir / f"{store}{suffix}").unlink(missing_ok=True)
            self.layout.manifest.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, object]:
        manifest = self._read_manifest()
        names = set(self._process_names())
        if manifest is not None:
            names |= {f"kafka-{i + 1}" for i in range(int(str(manifest.get("nodes", 1))))} | {"registry"}
        processes = {name: running_pid(self.layout.pid_file(name), self.layout.marker) for name in sorted(names)}
        return {"state_dir": str(self.layout.state_dir), "manifest": manifest, "processes": processes}
