"""The secrets and configuration of the secured docker-compose stack: `kenshin-hub compose init`.

docker-compose.yml runs the same security as `kenshin-hub stack up`, from files this module writes on the host
with the local stack's own code (hub/runtime/pki.py, kafka.py, gate.py): a CA and a server certificate that also
names the compose services (``kafka``, ``registry-gate``), one random SCRAM password per principal of
topics/access.toml, the broker's KRaft configuration (SASL_SSL listeners, mutual TLS for the controller,
StandardAuthorizer) with a start script that formats the storage with the brokers' and the admin's credentials, and
the registry gate's nginx configuration. Everything is 0600 in 0700 folders; the containers run as the user who
wrote them (``KENSHIN_UID``/``KENSHIN_GID``), so nothing needs to be readable by anyone else, and the CA key is
never mounted into a container.

The layout under ``root`` (``compose-secrets/`` by default), each folder mounted read-only where it is used:

* ``ca/``: the CA and server keys (`Pki`), on the host only;
* ``kafka/``: ``server.pem``, ``ca.pem``, ``server.properties``, ``start.sh`` (the broker's container);
* ``gate/``: ``server-cert.pem``, ``server-key.pem``, ``htpasswd``, ``nginx.conf`` (the registry gate);
* ``clients/``: ``ca.pem`` and ``kafka/<principal>.password`` (the hub's containers);
* ``../compose-data/``: the broker's log segments and the hub's state folder (keys, the simulated stores), owned by
  the same user.
"""

from __future__ import annotations

import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from hub import access
from hub.runtime import gate, kafka
from hub.runtime.pki import Passwords, Pki, owner_only, private_dir, write_private
from hub.runtime.stack import node_security, principal_passwords

CONTAINER_ROOT = Path("/etc/kenshin")  # where each service's folder of ``root`` is mounted
SERVICE_NAMES = ("kafka", "registry-gate")  # the certificate's names inside the compose network
INTERNAL_PORT = 19092  # the compose network's listener (kafka:19092)
EXTERNAL_PORT = 9092  # the host's (127.0.0.1:9092)
CONTROLLER_PORT = 9093
GATE_PORT = 8443
KAFKA_DATA = Path("/var/lib/kafka")


@dataclass(frozen=True)
class ComposeFiles:
    root: Path
    data: Path

    @property
    def kafka(self) -> Path:
        return self.root / "kafka"

    @property
    def gate(self) -> Path:
        return self.root / "gate"

    @property
    def clients(self) -> Path:
        return self.root / "clients"


def broker_properties(passwords: Passwords) -> str:
    """The single broker+controller of docker-compose: SASL_SSL inside the compose network (``kafka:19092``) and on
    the host's loopback (``127.0.0.1:9092``), mutual TLS for the controller, no PLAINTEXT listener at all.
    """
    inside = CONTAINER_ROOT / "kafka"
    security = _security(passwords, inside)
    node = kafka.KafkaNode(
        node_id=1,
        broker_port=INTERNAL_PORT,
        controller_port=CONTROLLER_PORT,
        data_dir=KAFKA_DATA,
        cluster_size=1,
        quorum_voters=f"1@kafka:{CONTROLLER_PORT}",
        security=security,
    )
    props = node.property_map()
    jaas = props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    props.update(
        {
            "listeners": f"SASL_SSL://0.0.0.0:{INTERNAL_PORT},EXTERNAL://0.0.0.0:{EXTERNAL_PORT},"
            f"CONTROLLER://0.0.0.0:{CONTROLLER_PORT}",
            "advertised.listeners": f"SASL_SSL://kafka:{INTERNAL_PORT},EXTERNAL://127.0.0.1:{EXTERNAL_PORT}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SSL",
            "listener.name.external.scram-sha-512.sasl.jaas.config": jaas,
            "log.dirs": str(KAFKA_DATA / "data"),
        }
    )
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _security(passwords: Passwords, inside: Path) -> kafka.NodeSecurity:
    return node_security(passwords, keystore=inside / "server.pem", truststore=inside / "ca.pem")


def scram_bootstrap(passwords: Passwords) -> tuple[str, ...]:
    """``kafka-storage format``'s arguments for the brokers' and the admin's SCRAM credentials."""
    return _security(passwords, CONTAINER_ROOT / "kafka").scram_bootstrap()


def start_script(passwords: Passwords, cluster_id: str) -> str:
    """The broker container's command: format the KRaft storage once, with the brokers' and the admin's SCRAM
    credentials (the other principals are created by `kenshin-hub access apply`), then run the broker.
    """
    config = CONTAINER_ROOT / "kafka" / "server.properties"
    scram = " ".join(shlex.quote(a) for a in scram_bootstrap(passwords))
    return f"""\
#!/bin/sh
# Written by `kenshin-hub compose init` (hub/runtime/compose.py); holds two passwords: 0600.
set -eu
export LOG_DIR=/tmp/kafka-logs
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id {shlex.quote(cluster_id)} \\
  --config {config} {scram}
exec /opt/kafka/bin/kafka-server-start.sh {config}
"""


def client_properties(passwords: Passwords) -> str:
    """The admin's client settings inside the broker's container (its health check)."""
    return (
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        f"sasl.jaas.config={kafka.scram_jaas(access.ADMIN, passwords.ensure(access.ADMIN))}\n"
        f"ssl.truststore.type=PEM\nssl.truststore.location={CONTAINER_ROOT / 'kafka' / 'ca.pem'}\n"
    )


def write_env(path: Path, uid: int, gid: int) -> None:
    """docker compose's ``.env`` (0600): the user the containers run as, and random passwords for PostgreSQL and
    Grafana's admin. Values already there are kept; the file's other lines too.
    """
    lines = path.read_text().splitlines() if path.exists() else []
    have = {line.split("=", 1)[0] for line in lines if "=" in line and not line.lstrip().startswith("#")}
    wanted = {
        "KENSHIN_UID": str(uid),
        "KENSHIN_GID": str(gid),
        "KENSHIN_DB_PASSWORD": secrets.token_urlsafe(24),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(24),
    }
    added = {k: v for k, v in wanted.items() if k not in have}
    write_private(path, "".join(f"{line}\n" for line in [*lines, *(f"{k}={v}" for k, v in added.items())]).encode())


def gate_config() -> str:
    """nginx in front of the registry: TLS with the server certificate, basic auth against ``htpasswd``."""
    inside = CONTAINER_ROOT / "gate"
    return gate.render(
        listen=f"0.0.0.0:{GATE_PORT}",
        backend="registry:8080",
        cert=inside / "server-cert.pem",
        key=inside / "server-key.pem",
        htpasswd=inside / "htpasswd",
        run_dir=Path("/tmp"),  # noqa: S108 - the gate container's own tmpfs (docker-compose.yml), nobody else's
        temp_dir=Path("/tmp"),  # noqa: S108
        error_log="stderr",
        admin=access.ADMIN,
        preamble="# Written by `kenshin-hub compose init` (hub/runtime/compose.py).\n",
    )


def write(root: Path, data: Path, tenant: str, env: Path) -> ComposeFiles:
    """Write (or complete: existing keys and passwords are kept) the compose stack's files for ``tenant``, and
    ``env`` (docker compose's ``.env``).
    """
    files = ComposeFiles(root, data)
    with owner_only():
        write_env(env, os.getuid(), os.getgid())
        private_dir(root)
        pki = Pki(root / "ca", names=SERVICE_NAMES)
        pki.ensure()
        passwords = Passwords(private_dir(files.clients / "kafka"))
        users = _users(passwords, tenant)
        private_dir(files.kafka)
        _copy(pki.server_pem, files.kafka / "server.pem")
        _copy(pki.ca_cert, files.kafka / "ca.pem")
        write_private(files.kafka / "server.properties", broker_properties(passwords).encode())
        write_private(files.kafka / "client.properties", client_properties(passwords).encode())
        cluster = _cluster_id(files.kafka / "cluster-id")
        write_private(files.kafka / "start.sh", start_script(passwords, cluster).encode())
        private_dir(files.gate)
        _copy(pki.server_cert, files.gate / "server-cert.pem")
        _copy(pki.server_key, files.gate / "server-key.pem")
        gate.write_htpasswd(files.gate, {u: p for u, p in users.items() if u != access.BROKER})
        write_private(files.gate / "nginx.conf", gate_config().encode())
        _copy(pki.ca_cert, files.clients / "ca.pem")
        for sub in ("kafka", "hub-state"):
            private_dir(data / sub)
    return files


def _users(passwords: Passwords, tenant: str) -> dict[str, str]:
    return {access.BROKER: passwords.ensure(access.BROKER), **principal_passwords(passwords, tenant)}


def _copy(source: Path, target: Path) -> None:
    write_private(target, source.read_bytes())


def _cluster_id(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    cluster = kafka.new_cluster_id()
    write_private(path, cluster.encode())
    return cluster
