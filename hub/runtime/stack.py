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

import base64
import json
import os
import random
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hub import access
from hub.runtime import gate, kafka, maven
from hub.runtime.errors import StackError
from hub.runtime.pki import SERVER_NAME, Passwords, Pki, owner_only, private_dir, write_private
from hub.runtime.process import running_pid, spawn, stop
from hub.settings import CLIENT_PROFILE, Settings, local_profile

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

    def pki(self) -> Pki:
        return Pki(self.state_dir.resolve() / "tls")

    def passwords(self) -> Passwords:
        return Passwords(self.state_dir.resolve() / "secrets" / "kafka")

    @property
    def client_profile(self) -> Path:
        return self.state_dir / CLIENT_PROFILE


@dataclass(frozen=True)
class StackInfo:
    nodes: int
    bootstrap: str
    registry_url: str


def _free_port() -> int:
    """A free loopback port for the registry's backend behind the gate, below the ephemeral range: a port in that
    range can be taken by any outgoing connection between this check and the registry's bind.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10000, max(low, 12000))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StackError("no free loopback port for the registry's backend")


def _port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(what: str, check: Callable[[], bool], logs: Path | tuple[Path, ...], alive: Callable[[], bool]) -> None:
    """Wait until ``check`` passes; when the process dies or the time is up, the error quotes each of its ``logs``
    (nginx, for one, writes a start-up failure to stderr and a later one to its error log).
    """
    paths = logs if isinstance(logs, tuple) else (logs,)

    def tails() -> str:
        return "\n".join(f"last lines of {path}:\n{_log_tail(path)}" for path in paths)

    deadline = time.monotonic() + READY_TIMEOUT_S
    delay = 0.2
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise StackError(f"{what} exited during start-up; {tails()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    raise StackError(f"{what} was not ready after {READY_TIMEOUT_S:.0f}s; {tails()}")


def _kafka_ready(conf: dict[str, str], expected_brokers: int) -> bool:
    """Ready when the admin client sees every broker and an active controller."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**conf, "socket.timeout.ms": 2000, "log_level": 0})
    try:
        cluster = admin.describe_cluster(request_timeout=3).result(timeout=5)
    except Exception:  # noqa: BLE001 - any failure here just means "not ready yet"
        return False
    return len(cluster.nodes) >= expected_brokers and cluster.controller is not None


def _registry_ready(url: str, ca_file: Path | None = None, user: tuple[str, str] | None = None) -> bool:
    request = urllib.request.Request(f"{url}/subjects")  # noqa: S310 - our loopback URL
    if user is not None:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as resp:  # noqa: S310
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
        scheme = "https" if self.secured else "http"
        return f"{scheme}://127.0.0.1:{self.settings.stack_registry_port}/apis/ccompat/v7"

    def _backend_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/apis/ccompat/v7"

    @property
    def secured(self) -> bool:
        return self.settings.stack_security == "sasl_ssl"

    def _nodes(self, size: int, security: kafka.NodeSecurity | None = None) -> list[kafka.KafkaNode]:
        return kafka.cluster_nodes(
            self.layout.kafka_root(),
            size=size,
            broker_port=self.settings.stack_kafka_port,
            controller_port=self.settings.stack_controller_port,
            security=security,
        )

    def _security(self) -> kafka.NodeSecurity | None:
        """The CA, the server key and the brokers' password, created on the first secured `up`."""
        if not self.secured:
            return None
        pki = self.layout.pki()
        pki.ensure()
        return node_security(self.layout.passwords(), keystore=pki.server_pem, truststore=pki.ca_cert)

    def admin_config(self, bootstrap: str) -> dict[str, str]:
        """librdkafka settings of the stack's admin principal (the operator's tooling)."""
        conf = {"bootstrap.servers": bootstrap}
        if self.secured:
            conf.update(
                {
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": access.ADMIN,
                    "sasl.password": self.layout.passwords().ensure(access.ADMIN),
                    "ssl.ca.location": str(self.layout.pki().ca_cert),
                }
            )
        return conf

    def _users(self, tenant: str) -> dict[str, str]:
        return principal_passwords(self.layout.passwords(), tenant)

    def _gate_users(self) -> dict[str, str]:
        """Everyone the registry gate lets in: every principal with a password (the brokers' own excepted)."""
        passwords = self.layout.passwords()
        return {user: passwords.read(user) for user in passwords.known() if user != access.BROKER}

    def grant_tenant(self, tenant: str, bootstrap: str | None = None) -> int:
        """A tenant's principals as SCRAM users with their ACLs, and known to the registry gate; the ACL count.
        The shared services (中間サーバー, network) are granted the tenant topics of every municipality of the
        simulated network, which they serve.

        `stack up` grants the city's tenant; `kenshin-hub setup` (and the benchmarks' throw-away tenants) any other.
        """
        from confluent_kafka.admin import AdminClient

        if not self.secured:
            return 0
        with owner_only():
            users = self._users(tenant)
            admin = AdminClient({**self.admin_config(bootstrap or self.settings.kafka_bootstrap_servers),
                                 "log_level": 0})  # fmt: skip
            count = access.grant(admin, tenant, users)
            gate.write_htpasswd(self.layout.state_dir.resolve() / "registry-gate", self._gate_users())
        return count

    def _grant(self, bootstrap: str) -> int:
        return self.grant_tenant(self.settings.tenant, bootstrap)

    def _write_profile(self) -> None:
        if not self.secured:
            self.layout.client_profile.unlink(missing_ok=True)
            return
        profile = {"ca_file": str(self.layout.pki().ca_cert), "credentials_dir": str(self.layout.passwords().root)}
        write_private(self.layout.client_profile, json.dumps(profile, indent=2).encode())

    # -- up ---------------------------------------------------------------------------------------------------

    def up(self, nodes: int = 1) -> StackInfo:
        """Start (or join) the stack; everything it writes, and its processes write, is owner-only."""
        with owner_only():
            return self._up(nodes)

    def _up(self, nodes: int) -> StackInfo:
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
        security_mode = self.settings.stack_security
        created_with = manifest.get("security", "plaintext") if manifest is not None else security_mode
        if created_with != security_mode:
            raise StackError(
                f"the stack in {self.layout.state_dir} was created with security {created_with}; "
                f"run `kenshin-hub stack down --purge` before starting it with KENSHIN_STACK_SECURITY={security_mode}"
            )
        cluster_id = str(manifest["cluster_id"]) if manifest else kafka.new_cluster_id()
        backend_port = int(str(manifest.get("registry_backend_port", 0))) if manifest else 0
        if self.secured and not backend_port:
            backend_port = _free_port()
        private_dir(self.layout.state_dir)
        for sub in ("pids", "logs", "kafka", "secrets"):
            private_dir(self.layout.state_dir / sub)
        members = self._nodes(nodes, self._security())
        bootstrap = ",".join(n.bootstrap for n in members)
        write_private(
            self.layout.manifest,
            json.dumps(
                {
                    "nodes": nodes,
                    "cluster_id": cluster_id,
                    "bootstrap": bootstrap,
                    "registry_url": self.registry_url(),
                    "kafka_version": maven.KAFKA_VERSION,
                    "registry": f"Apicurio Registry {maven.APICURIO_VERSION}",
                    "security": security_mode,
                    **({"registry_backend_port": backend_port} if self.secured else {}),
                },
                indent=2,
            ).encode(),
        )
        for node in members:
            self._start_node(java, libs, node, cluster_id)
        self._start_registry(java, runner, backend_port)
        started = [(f"kafka-{n.node_id}", n) for n in members]
        admin_conf = self.admin_config(bootstrap)
        _wait(
            f"Kafka ({nodes} node(s))",
            lambda: _kafka_ready(admin_conf, nodes),
            self.layout.log_file(started[0][0]),
            lambda: all(running_pid(self.layout.pid_file(name), self.layout.marker) for name, _ in started),
        )
        _wait(
            "schema registry",
            lambda: _registry_ready(self._backend_url(backend_port) if self.secured else self.registry_url()),
            self.layout.log_file("registry"),
            lambda: running_pid(self.layout.pid_file("registry"), self.layout.marker) is not None,
        )
        if self.secured:
            self._start_gate(backend_port)
            admin = (access.ADMIN, self.layout.passwords().ensure(access.ADMIN))
            _wait(
                "registry gate (nginx)",
                lambda: _registry_ready(self.registry_url(), self.layout.pki().ca_cert, admin),
                (
                    self.layout.log_file("registry-gate"),
                    self.layout.state_dir.resolve() / "registry-gate" / "logs" / "error.log",
                ),
                lambda: running_pid(self.layout.pid_file("registry-gate"), self.layout.marker) is not None,
            )
        if self.secured:
            acls = self._grant(bootstrap)
            self.echo(f"security: SASL_SSL (SCRAM-SHA-512), {acls} ACLs for tenant {self.settings.tenant}")
        self._write_profile()
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

    def _start_gate(self, backend_port: int) -> None:
        name = "registry-gate"
        if running_pid(self.layout.pid_file(name), self.layout.marker):
            return
        port = self.settings.stack_registry_port
        if _port_busy(port):
            raise StackError(
                f"port {port} for the registry is in use by another process; set KENSHIN_STACK_REGISTRY_PORT"
            )
        self._users(self.settings.tenant)
        config = gate.write_config(
            self.layout.state_dir.resolve() / "registry-gate",
            port=port,
            backend_port=backend_port,
            pki=self.layout.pki(),
            users=self._gate_users(),
            admin=access.ADMIN,
        )
        # Its configuration's path (under the state directory) tells `down` and `status` the process is this stack's.
        spawn(gate.command(config), pid_file=self.layout.pid_file(name), log_file=self.layout.log_file(name))
        self.echo(f"registry gate: starting on {self.registry_url()} (TLS, basic auth)")

    def _start_registry(self, java: str, runner: Path, backend_port: int = 0) -> None:
        port = backend_port or self.settings.stack_registry_port
        if running_pid(self.layout.pid_file("registry"), self.layout.marker):
            self.echo(f"registry: already running on {self.registry_url()}")
            return
        if _port_busy(port):
            raise StackError(
                f"port {port} for the registry is in use by another process; set KENSHIN_STACK_REGISTRY_PORT"
            )
        db_dir = self.layout.registry_dir()
        private_dir(db_dir)
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
        self.echo(f"registry: starting on {self._backend_url(port) if backend_port else self.registry_url()}")

    # -- down / status ------------------------------------------------------------------------------------------

    def _process_names(self) -> list[str]:
        pids = self.layout.state_dir / "pids"
        return sorted(p.stem for p in pids.glob("*.pid")) if pids.exists() else []

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop what `up` started (registry first, then brokers); with ``purge`` delete the state too."""
        names = self._process_names()
        front = ("registry-gate", "registry")
        stopped = [n for n in front if n in names and stop(self.layout.pid_file(n), self.layout.marker)]
        # The brokers together: stopped one after another, the last one has no KRaft quorum left and never finishes
        # its shutdown (it was SIGKILLed after the timeout).
        brokers = [n for n in names if n not in front]
        with ThreadPoolExecutor(max_workers=max(1, len(brokers))) as pool:
            done = list(pool.map(lambda n: stop(self.layout.pid_file(n), self.layout.marker), brokers))
        stopped += [n for n, ok in zip(brokers, done, strict=True) if ok]
        if purge:
            for sub in ("kafka", "registry", "registry-gate", "pids", "logs", "tls", "secrets"):
                shutil.rmtree(self.layout.state_dir / sub, ignore_errors=True)
            # The services' stores under the state directory go with the topics they count offsets in.
            for store in ("processors.db", "chukan.db", "network.db"):
                for suffix in ("", "-wal", "-shm"):
                    (self.layout.state_dir / f"{store}{suffix}").unlink(missing_ok=True)
            self.layout.manifest.unlink(missing_ok=True)
            self.layout.client_profile.unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, object]:
        manifest = self._read_manifest()
        names = set(self._process_names())
        if manifest is not None:
            names |= {f"kafka-{i + 1}" for i in range(int(str(manifest.get("nodes", 1))))} | {"registry"}
            if manifest.get("security") == "sasl_ssl":
                names.add("registry-gate")
        processes = {name: running_pid(self.layout.pid_file(name), self.layout.marker) for name in sorted(names)}
        return {"state_dir": str(self.layout.state_dir), "manifest": manifest, "processes": processes}


def node_security(passwords: Passwords, *, keystore: Path, truststore: Path) -> kafka.NodeSecurity:
    """A secured broker's settings: its keystore and truststore (as the broker sees them), the brokers' and the
    admin's SCRAM credentials (created when new), and the super users (those two and the controllers' TLS name).
    """
    return kafka.NodeSecurity(
        keystore=keystore,
        truststore=truststore,
        broker_user=access.BROKER,
        broker_password=passwords.ensure(access.BROKER),
        super_users=(f"User:{access.BROKER}", f"User:{access.ADMIN}", f"User:CN={SERVER_NAME}"),
        admin_user=access.ADMIN,
        admin_password=passwords.ensure(access.ADMIN),
    )


def principal_passwords(passwords: Passwords, tenant: str) -> dict[str, str]:
    """``admin`` and every principal of access.toml for ``tenant``, with their passwords (created when new)."""
    users = {access.ADMIN: passwords.ensure(access.ADMIN)}
    for grant in access.load_access().values():
        users[grant.principal(tenant)] = passwords.ensure(grant.principal(tenant))
    return users


def grant_local_tenant(settings: Settings, tenant: str) -> int | None:
    """On the secured local stack, ``tenant``'s principals (SCRAM users, ACLs, registry gate): the ACL count. None
    elsewhere: another cluster's users and ACLs are its operators' (topics/access.toml says what to grant).
    """
    profile = local_profile(settings.state_dir)
    if profile is None or settings.kafka_credentials_dir != profile.credentials_dir:
        return None
    return LocalStack(settings, echo=lambda _line: None).grant_tenant(tenant)


def onboard_tenant(settings: Settings, tenant: str) -> None:
    """A municipality new to the cluster (the benchmarks' throw-away tenants): its tenant topics and, on the
    secured local stack, its principals. ``settings`` are the operator's (the admin identity).
    """
    from confluent_kafka.admin import AdminClient

    from topics.admin import apply
    from topics.catalog import tenant_topics

    apply(AdminClient({**settings.kafka_config(), "log_level": 0}), tenant_topics(tenant))
    grant_local_tenant(settings, tenant)
