"""The provision flow on the real broker: connector, 中間サーバー and network as Kafka consumers with their databases.

函館市 runs this hub's connector; 札幌市's connector is played by the test (it publishes what that connector
would). A 転入 resident's history is queried from 札幌 and merged into 函館's ledger history; 札幌 queries 函館
(answered automatically, held by the 自動応答不可フラグ and decided by staff, refused as not permitted); a poison
message goes to the dead-letter topic and the services keep going.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from connectors.keys import linkage_key, person_token
from connectors.runner import build
from connectors.stores import chukan_held, chukan_records
from hub.kafka import producer_config
from hub.settings import Settings
from schemas import models as m
from schemas.serde import TopicSerde, registry_client
from sinks.base import SinkRunner
from sinks.tables import connector_queries, fukuhon_outbox, ledger_history, staff_operations
from tests import samples
from tests.integration.conftest import Endpoints
from tests.integration.helpers import consume, create, produce
from topics import catalog
from topics.admin import network_topics
from topics.catalog import Topic

pytestmark = pytest.mark.integration

HAKODATE, SAPPORO = "012025", "011002"
GIVE_UP_S = 120.0
NUMBER_A, NUMBER_B = samples.my_number("11112222333"), samples.my_number("44445555666")


@pytest.fixture
def settings(endpoints: Endpoints, tmp_path: Path) -> Settings:
    return endpoints.settings(
        KENSHIN_TENANT=HAKODATE,
        KENSHIN_STATE_DIR=str(tmp_path / "state"),
        KENSHIN_DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}",
    )


@pytest.fixture
def services(
    settings: Settings, admin: AdminClient, endpoints: Endpoints, unique: str
) -> Iterator[dict[str, SinkRunner]]:
    create(admin, endpoints.registry_url, *network_topics())
    stop = threading.Event()
    runners = {
        what: build(settings, what, group_id=f"it-{unique}-{what}") for what in ("connector", "chukan", "network")
    }
    threads = [threading.Thread(target=r.run, args=(stop,), name=w, daemon=True) for w, r in runners.items()]
    for t in threads:
        t.start()
    try:
        yield runners
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        for r in runners.values():
            r.close()
            r.engine.dispose()


def send(settings: Settings, *items: tuple[Topic, m.Event]) -> None:
    producer = Producer(producer_config(settings))
    with registry_client(settings.schema_registry_config()) as registry:
        for topic, event in items:
            serde: TopicSerde[m.Event] = TopicSerde(topic, registry)
            producer.produce(topic.name, key=serde.key(event), value=serde.value(event))
    assert producer.flush(30) == 0


def eventually(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    pytest.fail(f"gave up waiting for {what}")


def header(tenant: str) -> dict[str, object]:
    return {"event_id": uuid.uuid4(), "occurred_at": datetime.now(UTC), "tenant": tenant, "source_system": "it"}


def resident(atena_no: str, number: str, *, support: bool = False, moved_from: str | None = None) -> m.ResidentState:
    history = ()
    if moved_from:
        history = (
            m.ResidentHistoryItem(event_id=uuid.uuid4(), change_type=m.ResidentChangeType.MOVE_IN,
                                  change_date=date(2026, 4, 10), occurred_at=datetime.now(UTC)),
        )  # fmt: skip
    return m.ResidentState(
        **header(HAKODATE),  # type: ignore[arg-type]
        atena_no=atena_no,
        my_number=number,
        person=samples.person(),
        status=m.ResidentStatus.RESIDENT,
        resident_since=date(2026, 4, 10),
        increase_reason=m.ResidentChangeType.MOVE_IN if moved_from else m.ResidentChangeType.BIRTH,
        previous_municipality=moved_from,
        support_measure=support,
        version=1,
        history=history,
    )


def sapporo_person(settings: Settings, integrated: str, number: str) -> m.ChukanPerson:
    return m.ChukanPerson(
        **header(SAPPORO),  # type: ignore[arg-type]
        integrated_atena_no=integrated,
        person_token=person_token(linkage_key(settings.state_dir), number),
        person=samples.person(),
        status=m.ResidentStatus.RESIDENT,
        support_measure=False,
        version=1,
    )


def fukuhon(
    tenant: str, fy: int, *, atena_no: str | None = None, integrated: str | None = None
) -> m.FukuhonRegistration:
    key = atena_no or integrated or ""
    return m.FukuhonRegistration(
        **header(tenant),  # type: ignore[arg-type]
        record_id=f"KH{tenant}{key}STO{fy}",
        atena_no=atena_no,
        integrated_atena_no=integrated,
        info_name_code="TM00000000000139",
        dataset_item_code="GANKENSHIN01",
        record_key=f"{key}:STOMACH:{fy}",
        version=1,
        publication_start=date(fy, 6, 1),
        publication_end=date(fy + 5, 3, 31),
        operation=m.FukuhonOperation.REGISTER,
        data={"K001": "STOMACH", "K002": str(fy), "K003": f"{fy}-06-01", "K004": "61", "K005": "0"},
    )


def query(
    provider: str, integrated: str, info: str = "TM00000000000139", items: tuple[str, ...] = ("K001", "K002")
) -> m.ChukanQuery:
    return m.ChukanQuery(
        **header(SAPPORO),  # type: ignore[arg-type]
        request_id=uuid.uuid4(),
        integrated_atena_no=integrated,
        provider=provider,
        affair_code="JM0139",
        info_name_code=info,
        items=items,
        requested_at=datetime.now(UTC),
    )


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, input=stdin, capture_output=True,
                         text=True, timeout=120, check=False)  # fmt: skip
    if check:
        assert run.returncode == 0, f"{args}: {run.stdout}{run.stderr}"
    return run


def count(engine: sa.Engine, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


@pytest.mark.slow
def test_the_provision_flow_end_to_end_on_kafka(
    settings: Settings, services: dict[str, SinkRunner], endpoints: Endpoints, unique: str
) -> None:
    hub, chukan = services["connector"].engine, services["chukan"].engine
    # 札幌's side: the person who moved to 函館, with two years of history there
    persons, registrations = (catalog.for_tenant(t, SAPPORO) for t in (catalog.CHUKAN_PERSONS, catalog.CHUKAN_FUKUHON))
    send(settings, (persons, sapporo_person(settings, "000000000000501", NUMBER_A)),
         (persons, sapporo_person(settings, "000000000000502", NUMBER_B)))  # fmt: skip
    send(settings, (registrations, fukuhon(SAPPORO, 2024, integrated="000000000000501")),
         (registrations, fukuhon(SAPPORO, 2025, integrated="000000000000501")))  # fmt: skip
    eventually("札幌's 符号", lambda: count(chukan, sa.table("chukan_persons", sa.column("tenant"), sa.column("fugo")),
                                            sa.text(f"tenant = '{SAPPORO}' AND fugo IS NOT NULL")) == 2)  # fmt: skip
    # 函館: A moved in from 札幌; B is under a support measure and has a ledger 副本
    send(settings, (catalog.RESIDENTS, resident("1001", NUMBER_A, moved_from=SAPPORO)),
         (catalog.RESIDENTS, resident("1002", NUMBER_B, support=True)))  # fmt: skip
    send(settings, (catalog.FUKUHON_REGISTRATIONS, fukuhon(HAKODATE, 2025, atena_no="1002")))

    eventually(
        "the 転入 query answered", lambda: count(hub, connector_queries, connector_queries.c.outcome.is_not(None)) == 1
    )
    with hub.connect() as conn:
        [answer] = conn.execute(sa.select(connector_queries)).all()
        history = conn.execute(sa.select(ledger_history)).all()
        [outbox] = conn.execute(sa.select(fukuhon_outbox)).all()
    assert answer.outcome == "PROVIDED_AUTOMATICALLY"
    assert sorted((h.from_tenant, h.fiscal_year) for h in history) == [(SAPPORO, 2024), (SAPPORO, 2025)]
    assert "1002" not in outbox.payload
    assert outbox.status == "FORWARDED"

    # 札幌 queries 函館 about B (held: support measure), then something not on the list
    integrated_b = outbox.integrated_no
    held_q, refused_q = query(HAKODATE, "000000000000502"), query(HAKODATE, "000000000000502", info="TM00000000000140")
    sapporo_queries = catalog.for_tenant(catalog.CHUKAN_QUERIES, SAPPORO)
    send(settings, (sapporo_queries, held_q), (sapporo_queries, refused_q))
    eventually("the held provision", lambda: count(chukan, chukan_held, chukan_held.c.tenant == HAKODATE) == 1)
    # a reviewer logs in and approves it through the CLI, as staff do
    env = {**endpoints.env(), "KENSHIN_TENANT": HAKODATE, "KENSHIN_STATE_DIR": str(settings.state_dir),
           "KENSHIN_DATABASE_URL": settings.database_url.reveal()}  # fmt: skip
    cli(env, "staff", "init", "admin1", "--name", "管理者", "--password-stdin", stdin="a-long-passphrase-1")
    cli(env, "login", "admin1", "--password-stdin", stdin="a-long-passphrase-1")
    cli(
        env,
        "staff",
        "add",
        "rev1",
        "--name",
        "審査",
        "--role",
        "reviewer",
        "--password-stdin",
        stdin="a-long-passphrase-2",
    )
    denied = cli(env, "review", "list", check=False)
    assert denied.returncode != 0  # an admin is not a reviewer
    cli(env, "login", "rev1", "--password-stdin", stdin="a-long-passphrase-2")
    # the 中間サーバー shows and acts only for a reviewer its operator enrolled, on decisions signed with their key
    unenrolled = cli(env, "review", "list", check=False)
    assert unenrolled.returncode == 1
    assert "not an enrolled reviewer of 012025 at the 中間サーバー" in unenrolled.stderr
    unknown = cli(env, "review", "approve", str(held_q.request_id), check=False)
    assert unknown.returncode == 1
    assert "no reviewer key" in unknown.stderr
    enrolled = cli(env, "review", "enrol").stdout
    [add] = [line.split() for line in enrolled.splitlines() if "chukan reviewer add" in line]
    assert add[-3:-1] == [HAKODATE, "rev1"]
    cli(env, *add[1:])  # the 中間サーバー's operator enrols the printed key on its own store
    assert str(held_q.request_id) in cli(env, "review", "list").stdout
    shown = cli(env, "review", "show", str(held_q.request_id)).stdout
    assert "PERSON_FLAG" in shown
    assert "fugo" not in shown
    approved = cli(env, "review", "approve", str(held_q.request_id)).stdout
    assert "approved and sent by the 中間サーバー" in approved
    again = cli(env, "review", "refuse", str(held_q.request_id), "--reason", "再確認", check=False)
    assert again.returncode == 1
    assert "the 中間サーバー refused the decision" in again.stderr
    assert "already decided" in again.stderr
    cli(env, "logout")
    with hub.connect() as conn:
        ops = conn.execute(sa.select(staff_operations.c.staff_id, staff_operations.c.operation,
                                     staff_operations.c.outcome, staff_operations.c.target)).all()  # fmt: skip
    assert ("admin1", "INIT", "SUCCESS", "admin1") in ops  # the first admin: `staff init`
    assert ("admin1", "ACCOUNT_CREATED", "SUCCESS", "rev1") in ops
    assert ("rev1", "APPROVE", "FAILED", str(held_q.request_id)) in ops  # before the 中間サーバー enrolled rev1
    assert ("rev1", "APPROVE", "SUCCESS", str(held_q.request_id)) in ops
    assert ("rev1", "REFUSE", "FAILED", str(held_q.request_id)) in ops  # the 中間サーバー rejected it: decided
    assert ("admin1", "LIST", "DENIED", "held provisions") in ops
    assert ("rev1", "LIST", "FAILED", "held provisions") in ops  # before the 中間サーバー enrolled rev1
    # a poison message on the 中間サーバー's input: dead-lettered, the services keep going
    produce(endpoints.bootstrap, sapporo_queries.name, [(b"011002:x", b"\x00garbage")])
    eventually("records on both sides", lambda: count(chukan, chukan_records) == 1 + 1 + 2 + 1)
    with chukan.connect() as conn:
        outcomes = sorted((r.tenant, r.side, r.outcome) for r in conn.execute(sa.select(chukan_records)).all())
    assert outcomes == sorted([
        (HAKODATE, "REQUESTER", "PROVIDED_AUTOMATICALLY"), (SAPPORO, "PROVIDER", "PROVIDED_AUTOMATICALLY"),
        (HAKODATE, "PROVIDER", "PROVIDED_AFTER_REVIEW"), (SAPPORO, "REQUESTER", "PROVIDED_AFTER_REVIEW"),
        (SAPPORO, "REQUESTER", "REFUSED"),
    ])  # fmt: skip
    assert integrated_b
    letters = consume(endpoints.bootstrap, sapporo_queries.dlq.name, f"it-{unique}-dlq", 1)  # type: ignore[union-attr]
    assert len(letters) == 1
