"""Small helpers for integration tests: produce and consume real messages with bounded loops."""

from __future__ import annotations

import dataclasses
import time

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient

from schemas.registry import register
from schemas.serde import registry_client
from topics.admin import apply
from topics.catalog import Topic


def private_topic(topic: Topic, suffix: str) -> Topic:
    """A copy of a catalog topic under a name no other test uses."""
    return dataclasses.replace(topic, name=f"it-{suffix}-{topic.name}", dlq=None)


def create(admin: AdminClient, registry_url: str, *topics: Topic) -> None:
    apply(admin, topics)
    with registry_client({"url": registry_url}) as client:
        results = register(client, topics)
    assert all(r.ok for r in results), results


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered"


def consume(bootstrap: str, topic: str, group: str, expected: int, timeout_s: float = 60.0) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg)
    finally:
        consumer.close()
    return got
