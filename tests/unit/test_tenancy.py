"""Per-tenant topics (issue 9 item 2): the naming, the ACLs it implies, and the tenant taken from the topic.

One municipality's provision-flow data travels on topics of its own (``{団体コード}.{template}``), each ACL names one
topic, and the shared 中間サーバー and network act for the tenant of the topic a message came from. A payload that
names another municipality is dead-lettered there and changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
import sqlalchemy as sa
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

from connectors.policy import network_tenants
from connectors.stores import chukan_persons, network_fugo
from connectors.world import World
from hub import access
from schemas.models import ChukanPerson, DeadLetter, FugoIssuance, ProvisionOutcome, ProvisionResponse, ResidentStatus
from tests import samples
from tests.unit.test_provision import HAKODATE, HOME, ITEMS, SAPPORO, T0, history, person_in
from topics import catalog
from topics.admin import network_topics

pytestmark = pytest.mark.unit


# --- the naming --------------------------------------------------------------------------------------------------


def test_a_tenant_topic_is_its_template_under_the_tenants_prefix_with_the_templates_subject() -> None:
    topic = catalog.for_tenant(catalog.CHUKAN_QUERIES, HOME)
    assert topic.name == f"{HOME}.chukan.queries.v1"
    assert (topic.template, topic.tenant) == (catalog.CHUKAN_QUERIES.name, HOME)
    assert topic.value_subject == catalog.CHUKAN_QUERIES.value_subject  # one subject, however many tenants
    assert topic.partitions == catalog.TENANT_PARTITIONS
    assert topic.dlq is not None
    assert topic.dlq.name == f"{HOME}.chukan.queries.dlq.v1"
    assert topic.dlq.tenant == HOME
    assert catalog.for_tenant(catalog.CHUKAN_QUERIES, HOME) is topic  # made once
    assert catalog.by_name(topic.name) is topic
    assert catalog.by_name(topic.dlq.name) is topic.dlq
    assert catalog.split_tenant(topic.name) == (HOME, catalog.CHUKAN_QUERIES.name)
    assert catalog.split_tenant(catalog.RESIDENTS.name) == (None, catalog.RESIDENTS.name)
    assert catalog.own(catalog.RESIDENTS, HOME) is catalog.RESIDENTS  # the city's own topics are not per tenant


@pytest.mark.parametrize("tenant", ["12345", "0120411", "01204a", ""])
def test_only_a_template_and_a_tenant_code_make_a_tenant_topic(tenant: str) -> None:
    with pytest.raises(ValueError, match="団体コード"):
        catalog.for_tenant(catalog.CHUKAN_PERSONS, tenant)
    with pytest.raises(ValueError, match="not a tenant topic"):
        catalog.for_tenant(catalog.RESIDENTS, HOME)
    with pytest.raises(KeyError):
        catalog.by_name(f"{HOME}.residents.v1")  # no such tenant topic: the hub's own topics are unprefixed


def test_the_cluster_holds_every_members_topics_and_no_template() -> None:
    names = {t.name for t in network_topics()}
    templates = {t.name for t in catalog.TENANT_SCOPED} | {t.dlq.name for t in catalog.TENANT_SCOPED if t.dlq}
    assert not names & templates
    for code in network_tenants():
        assert {t.name for t in catalog.tenant_topics(code)} <= names
    assert len(names) == len(catalog.CITY_TOPICS) + len(network_tenants()) * len(templates)


# --- the ACLs --------------------------------------------------------------------------------------------------


def _topics_of(principal: str, acls: list[access.AclBinding]) -> set[str]:
    return {b.name for b in acls if b.principal == f"User:{principal}" and b.restype == ResourceType.TOPIC}


def test_a_municipalitys_principals_are_granted_its_own_tenant_topics_and_no_others() -> None:
    acls = access.bindings(HOME, network=network_tenants())
    assert all(b.resource_pattern_type == ResourcePatternType.LITERAL for b in acls)
    templates = {t.name for t in catalog.TENANT_SCOPED}
    for process in ("connector", "sinks", "staff", "processors", "upstream"):
        names = _topics_of(f"{process}-{HOME}", acls)
        assert not names & templates, process
        foreign = {n for n in names if catalog.split_tenant(n)[0] not in (None, HOME)}
        assert not foreign, (process, foreign)
    connector = _topics_of(f"connector-{HOME}", acls)
    assert f"{HOME}.chukan.queries.v1" in connector
    assert f"{HOME}.chukan.query-answers.v1" in connector
    assert f"{HOME}.chukan.provision-records.v1" not in connector  # its role, not the whole prefix
    assert _topics_of(f"sinks-{HOME}", acls) >= {f"{HOME}.chukan.provision-records.v1"}
    # the shared services serve every member of the network
    for code in network_tenants():
        assert f"{code}.chukan.persons.v1" in _topics_of("chukan", acls)
        assert f"{code}.network.queries.v1" in _topics_of("network", acls)
        assert f"{code}.chukan.persons.v1" not in _topics_of("network", acls)


# --- the tenant comes from the topic ---------------------------------------------------------------------------


def _letters(world: World, template: catalog.Topic) -> list[DeadLetter]:
    assert template.dlq is not None
    return [e for e in world.events(template.dlq) if isinstance(e, DeadLetter)]


def test_a_person_sent_on_one_municipalitys_topic_for_another_is_dead_lettered_and_not_stored(world: World) -> None:
    forged = ChukanPerson(
        **world.header(SAPPORO),  # type: ignore[arg-type]
        integrated_atena_no="000000000000001",
        person_token=None,
        person=samples.person(),
        status=ResidentStatus.RESIDENT,
        support_measure=False,
        version=99,
    )
    world.publish((catalog.for_tenant(catalog.CHUKAN_PERSONS, HOME), forged))  # HOME's connector, naming 札幌
    [letter] = _letters(world, catalog.CHUKAN_PERSONS)
    assert letter.reason.startswith(catalog.TENANT_MISMATCH)
    assert f"tenant {SAPPORO}" in letter.reason
    assert letter.source_topic == f"{HOME}.chukan.persons.v1"
    assert world.events(catalog.for_tenant(catalog.CHUKAN_PERSONS, HOME).dlq)  # type: ignore[arg-type]
    assert world.count("chukan", chukan_persons) == 0


def test_a_query_sent_on_one_municipalitys_topic_as_another_is_never_asked(world: World) -> None:
    person_in(world, HOME, "000000000000001", samples.my_number())
    person_in(world, SAPPORO, "000000000000077", samples.my_number())
    world.fukuhon(HOME, "000000000000001", "R1", history(2025))
    query = world.query(SAPPORO, "000000000000077", HOME, ITEMS)  # genuine, on 札幌's own topic: answered
    assert [e.outcome for e in world.events(catalog.QUERY_ANSWERS) if isinstance(e, ProvisionResponse)] == [
        ProvisionOutcome.PROVIDED_AUTOMATICALLY
    ]
    asked = len(world.events(catalog.NETWORK_QUERIES))
    # 函館's connector sends the same query as 札幌's, on its own topic (the only one its principal may write)
    copy = replace(query, event_id=uuid.uuid4(), request_id=uuid.uuid4())
    world.publish((catalog.for_tenant(catalog.CHUKAN_QUERIES, HAKODATE), copy))
    assert len(world.events(catalog.NETWORK_QUERIES)) == asked
    [letter] = _letters(world, catalog.CHUKAN_QUERIES)
    assert letter.source_topic == f"{HAKODATE}.chukan.queries.v1"
    assert f"tenant {SAPPORO}" in letter.reason
    # every answer went to the requester's own topic
    answers = [(t.name, e) for t, e in world.bus.sent if t.template == catalog.QUERY_ANSWERS.name]
    assert [name for name, _ in answers] == [f"{SAPPORO}.chukan.query-answers.v1"]


def test_an_answer_naming_another_requester_than_its_topic_is_dead_lettered(world: World) -> None:
    answer = ProvisionResponse(
        **world.header(HOME),  # type: ignore[arg-type]
        request_id=uuid.uuid4(),
        requester=SAPPORO,
        provider=HAKODATE,
        outcome=ProvisionOutcome.PROVIDED_AUTOMATICALLY,
        responded_at=T0,
    )
    world.publish((catalog.for_tenant(catalog.PROVISION_RESPONSES, HOME), answer))
    [letter] = _letters(world, catalog.PROVISION_RESPONSES)
    assert f"requester {SAPPORO}" in letter.reason
    assert world.events(catalog.QUERY_ANSWERS) == []


def test_the_network_issues_no_fugo_for_a_request_naming_another_member_than_its_topic(world: World) -> None:
    forged = FugoIssuance(
        **world.header(SAPPORO),  # type: ignore[arg-type]
        integrated_atena_no="000000000000001",
        person_token="t" * 64,
    )
    world.publish((catalog.for_tenant(catalog.FUGO_REQUESTS, HOME), forged))
    assert world.events(catalog.FUGO_ISSUED) == []
    [letter] = _letters(world, catalog.FUGO_REQUESTS)
    assert letter.reason.startswith(catalog.TENANT_MISMATCH)
    assert letter.step == "network.route"
    with world.engines["network"].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(network_fugo)).scalar_one() == 0


def test_the_acls_name_each_binding_once() -> None:
    """The admin API refuses a batch with a binding twice: the shared services' own topics and groups (their
    dead-letter topic, their group) are granted once however many municipalities they serve.
    """
    acls = access.bindings(HOME, network=network_tenants())
    keys = [(b.restype, b.name, b.principal, b.operation) for b in acls]
    assert len(keys) == len(set(keys))
    assert ("sinks.dlq.v1", "User:chukan") in {(b.name, b.principal) for b in acls}
