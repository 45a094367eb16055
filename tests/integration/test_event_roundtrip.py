"""Every event type goes through the real broker and the real schema registry and comes back equal."""

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from schemas import models as m
from schemas.serde import TopicSerde
from tests import samples
from tests.integration.conftest import Endpoints
from tests.integration.helpers import consume, create, private_topic, produce
from topics.catalog import ALL_TOPICS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("event", samples.every_event(), ids=lambda e: type(e).__name__)
def test_event_type_through_kafka_and_registry(
    event: m.Event, endpoints: Endpoints, admin: AdminClient, registry: SchemaRegistryClient, unique: str
) -> None:
    catalog_topic = next(t for t in ALL_TOPICS if t.value_type is type(event))
    topic = private_topic(catalog_topic, unique)
    create(admin, endpoints.registry_url, topic)
    serde = TopicSerde(topic, registry)

    produce(endpoints.bootstrap, topic.name, [(serde.key(event), serde.value(event))])
    [msg] = consume(endpoints.bootstrap, topic.name, f"it-{unique}", expected=1)

    assert msg.key() == topic.key_of(event).encode()
    value = msg.value()
    assert value is not None
    assert value[0] == 0  # Confluent wire format
    assert serde.decode(value) == event


def test_a_result_stream_keeps_each_persons_order(
    endpoints: Endpoints, admin: AdminClient, registry: SchemaRegistryClient, unique: str
) -> None:
    from topics.catalog import INSTITUTION_RESULTS

    topic = private_topic(INSTITUTION_RESULTS, unique)
    create(admin, endpoints.registry_url, topic)
    serde = TopicSerde(topic, registry)
    events = [samples.primary_result(kind, reception_no=f"R-{i}") for i, kind in enumerate(m.ScreeningKind)] * 20
    produce(endpoints.bootstrap, topic.name, [(serde.key(e), serde.value(e)) for e in events])
    got = consume(endpoints.bootstrap, topic.name, f"it-{unique}", expected=len(events))
    assert len(got) == len(events)
    assert len({msg.partition() for msg in got}) == 1  # one person, one partition
    assert [serde.decode(msg.value() or b"").event_id for msg in got] == [e.event_id for e in events]
