"""The demo's second half: the provision flow between this city and simulated municipalities on the network.

With the 中間サーバー and the network running, the other municipalities register the people they know (the city's
recent 転入 residents, with their screening 副本 there, and the people who moved away from the city); then this city's
connector registers its residents and 副本 and queries the previous municipality of each recent 転入 resident; then
the other municipalities query this city (permitted, not permitted, sensitive items, support-measure residents). A
demo reviewer re-checks what the 自動応答不可フラグ held: it sends the held sensitive items and refuses the
support-measure residents' provisions. Counts come from the 中間サーバー's records and the hub's tables.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from confluent_kafka import Producer

from connectors.chukan import ChukanServer, TenantStore
from connectors.keys import linkage_key, public_key_text, reviewer_key
from connectors.network import SOURCE as NETWORK
from connectors.network import NetworkSimulator
from connectors.policy import network_tenants
from connectors.runner import GROUPS, chukan_engine
from connectors.service import Output
from connectors.simulators.city import City
from connectors.simulators.municipalities import simulate_others
from connectors.stores import chukan_held, chukan_records
from hub.demo import end_offsets, pipeline_processes
from hub.kafka import ClientConfig, producer_config
from hub.office import office
from hub.review import await_decision, send_decision
from hub.settings import Settings
from hub.staff import StaffError
from hub.supervise import check_running, wait_drained
from schemas.models import Event, HoldStatus, StaffOperationType
from schemas.record import now_utc
from schemas.serde import TopicSerde, registry_client
from sinks.db import make_engine
from sinks.runner import GROUP_ID as SINKS_GROUP
from sinks.tables import connector_queries, ledger_history, provision_records
from topics import catalog

ADMIN = "demo-admin"
REVIEWER = "demo-reviewer"
REFUSAL = "DV等支援措置の対象者のため提供しない"


def _publish(settings: Settings, outputs: Sequence[Output]) -> None:
    producer = Producer(producer_config(settings))
    with registry_client(settings.schema_registry_config()) as registry:
        serdes: dict[str, TopicSerde[Event]] = {}
        for topic, event in outputs:
            serde = serdes.setdefault(topic.name, TopicSerde(topic, registry))
            while True:
                try:
                    producer.produce(topic.name, key=serde.key(event), value=serde.value(event))
                    break
                except BufferError:
                    producer.poll(0.2)
    if producer.flush(60):
        raise RuntimeError("the simulated municipalities' events were not all delivered")


def service_inputs(tenant: str) -> dict[str, tuple[catalog.Topic, ...]]:
    """The topics each provision service's group consumes, ``tenant`` being the city whose connector runs."""
    tenants = network_tenants()
    return {
        GROUPS["connector"]: (catalog.RESIDENTS, catalog.FUKUHON_REGISTRATIONS,
                              catalog.for_tenant(catalog.QUERY_ANSWERS, tenant)),
        GROUPS["chukan"]: tuple(catalog.for_tenant(t, code) for code in tenants for t in ChukanServer.templates),
        GROUPS["network"]: tuple(catalog.for_tenant(t, code) for code in tenants for t in NetworkSimulator.templates),
    }  # fmt: skip


def settle(conf: ClientConfig, groups: Sequence[str], tenant: str, timeout_s: float = 900) -> None:
    """Wait until the services are quiescent: every group caught up while no topic of theirs grew.

    The services feed each other, so one group being drained says nothing about the next moment; a round in which
    all of them are drained and the end offsets of all their topics did not move is a consistent quiet state.
    Each turn (and each drain wait's turn) checks the supervised children (:func:`hub.supervise.check_running`):
    a service that died is reported at once instead of being waited for.
    """
    inputs = service_inputs(tenant)
    topics = tuple(sorted({t.name for g in groups for t in inputs[g]}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_running()
        before = end_offsets(conf, topics)
        for group in groups:
            wait_drained(conf, group, [t.name for t in inputs[group]],
                         timeout_s=max(1.0, deadline - time.monotonic()))  # fmt: skip
        if end_offsets(conf, topics) == before:
            return
    check_running()
    raise TimeoutError(f"the provision services did not settle within {timeout_s:.0f}s")


def _review(settings: Settings) -> tuple[int, int]:
    """The demo reviewer decides every held provision; (approved, refused). Skipped when others hold accounts."""
    engine = chukan_engine(settings)
    approved = refused = 0
    try:
        with office(settings) as o:
            password = secrets.token_urlsafe(24)
            try:
                if o.staff.has_accounts():
                    print("  staff accounts exist: review the held provisions with `kenshin-hub review list`")
                    return 0, 0
                # `staff init`: the first admin (recorded); the admin then creates the reviewer (no shared ids)
                o.staff.init_admin(ADMIN, "デモ管理者", password)
                admin = o.staff.login(ADMIN, password)
                o.staff.create_account(REVIEWER, "デモ審査担当", {"reviewer"}, password, by=admin)
                o.staff.logout(admin.token)
                session = o.staff.login(REVIEWER, password)
            except StaffError as exc:
                print(f"  demo review skipped: {exc}")
                return 0, 0
            # the reviewer's key, enrolled at the 中間サーバー by its operator (`review enrol`, `chukan reviewer add`)
            key = reviewer_key(settings.state_dir, settings.tenant, REVIEWER, create=True)
            assert key is not None
            with engine.begin() as conn:
                store = TenantStore(conn, settings.tenant)
                store.enrol_reviewer(REVIEWER, public_key_text(key.public_key()), now_utc())
                held = store.held_list(HoldStatus.HELD.value)
            for row in held:
                approve = "PERSON_FLAG" not in row.hold_reasons
                op = StaffOperationType.APPROVE if approve else StaffOperationType.REFUSE
                with o.staff.operation(session.token, "reviewer", op, row.request_id):  # recorded after, as it went
                    decision = send_decision(o, REVIEWER, row.request_id, approve, None if approve else REFUSAL)
                    await_decision(engine, decision)  # the 中間サーバー verified the signature and acted on it
                approved += approve
                refused += not approve
            o.staff.logout(session.token)
    finally:
        engine.dispose()
    return approved, refused


def run_provision_demo(settings: Settings, city: City, seed: int, year_start: date) -> None:
    conf: ClientConfig = dict(settings.kafka_config())
    env = dict(os.environ)
    env["KENSHIN_CONNECTOR_MOVE_IN_SINCE"] = year_start.isoformat()
    others = simulate_others(city, linkage_key(settings.state_dir), seed, year_start)
    started = time.monotonic()
    with pipeline_processes(settings, env, ("chukan", "network")):
        _publish(settings, others.registrations)
        settle(conf, [GROUPS["chukan"], GROUPS["network"]], settings.tenant)
        print(f"  other municipalities registered {len(others.registrations)} persons and 副本")
        with pipeline_processes(settings, env, ("connector",)):
            settle(conf, list(GROUPS.values()), settings.tenant)
            print("  this city's residents and 副本 registered; 転入 queries answered")
            _publish(settings, others.queries)
            settle(conf, list(GROUPS.values()), settings.tenant)
            approved, refused_by_staff = _review(settings)
            settle(conf, list(GROUPS.values()), settings.tenant)
            records = catalog.for_tenant(catalog.PROVISION_RECORDS, settings.tenant)
            wait_drained(conf, SINKS_GROUP, [records.name], timeout_s=300)
    print(f"  provision flow settled in {time.monotonic() - started:.1f}s")
    print_provision_summary(settings, others.kinds, approved, refused_by_staff)


def print_provision_summary(settings: Settings, kinds: dict[str, int], approved: int, refused: int) -> None:
    tenant = settings.tenant
    engine = chukan_engine(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(chukan_records.c.side, chukan_records.c.outcome, chukan_records.c.body).where(
                    chukan_records.c.tenant == tenant
                )
            ).all()
            asked = [
                json.loads(r.body)
                for r in conn.execute(
                    sa.select(chukan_records.c.body).where(
                        chukan_records.c.tenant != tenant, chukan_records.c.side == "REQUESTER"
                    )
                )
            ]
            held = conn.execute(sa.select(sa.func.count()).where(chukan_held.c.tenant == tenant)).scalar_one()
    finally:
        engine.dispose()
    provider = Counter(r.outcome for r in rows if r.side == "PROVIDER")
    reasons = Counter(
        json.loads(r.body).get("reason") or "-" for r in rows if r.side == "PROVIDER" and r.outcome == "REFUSED"
    )
    requester = Counter((r.outcome, json.loads(r.body).get("reason") or "") for r in rows if r.side == "REQUESTER")
    hub = make_engine(settings.database_url.reveal())
    try:
        with hub.connect() as conn:
            history = conn.execute(sa.select(sa.func.count()).where(ledger_history.c.tenant == tenant)).scalar_one()
            queries = conn.execute(sa.select(sa.func.count()).where(connector_queries.c.tenant == tenant)).scalar_one()
            persisted = conn.execute(
                sa.select(sa.func.count()).where(provision_records.c.tenant == tenant)
            ).scalar_one()
    finally:
        hub.dispose()
    print(f"\n== 情報提供 (this city, {tenant}, as provider) ==")
    print("queries sent by the simulated municipalities: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print(f"  answered automatically:      {provider['PROVIDED_AUTOMATICALLY']}")
    print(f"  held (自動応答不可フラグ):     {held}")
    print(f"  approved after review:       {provider['PROVIDED_AFTER_REVIEW']} (demo reviewer approved {approved})")
    print(f"  refused by staff / 中間サーバー: {provider['REFUSED']} (demo reviewer refused {refused})")
    for reason, n in sorted(reasons.items()):
        print(f"    {n:>5}  {reason}")
    network = Counter(
        b.get("reason") or "-"
        for b in asked
        if b["provider"] == tenant and json.loads(b.get("response_body") or "{}").get("source_system") == NETWORK
    )
    print(f"  refused by the network:      {sum(network.values())}")
    for reason, n in sorted(network.items()):
        print(f"    {n:>5}  {reason}")
    print(f"  errors:                      {provider['ERROR']}")
    print(f"\n== 情報照会 (this city as requester: {queries} 転入 queries) ==")
    for (outcome, reason), n in sorted(requester.items()):
        print(f"  {outcome:<24}{n:>6}  {reason}")
    print(f"  history merged into the ledger (ledger_history rows): {history}")
    print(f"\n情報提供等記録 of this city's 中間サーバー tenant: {len(rows)}; persisted by the hub's sink: {persisted}")
