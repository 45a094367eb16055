"""The secured local stack (the default): TLS, SCRAM users, KRaft's StandardAuthorizer with access.toml's ACLs, and
the schema registry behind its TLS and basic-auth gate.

One stack of its own, as `kenshin-hub stack up` starts it for a new user. On it:

* the whole pipeline and the provision flow (`kenshin-hub demo`) run over SASL_SSL, each process as its own
  principal with only the ACLs of topics/access.toml, and nothing is refused;
* the refusals are refusals, not timeouts: a client without credentials, a wrong password, a principal reaching
  for a topic it has no grant on, the registry without a user, a process principal registering a schema.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from hub.access import ADMIN, load_access, principal_of
from hub.runtime.stack import LocalStack
from hub.settings import PROCESS_NAMES, Settings, env_name, load_settings
from tests.integration.conftest import OWNER_FILE, local_stack_settings
from topics import catalog

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TENANT = "012041"
OTHER = "011002"  # 札幌市, another member of the simulated network


def own(template: str) -> str:
    """The city's own topic of ``template`` (the provision flow's topics are per municipality)."""
    return catalog.for_tenant(catalog.by_name(template), TENANT).name


def other(template: str) -> str:
    return catalog.for_tenant(catalog.by_name(template), OTHER).name


REFUSAL_S = 15.0  # a refusal arrives within this; a silent timeout would take librdkafka's 300 s


class Secured:
    def __init__(self, settings: Settings, env: dict[str, str], demo: subprocess.CompletedProcess[str]) -> None:
        self.settings = settings
        self.env = env
        self.demo = demo

    def cli(
        self, *args: str, timeout: float = 900, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def as_process(self, process: str) -> dict[str, Any]:
        return dict(self.settings.as_identity(process).kafka_config())


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    state = tmp_path_factory.mktemp("secured")
    settings = local_stack_settings(state, security="sasl_ssl")
    stack = LocalStack(settings, echo=lambda _line: None)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KENSHIN_")}
        env.update(
            {
                "KENSHIN_STATE_DIR": str(settings.state_dir),
                "KENSHIN_STACK_SECURITY": "sasl_ssl",
                "KENSHIN_STACK_KAFKA_PORT": str(settings.stack_kafka_port),
                "KENSHIN_STACK_CONTROLLER_PORT": str(settings.stack_controller_port),
                "KENSHIN_STACK_REGISTRY_PORT": str(settings.stack_registry_port),
                "KENSHIN_DATABASE_URL": f"sqlite:///{state / 'hub.db'}",
                "KENSHIN_TENANT": TENANT,
                "KENSHIN_LOG_LEVEL": "WARNING",
                "KENSHIN_RETENTION_SCHEDULE": "off",
            }
        )
        for process in PROCESS_NAMES:
            env[env_name(f"metrics_{process}_port")] = "0"
        if "KENSHIN_CACHE_DIR" in os.environ:
            env["KENSHIN_CACHE_DIR"] = os.environ["KENSHIN_CACHE_DIR"]
        # As a new user runs it: `kenshin-hub demo` on a fresh state directory starts the secured stack itself, sets
        # it up and runs the pipeline and the provision flow, all in one command.
        demo = subprocess.run(
            [sys.executable, "-m", "hub.cli", "demo", "--size", "300"],
            env=env, capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        assert demo.returncode == 0, (
            f"kenshin-hub demo exited {demo.returncode}:\n{demo.stdout[-3000:]}\n{demo.stderr[-6000:]}"
        )
        loaded = load_settings({k: v for k, v in env.items() if k.startswith("KENSHIN_")})
        # A new user's clients pick the stack's profile up by themselves: TLS, SCRAM, the CA, the credentials.
        assert loaded.kafka_security_protocol == "SASL_SSL"
        assert loaded.schema_registry_url.startswith("https://")
        yield Secured(loaded, env, demo)
    finally:
        stack.down(purge=True)


def _first_error(conf: dict[str, Any]) -> tuple[KafkaError | None, float]:
    """The first error a producer with ``conf`` reports by itself (error callback), and after how many seconds."""
    errors: list[KafkaError] = []
    producer = Producer({**conf, "log_level": 0, "error_cb": errors.append})
    began = time.monotonic()
    while not errors and time.monotonic() - began < REFUSAL_S:
        producer.poll(0.2)
    return (errors[0] if errors else None), time.monotonic() - began


def _delivery_error(conf: dict[str, Any], topic: str) -> KafkaError | None:
    outcome: list[KafkaError | None] = []
    producer = Producer({**conf, "log_level": 0, "message.timeout.ms": int(REFUSAL_S * 1000)})
    producer.produce(topic, key=b"012041:1", value=b"not read by anyone", on_delivery=lambda e, _m: outcome.append(e))
    producer.flush(REFUSAL_S + 5)
    assert outcome, f"no delivery report for {topic}"
    return outcome[0]


def _read_error(conf: dict[str, Any], topic: str, group: str) -> KafkaError | None:
    consumer = Consumer({**conf, "group.id": group, "log_level": 0, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + REFUSAL_S
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                return msg.error()
        return None
    finally:
        consumer.close()


def _registry(secured: Secured, path: str, user: tuple[str, str] | None, body: dict[str, Any] | None = None) -> int:
    url = secured.settings.schema_registry_url + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    request.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    if user is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(user).encode()).decode())
    assert secured.settings.schema_registry_cafile is not None
    context = ssl.create_default_context(cafile=str(secured.settings.schema_registry_cafile))
    try:
        with urllib.request.urlopen(request, timeout=REFUSAL_S, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _password(secured: Secured, principal: str) -> str:
    assert secured.settings.kafka_credentials_dir is not None
    return (secured.settings.kafka_credentials_dir / f"{principal}.password").read_text().strip()


def test_refusals_are_immediate_and_named(secured: Secured) -> None:
    tried = 0
    processors = secured.as_process("processors")

    # No credentials at all: a plaintext client on the SASL_SSL listener is cut off at once.
    error, after = _first_error({"bootstrap.servers": processors["bootstrap.servers"]})
    tried += 1
    assert error is not None, "a client without credentials was not refused"
    assert after < REFUSAL_S
    # TLS without SASL: refused the same way.
    error, after = _first_error(
        {
            "bootstrap.servers": processors["bootstrap.servers"],
            "security.protocol": "SSL",
            "ssl.ca.location": processors["ssl.ca.location"],
        }
    )
    tried += 1
    assert error is not None
    assert after < REFUSAL_S
    # A wrong password: an authentication failure, by name.
    error, _after = _first_error({**processors, "sasl.password": "not-the-password"})
    tried += 1
    assert error is not None, error
    assert error.code() == KafkaError._AUTHENTICATION, error

    # The processors' principal may write its own outputs ...
    assert _delivery_error(processors, "residents.v1") is None
    # ... but not the network's topics, nor read them, nor the 中間サーバー's.
    for topic in (own("network.fugo-issued.v1"), own("network.provision-requests.v1"), own("chukan.query-answers.v1")):
        error = _delivery_error(processors, topic)
        tried += 1
        assert error is not None, (topic, error)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, error)
    for topic in (own("network.fugo-issued.v1"), own("network.fugo-requests.v1")):
        error = _read_error(processors, topic, "kenshin-hub-processors")
        tried += 1
        assert error is not None, (topic, error)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, error)
    # 符号 travel only between the 中間サーバー and the network: the sinks and the connector cannot read them.
    for process in ("sinks", "connector"):
        error = _read_error(secured.as_process(process), own("network.fugo-issued.v1"), f"kenshin-hub-{process}")
        tried += 1
        assert error is not None, (process, error)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (process, error)
    # The staff tools send a signed decision; only the 中間サーバー answers a requester or writes its records.
    staff = secured.as_process("staff")
    assert _delivery_error(staff, own("chukan.review-decisions.v1")) is None
    for topic in (own("network.provision-responses.v1"), own("chukan.provision-records.v1")):
        error = _delivery_error(staff, topic)
        tried += 1
        assert error is not None, (topic, error)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (topic, error)
    # Tenants kept apart by Kafka itself: the city's principals touch none of another municipality's topics.
    for process, topic in (
        ("connector", other("chukan.queries.v1")),  # query as 札幌
        ("connector", other("chukan.persons.v1")),  # register persons as 札幌
        ("staff", other("chukan.review-decisions.v1")),  # decide 札幌's held provisions
        ("staff", other("chukan.fukuhon.v1")),  # import 副本 as 札幌
    ):
        error = _delivery_error(secured.as_process(process), topic)
        tried += 1
        assert error is not None, (process, topic, error)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (process, topic, error)
    for process, topic in (
        ("connector", other("chukan.query-answers.v1")),  # 札幌's answers
        ("sinks", other("chukan.provision-records.v1")),  # 札幌's 情報提供等記録
    ):
        error = _read_error(secured.as_process(process), topic, f"kenshin-hub-{process}")
        tried += 1
        assert error is not None, (process, topic, error)
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (process, topic, error)
    # A group that is not its own.
    error = _read_error(processors, "juki.resident-changes.v1", "kenshin-hub-sinks")
    tried += 1
    assert error is not None, error
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error

    # The registry: nobody without a user; everyone reads; only the admin registers.
    user = principal_of("processors", TENANT)
    assert _registry(secured, "/subjects", None) == 401
    assert _registry(secured, "/subjects", (user, "wrong")) == 401
    assert _registry(secured, "/subjects", (user, _password(secured, user))) == 200
    schema = {"schema": json.dumps({"type": "record", "name": "Forged", "fields": []})}
    assert _registry(secured, "/subjects/residents.v1-value/versions", (user, _password(secured, user)), schema) == 403
    tried += 4
    print(f"\nsecurity: {tried} refusals tried, every one refused at once and by name")


def test_each_process_connects_as_its_own_principal(secured: Secured, tmp_path: Path) -> None:
    """`run <process>` uses its principal's credentials: with that one password file wrong, it cannot log in."""
    assert secured.settings.kafka_credentials_dir is not None
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    for file in secured.settings.kafka_credentials_dir.glob("*.password"):
        (credentials / file.name).write_text(file.read_text())
    victim = principal_of("network", TENANT)
    (credentials / f"{victim}.password").write_text("not-the-password")
    log = tmp_path / "network.log"
    env = {**secured.env, "KENSHIN_KAFKA_CREDENTIALS_DIR": str(credentials), "KENSHIN_LOG_LEVEL": "INFO"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "run", "network"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not re.search("SASL authentication", log.read_text(errors="replace")):
            time.sleep(0.5)
        assert "SASL authentication" in log.read_text(errors="replace"), log.read_text(errors="replace")[-2000:]
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_the_pipeline_and_the_provision_flow_run_over_sasl_ssl(secured: Secured) -> None:
    grants = load_access()
    assert {ADMIN, *(g.principal(TENANT) for g in grants.values())} <= {
        p.name.removesuffix(".password") for p in (secured.settings.kafka_credentials_dir or Path()).glob("*")
    }
    run = secured.demo
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "provision flow settled" in out
    assert re.search(r"answered automatically:\s+[1-9]", out), out[-2000:]
    assert re.search(r"errors:\s+0\b", out), out[-2000:]
    records = re.search(r"中間サーバー tenant: (\d+); persisted by the hub's sink: (\d+)", out)
    assert records is not None, out[-2000:]
    assert records.group(1) == records.group(2), out[-2000:]
    assert int(records.group(1)) > 0
    logs = secured.settings.state_dir / "logs"
    for process in ("processors", "sinks", "connector", "chukan", "network"):
        text = (logs / f"{process}.log").read_text(errors="replace")
        assert "AUTHORIZATION_FAILED" not in text, f"{process} was refused something it needs:\n{text[-2000:]}"
    # At rest: every folder and file the stack and the demo left is its owner's only (the CA certificate is public,
    # and sits in a 0700 folder).
    exposed = []
    for path in [secured.settings.state_dir, *secured.settings.state_dir.rglob("*")]:
        if path.is_symlink() or path.name in ("ca.pem", OWNER_FILE):  # (OWNER_FILE: this test session's marker)
            continue
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            exposed.append(f"{oct(mode)} {path.relative_to(secured.settings.state_dir)}")
    assert not exposed, "readable by others:\n" + "\n".join(exposed[:40])
    # 個人番号 at rest: none of the demo's numbers in clear in any store or log it leaves, nor in any topic's log
    # segments but those of the 住基 system's own input topic (residents.v1 carries it sealed).
    from hub.scenario import build

    city, _plan = build(2025, 300, TENANT, 2025, 0.05)  # the demo's city: its default seed, year and dirt
    numbers = {p.my_number.encode() for p in city.residents.values() if p.my_number}
    assert len(numbers) > 250
    scanned, found = 0, []
    for path in secured.settings.state_dir.rglob("*"):
        relative = path.relative_to(secured.settings.state_dir)
        if not path.is_file() or relative.parts[0] in ("kafka", "registry"):
            continue  # the Kafka segments are compressed (zstd): their records are read below
        data = path.read_bytes()
        scanned += 1
        found += [str(relative) for n in numbers if n in data][:1]
    assert scanned > 10
    assert not found, f"個人番号 in clear in: {sorted(set(found))}"
    # Nor in any topic's records (keys and values, as the broker hands them out), but on the 住基 system's own
    # input topic: the hub reads the number from there, and residents.v1 carries it sealed.
    records = _every_record(dict(secured.settings.kafka_config()), skip={catalog.RESIDENT_CHANGES.name})
    assert len(records.get(catalog.RESIDENTS.name, ())) > 250  # the scan did read the residents' states
    in_clear = sorted({topic for topic, found in records.items() for data in found if any(n in data for n in numbers)})
    assert not in_clear, f"個人番号 in clear on: {in_clear}"


def _every_record(conf: dict[str, Any], skip: set[str]) -> dict[str, list[bytes]]:
    """Every record (key + value) of every topic but ``skip`` and the broker's own, read from the beginning: every
    non-empty partition of the cluster's ~700 topics (most of the tenant topics are empty) assigned at once.
    """
    metadata = AdminClient(conf).list_topics(timeout=30).topics
    consumer = Consumer({**conf, "group.id": "security-scan", "enable.auto.commit": False, "log_level": 0})
    out: dict[str, list[bytes]] = {}
    try:
        ends: dict[tuple[str, int], int] = {}
        starts: list[TopicPartition] = []
        for name, topic in metadata.items():
            if name.startswith("__") or name in skip:
                continue
            for partition in topic.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=30)
                if high > low:
                    ends[(name, partition)] = high
                    starts.append(TopicPartition(name, partition, low))
        consumer.assign(starts)
        done = {p for p, high in ends.items() if high <= 0}
        deadline = time.monotonic() + 180
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error() is not None:
                    continue
                where = (str(msg.topic()), int(msg.partition() or 0))
                out.setdefault(where[0], []).append((msg.key() or b"") + b"|" + (msg.value() or b""))
                if int(msg.offset() or 0) + 1 >= ends[where]:
                    done.add(where)
        assert len(done) == len(ends), f"not read to their end: {sorted(set(ends) - done)[:10]}"
    finally:
        consumer.close()
    return out
