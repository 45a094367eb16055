"""The secured docker-compose stack's configuration, run for real without Docker.

These machines have no Docker engine, so the containers themselves cannot run here. What `kenshin-hub compose init`
writes for them can: the broker's KRaft configuration and start-up credentials run on the official Kafka jars (the
image's own broker), with the container's paths, host names and ports mapped to this host's, and the registry
gate's nginx configuration passes `nginx -t`. On that broker `access apply` and `topics apply` (what the compose
file's ``hub-access`` and ``hub-init`` run) make the principals and the ACLs, and the ACLs refuse what
topics/access.toml does not grant, on both listeners.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

from hub.runtime import kafka as local_kafka
from hub.runtime import maven
from hub.runtime.compose import CONTAINER_ROOT, KAFKA_DATA, scram_bootstrap
from hub.runtime.pki import Passwords
from hub.settings import load_settings
from tests.integration.conftest import free_port_block

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TENANT, OTHER = "012041", "011002"


def _mapped(text: str, files: Path, data: Path, ports: dict[int, int]) -> str:
    """A container file as this host runs it: its paths, the service name ``kafka`` (localhost: the certificate
    names both), and its ports.
    """
    text = text.replace(str(CONTAINER_ROOT), str(files)).replace(str(KAFKA_DATA), str(data))
    text = re.sub(r"\bkafka:(\d+)", r"localhost:\1", text)
    return re.sub(r":(19092|9092|9093)\b", lambda m: f":{ports[int(m.group(1))]}", text)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], int, int]]:
    work = tmp_path_factory.mktemp("compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSHIN_")}
    env["KENSHIN_TENANT"] = TENANT
    run = subprocess.run([sys.executable, "-m", "hub.cli", "compose", "init"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    secrets_dir, data = work / "compose-secrets", work / "compose-data" / "kafka"
    modes = {p.relative_to(work): p.stat().st_mode & 0o777 for p in [secrets_dir, *secrets_dir.rglob("*")]}
    assert {m for p, m in modes.items() if p.name != "ca.pem" or p.parent.name != "ca"} <= {0o600, 0o700}, modes
    assert (work / ".env").stat().st_mode & 0o777 == 0o600
    base = free_port_block(3)
    ports = {19092: base, 9092: base + 1, 9093: base + 2}
    host = work / "host"
    shutil.copytree(secrets_dir / "kafka", host / "kafka")
    for name in ("server.properties", "client.properties"):
        path = host / "kafka" / name
        path.write_text(_mapped(path.read_text(), host, data, ports))
    config = host / "kafka" / "server.properties"
    java = maven.require_java()
    libs = maven.resolve_kafka(load_settings({}).cache_dir)
    node = local_kafka.KafkaNode(node_id=1, broker_port=base, controller_port=base + 2, data_dir=data,
                                 cluster_size=1, quorum_voters="")  # fmt: skip
    data.mkdir(parents=True, exist_ok=True)
    node.log4j_file.write_text("status = warn\nrootLogger.level = WARN\n")
    passwords = Passwords(secrets_dir / "clients" / "kafka")
    cluster = (secrets_dir / "kafka" / "cluster-id").read_text().strip()
    storage = ("kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c", str(config))
    fmt = local_kafka.java_command(java, libs, node, "256m", *storage, *scram_bootstrap(passwords))
    formatted = subprocess.run(fmt, capture_output=True, text=True, timeout=120, check=False)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    log = (work / "broker.log").open("wb")
    proc = subprocess.Popen(local_kafka.java_command(java, libs, node, "512m", "kafka.Kafka", str(config)),
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    client = {
        **env,
        "KENSHIN_KAFKA_BOOTSTRAP_SERVERS": f"localhost:{base}",  # the compose network's listener (kafka:19092)
        "KENSHIN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KENSHIN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KENSHIN_KAFKA_SSL_CAFILE": str(secrets_dir / "clients" / "ca.pem"),
        "KENSHIN_KAFKA_CREDENTIALS_DIR": str(secrets_dir / "clients" / "kafka"),
        "KENSHIN_STATE_DIR": str(work / "compose-data" / "hub-state"),
    }
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run([sys.executable, "-m", "hub.cli", "access", "apply"], env=client,
                                   capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
            if probe.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(2)
        assert probe.returncode == 0, probe.stderr[-2000:] + (work / "broker.log").read_text()[-3000:]
        assert "principals and" in probe.stdout
        yield client, base, base + 1
    finally:
        proc.kill()
        proc.wait(30)
        log.close()


def _deliver(conf: dict[str, str], topic: str) -> KafkaError | None:
    out: list[KafkaError | None] = []
    producer = Producer({**conf, "log_level": 0, "message.timeout.ms": 15000})
    producer.produce(topic, key=f"{TENANT}:probe".encode(), value=b"probe", on_delivery=lambda e, _m: out.append(e))
    producer.flush(20)
    assert out, topic
    return out[0]


def test_the_compose_broker_authenticates_and_authorizes_on_both_listeners(
    broker: tuple[dict[str, str], int, int],
) -> None:
    client, internal, external = broker
    again = subprocess.run([sys.executable, "-m", "hub.cli", "access", "apply"], env=client, capture_output=True,
                           text=True, timeout=120, check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr  # idempotent
    topics = subprocess.run([sys.executable, "-m", "hub.cli", "topics", "apply"], env=client, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert topics.returncode == 0, topics.stderr
    settings = load_settings(client)
    for port in (internal, external):  # kafka:19092 inside the compose network, 127.0.0.1:9092 on the host

        def conf(process: str, port: int = port) -> dict[str, str]:
            return {**settings.as_identity(process).kafka_config(), "bootstrap.servers": f"127.0.0.1:{port}"}

        assert _deliver(conf("connector"), f"{TENANT}.chukan.queries.v1") is None
        assert _deliver(conf("processors"), "residents.v1") is None
        for process, topic in (
            ("connector", f"{OTHER}.chukan.queries.v1"),  # another municipality's
            ("processors", f"{TENANT}.network.fugo-issued.v1"),  # the network's
            ("staff", f"{TENANT}.chukan.provision-records.v1"),  # the 中間サーバー's
        ):
            error = _deliver(conf(process), topic)
            assert error is not None, (port, process, topic)
            assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (port, process, topic, error)
        wrong = {**conf("connector"), "sasl.password": "not-the-password"}
        errors: list[KafkaError] = []
        producer = Producer({**wrong, "log_level": 0, "error_cb": errors.append})
        deadline = time.monotonic() + 15
        while not errors and time.monotonic() < deadline:
            producer.poll(0.2)
        assert errors, port
        assert errors[0].code() == KafkaError._AUTHENTICATION, errors[0]


def test_the_compose_registry_gate_configuration_is_valid_nginx(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KENSHIN_")}
    run = subprocess.run([sys.executable, "-m", "hub.cli", "compose", "init"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    gate = tmp_path / "compose-secrets" / "gate"
    conf = gate / "nginx.conf"
    text = conf.read_text()
    assert "listen 0.0.0.0:8443 ssl;" in text
    assert "auth_basic_user_file /etc/kenshin/gate/htpasswd;" in text
    assert "proxy_pass http://registry:8080;" in text
    # the container's paths mapped to this host's, and the registry service's name (resolved by Docker's DNS) to
    # the loopback address: nginx resolves proxy_pass hosts when it checks a configuration
    local = conf.with_name("local.conf")
    local.write_text(text.replace(str(CONTAINER_ROOT / "gate"), str(gate)).replace("registry:8080", "127.0.0.1:8080"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    checked = subprocess.run([nginx, "-e", "stderr", "-t", "-c", str(local)], capture_output=True, text=True,
                             timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    htpasswd = (gate / "htpasswd").read_text()
    assert f"staff-{load_settings({}).tenant}:{{SSHA}}" in htpasswd
    assert "broker:" not in htpasswd  # the brokers' own principal is no registry user
