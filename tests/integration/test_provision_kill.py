"""Kill -9 the connector, the 中間サーバー and the network simulator during a load: nothing lost, nothing doubled.

網走市 runs the hub's connector; 留萌市 (where this city's 転入 residents came from) and 苫小牧市 (which queries this
city) are played by the test. Each stage is published in chunks, and after each chunk one of the three services is
killed with SIGKILL and restarted. When everything has settled, every count is exactly what the workload implies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from connectors.keys import linkage_key, person_token
from connectors.network import derived_id
from connectors.runner import GROUPS
from connectors.service import Output
from connectors.stores import chukan_fukuhon, chukan_held, chukan_persons, chukan_records
from hub.kafka import producer_config
from hub.provision_demo import settle
from hub.settings import Settings, load_settings
from schemas import models as m
from schemas.serde import TopicSerde, registry_client
from sinks.tables import connector_queries, integrated_atena, ledger_history
from tests import samples
from tests.integration.conftest import Endpoints, free_port_block
from topics import catalog

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.fault]

# tenants of their own: the topics are shared with the other tests of the session (小樽, 室蘭, 釧路, 帯広 are taken)
HOME, FORMER, ASKER = "012114", "012122", "012131"  # 網走市, 留萌市, 苫小牧市
RESIDENTS, MOVERS, QUERIED = 600, 200, 210
YEAR_START = date(2026, 4, 1)
AT = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


class Services:
    def __init__(self, endpoints: Endpoints, workdir: Path) -> None:
        self.workdir = workdir
        self.env = endpoints.env()
        self.env.update(
            KENSHIN_TENANT=HOME,
            KENSHIN_STATE_DIR=str(workdir / "state"),
            KENSHIN_DATABASE_URL=f"sqlite:///{workdir / 'hub.db'}",
            KENSHIN_CONNECTOR_MOVE_IN_SINCE=YEAR_START.isoformat(),
            KENSHIN_LOG_LEVEL="WARNING",
            KENSHIN_METRICS_CONNECTOR_PORT=str(free_port_block(1)),
            KENSHIN_METRICS_CHUKAN_PORT=str(free_port_block(1)),
            KENSHIN_METRICS_NETWORK_PORT=str(free_port_block(1)),
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: Counter[str] = Counter()
        self.crashed: list[str] = []

    @property
    def settings(self) -> Settings:
        return load_settings({k: v for k, v in self.env.items() if k.startswith("KENSHIN_")})

    def start(self, what: str) -> None:
        with (self.workdir / f"{what}.log").open("ab") as log:
            self.procs[what] = subprocess.Popen([sys.executable, "-m", "hub.cli", "run", what], env=self.env,
                                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def crash_after_commit(self, what: str, nth: int) -> None:
        """Restart ``what`` so that it dies right after committing its ``nth`` batch, before producing its outputs."""
        proc = self.procs.pop(what)
        proc.terminate()
        proc.wait(timeout=60)
        self.env["KH_FAILPOINTS"] = f"sink.after_commit@{nth}"
        try:
            self.start(what)
        finally:
            del self.env["KH_FAILPOINTS"]
        self.crashed.append(what)

    def restart_crashed(self) -> None:
        """Start again each process the fail point ended (it must have ended: the window was really hit)."""
        for what in self.crashed:
            proc = self.procs.pop(what)
            assert proc.wait(timeout=120) == 137, f"{what} did not reach its fail point"
            self.kills[what] += 1
            self.start(what)
        self.crashed.clear()

    def kill_and_restart(self, what: str) -> None:
        proc = self.procs.pop(what)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self.kills[what] += 1
        self.start(what)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def services(endpoints: Endpoints, tmp_path: Path) -> Iterator[Services]:
    s = Services(endpoints, tmp_path)
    run = subprocess.run([sys.executable, "-m", "hub.cli", "setup"], env=s.env, capture_output=True, text=True,
                         timeout=300, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    for what in ("chukan", "network", "connector"):
        s.start(what)
    try:
        yield s
    finally:
        s.stop()


def header(tenant: str, *parts: object) -> dict[str, object]:
    return {"event_id": derived_id("kill-test", tenant, *parts), "occurred_at": AT, "tenant": tenant,
            "source_system": "it"}  # fmt: skip


def number(i: int) -> str:
    return samples.my_number(f"{70000000000 + i:011d}")


def workload(key: bytes) -> tuple[list[Output], list[Output], list[Output], dict[str, int]]:
    """(other municipalities' registrations, this city's residents and 副本, 釧路's queries, expected figures)."""
    others: list[Output] = []
    city: list[Output] = []
    queries: list[Output] = []
    history = 0
    for i in range(RESIDENTS):
        atena = f"{5000 + i}"
        mover = i < MOVERS
        move = m.ResidentHistoryItem(event_id=derived_id("move", i), change_type=m.ResidentChangeType.MOVE_IN,
                                     change_date=date(2026, 5, 1), occurred_at=AT)  # fmt: skip
        city.append((catalog.RESIDENTS, m.ResidentState(
            **header(HOME, "resident", i),  # type: ignore[arg-type]
            atena_no=atena, my_number=number(i), person=samples.person(), status=m.ResidentStatus.RESIDENT,
            resident_since=date(2026, 5, 1) if mover else date(2000, 1, 1),
            increase_reason=m.ResidentChangeType.MOVE_IN if mover else m.ResidentChangeType.BIRTH,
            previous_municipality=FORMER if mover else None, support_measure=i % 50 == 7, version=1,
            history=(move,) if mover else (),
        )))  # fmt: skip
        if i % 2 == 0:
            city.append((catalog.FUKUHON_REGISTRATIONS, m.FukuhonRegistration(
                **header(HOME, "fukuhon", i),  # type: ignore[arg-type]
                record_id=f"KH{HOME}{atena}STO2026", atena_no=atena, info_name_code="TM00000000000139",
                dataset_item_code="GANKENSHIN01", record_key=f"{atena}:STOMACH:2026", version=1,
                publication_start=date(2026, 6, 1), publication_end=date(2031, 3, 31),
                operation=m.FukuhonOperation.REGISTER, data={"K001": "STOMACH", "K002": "2026", "K007": "CANCER"},
            )))  # fmt: skip
        for tenant, wanted in ((FORMER, mover), (ASKER, i >= RESIDENTS - QUERIED)):
            if not wanted:
                continue
            integrated = f"9{i:014d}"
            others.append((catalog.for_tenant(catalog.CHUKAN_PERSONS, tenant), m.ChukanPerson(
                **header(tenant, "person", i),  # type: ignore[arg-type]
                integrated_atena_no=integrated, person_token=person_token(key, number(i)), person=samples.person(),
                status=m.ResidentStatus.RESIDENT, support_measure=False, version=1,
            )))  # fmt: skip
            if tenant == FORMER:
                for fy in range(2022, 2022 + i % 3):
                    history += 1
                    others.append((catalog.for_tenant(catalog.CHUKAN_FUKUHON, tenant), m.FukuhonRegistration(
                        **header(tenant, "history", i, fy),  # type: ignore[arg-type]
                        record_id=f"KH{tenant}{integrated}STO{fy}", integrated_atena_no=integrated,
                        info_name_code="TM00000000000139", dataset_item_code="GANKENSHIN01",
                        record_key=f"{integrated}:STOMACH:{fy}", version=1, publication_start=date(fy, 6, 1),
                        publication_end=date(fy + 6, 3, 31), operation=m.FukuhonOperation.REGISTER,
                        data={"K001": "STOMACH", "K002": str(fy)},
                    )))  # fmt: skip
            else:
                items = ("K001", "K002", "K007") if i % 3 == 0 else ("K001", "K002")
                info = "TM00000000000140" if i % 10 == 1 else "TM00000000000139"
                request_id = derived_id("kill-query", i)
                queries.append((catalog.for_tenant(catalog.CHUKAN_QUERIES, tenant), m.ChukanQuery(
                    **header(tenant, "query", i),  # type: ignore[arg-type]
                    request_id=request_id, integrated_atena_no=integrated, provider=HOME, affair_code="JM0139",
                    info_name_code=info, items=items, requested_at=AT,
                )))  # fmt: skip
    asked = range(RESIDENTS - QUERIED, RESIDENTS)
    refused = sum(1 for i in asked if i % 10 == 1)
    held = sum(1 for i in asked if i % 10 != 1 and (i % 3 == 0 or i % 50 == 7))
    figures = {"history": history, "refused": refused, "held": held, "auto": QUERIED - refused - held}
    return others, city, queries, figures


def publish_in_chunks(services: Services, outputs: Sequence[Output], victims: Sequence[str]) -> None:
    producer = Producer(producer_config(services.settings))
    size = -(-len(outputs) // len(victims))
    with registry_client(services.settings.schema_registry_config()) as registry:
        serdes: dict[str, TopicSerde[m.Event]] = {}
        for n, victim in enumerate(victims):
            for topic, event in outputs[n * size : (n + 1) * size]:
                serde = serdes.setdefault(topic.name, TopicSerde(topic, registry))
                producer.produce(topic.name, key=serde.key(event), value=serde.value(event))
            assert producer.flush(60) == 0
            services.kill_and_restart(victim)


def count(url: str, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.timeout(1200)
def test_sigkill_of_the_provision_services_loses_and_doubles_nothing(services: Services) -> None:
    settings = services.settings
    conf = dict(settings.kafka_config())
    others, city, queries, expected = workload(linkage_key(settings.state_dir))
    groups = list(GROUPS.values())
    publish_in_chunks(services, others, ["network", "chukan"])
    settle(conf, groups, HOME, timeout_s=600)
    publish_in_chunks(services, city, ["chukan", "connector", "network"])
    settle(conf, groups, HOME, timeout_s=600)
    # the narrowest window: the 中間サーバー and the network die after their transaction, before their outputs
    services.crash_after_commit("chukan", 2)
    services.crash_after_commit("network", 1)
    publish_in_chunks(services, queries, ["connector"])
    services.restart_crashed()
    settle(conf, groups, HOME, timeout_s=600)
    assert sum(services.kills.values()) == 8

    hub, chukan = settings.database_url.reveal(), settings.chukan_url()
    c = chukan_records.c
    # every person of every municipality registered once, each with a 符号
    assert count(hub, integrated_atena, integrated_atena.c.tenant == HOME) == RESIDENTS
    for tenant, n in ((HOME, RESIDENTS), (FORMER, MOVERS), (ASKER, QUERIED)):
        assert count(chukan, chukan_persons, chukan_persons.c.tenant == tenant) == n
        assert count(chukan, chukan_persons, chukan_persons.c.tenant == tenant, chukan_persons.c.fugo.is_not(None)) == n
    assert count(chukan, chukan_fukuhon, chukan_fukuhon.c.tenant == HOME) == RESIDENTS // 2
    # each 転入 resident queried once and answered automatically; the history merged exactly once
    assert count(hub, connector_queries, connector_queries.c.tenant == HOME) == MOVERS
    assert count(hub, connector_queries, connector_queries.c.outcome == "PROVIDED_AUTOMATICALLY") == MOVERS
    assert count(hub, ledger_history, ledger_history.c.tenant == HOME) == expected["history"]
    assert count(chukan, chukan_records, c.tenant == HOME, c.side == "REQUESTER") == MOVERS
    assert count(chukan, chukan_records, c.tenant == FORMER, c.side == "PROVIDER") == MOVERS
    # 釧路's queries: refused by the network, held by the flag, or answered automatically — each exactly once
    assert (
        count(chukan, chukan_records, c.tenant == ASKER, c.side == "REQUESTER")
        == expected["refused"] + expected["auto"]
    )
    assert count(chukan, chukan_records, c.tenant == ASKER, c.outcome == "REFUSED") == expected["refused"]
    assert count(chukan, chukan_records, c.tenant == HOME, c.side == "PROVIDER") == expected["auto"]
    assert count(chukan, chukan_held, chukan_held.c.tenant == HOME) == expected["held"]
    assert expected["held"] > 0
    assert expected["auto"] > 0
    assert expected["refused"] > 0

    # the 中間サーバー's own view, as Prometheus scrapes it: ready, and the held provisions awaiting review
    chukan_url = f"http://127.0.0.1:{services.env['KENSHIN_METRICS_CHUKAN_PORT']}"
    assert httpx.get(f"{chukan_url}/health/ready", timeout=10).status_code == 200
    deadline = time.monotonic() + 30  # the gauges follow the store within HELD_REFRESH_S
    while True:
        samples_ = scrape(chukan_url)
        if samples_.get(("kenshin_hub_held_provisions", (("tenant", HOME),))) == expected["held"]:
            break
        assert time.monotonic() < deadline, {k: v for k, v in samples_.items() if "held" in k[0]}
        time.sleep(1)
    assert samples_[("kenshin_hub_held_provisions_oldest_age_seconds", (("tenant", HOME),))] > 0
    out = sum(v for (name, labels), v in samples_.items() if name == "kenshin_hub_messages_out_total")
    assert out > 0


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)
        for s in family.samples
    }
