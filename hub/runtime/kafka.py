"""KRaft configuration and commands for local Apache Kafka nodes (combined broker + controller)."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from hub.runtime.errors import StackError
from hub.runtime.pki import write_private

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def scram_jaas(user: str, password: str) -> str:
    """A Java client's (or a broker's own) SCRAM login: the value of a ``sasl.jaas.config``."""
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";'


@dataclass(frozen=True)
class NodeSecurity:
    """A secured node: SASL_SSL (SCRAM-SHA-512) for clients and between brokers, mutual TLS between controllers,
    and KRaft's StandardAuthorizer with no access where no ACL grants it (``super_users`` excepted).
    """

    keystore: Path  # PEM: PKCS#8 private key + certificate chain
    truststore: Path  # PEM: the CA certificate
    broker_user: str
    broker_password: str
    super_users: tuple[str, ...]  # principals, e.g. "User:admin"
    admin_user: str
    admin_password: str

    def properties(self, broker_port: int, controller_port: int) -> dict[str, str]:
        jaas = scram_jaas(self.broker_user, self.broker_password)
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{broker_port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.truststore),
            "ssl.endpoint.identification.algorithm": "https",
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join(self.super_users),
        }

    def scram_bootstrap(self) -> tuple[str, ...]:
        """``kafka-storage format`` arguments that give the brokers and the admin their credentials from the start."""
        out: list[str] = []
        for user, password in ((self.broker_user, self.broker_password), (self.admin_user, self.admin_password)):
            out += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        return tuple(out)


@dataclass(frozen=True)
class KafkaNode:
    """One combined broker+controller of a local cluster of ``cluster_size`` nodes."""

    node_id: int
    broker_port: int
    controller_port: int
    data_dir: Path
    cluster_size: int
    quorum_voters: str
    security: NodeSecurity | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    def properties(self) -> str:
        return "".join(f"{k}={v}\n" for k, v in self.property_map().items())

    def property_map(self) -> dict[str, str]:
        replication = min(3, self.cluster_size)
        min_isr = 1 if replication == 1 else 2
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum_voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.broker_port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": "3",
            "default.replication.factor": str(replication),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(replication),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(replication),
            "transaction.state.log.min.isr": str(min_isr),
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": str(replication),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.check.interval.ms": "60000",
            "num.io.threads": "4",
            "num.network.threads": "2",
        }
        if self.security is not None:
            props.update(self.security.properties(self.broker_port, self.controller_port))
        return props

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j2.properties"


def cluster_nodes(
    data_root: Path, *, size: int, broker_port: int, controller_port: int, security: NodeSecurity | None = None
) -> list[KafkaNode]:
    voters = ",".join(f"{i + 1}@127.0.0.1:{controller_port + i}" for i in range(size))
    return [
        KafkaNode(
            node_id=i + 1,
            broker_port=broker_port + i,
            controller_port=controller_port + i,
            data_dir=data_root / f"node-{i + 1}",
            cluster_size=size,
            quorum_voters=voters,
            security=security,
        )
        for i in range(size)
    ]


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as `kafka-storage random-uuid`).

    Like Kafka's own ``Uuid.randomUuid``, never one starting with '-', which a command line would take for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def java_command(java: str, libs: Path, node: KafkaNode, heap: str, main: str, *args: str) -> list[str]:
    return [
        java,
        f"-Xmx{heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.log4j_file}",
        f"-Dkafka.logs.dir={node.data_dir / 'logs'}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def format_storage(java: str, libs: Path, node: KafkaNode, cluster_id: str) -> None:
    """Write the node's configuration and format its KRaft storage once (no-op when already formatted)."""
    node.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(node.data_dir, 0o700)  # the log segments hold personal data; the properties, a password
    write_private(node.config_file, node.properties().encode())
    write_private(node.log4j_file, _LOG4J2.encode())
    if (node.data_dir / "data" / "meta.properties").exists():
        return
    cmd = java_command(
        java,
        libs,
        node,
        "256m",
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id}",
        "-c",
        str(node.config_file),
        "--ignore-formatted",
        *(node.security.scram_bootstrap() if node.security is not None else ()),
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise StackError(f"formatting KRaft storage of node {node.node_id} failed:\n{proc.stdout}{proc.stderr}")


def server_command(java: str, libs: Path, node: KafkaNode, heap: str) -> list[str]:
    return java_command(java, libs, node, heap, "kafka.Kafka", str(node.config_file))
