"""Consumer-group lag, read through the admin client: how far a group is behind the end of its topics."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from hub.kafka import ClientConfig


def group_lag(conf: ClientConfig, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition): end offset minus the group's committed offset (all of it when none)."""
    admin = AdminClient(dict(conf))
    metadata = admin.list_topics(timeout=30).topics
    partitions = [TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
    if not partitions:
        return {}
    request = [ConsumerGroupTopicPartitions(group, partitions)]
    committed = {
        (tp.topic, tp.partition): tp.offset
        for tp in admin.list_consumer_group_offsets(request)[group].result(timeout=30).topic_partitions
    }
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    ends = admin.list_offsets({tp: latest for tp in partitions}, request_timeout=30)
    lag = {}
    for tp, future in ends.items():
        end = future.result(timeout=30).offset
        done = committed.get((tp.topic, tp.partition), -1)
        lag[(tp.topic, tp.partition)] = end - max(done, 0)
    return lag


def wait_drained(conf: ClientConfig, group: str, topics: Iterable[str], *, timeout_s: float = 300.0) -> float:
    """Block until ``group`` has committed everything in ``topics``; the seconds it took. TimeoutError if not."""
    wanted = list(topics)
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if sum(group_lag(conf, group, wanted).values()) == 0:
                return time.monotonic() - started
        except KafkaException:
            pass  # e.g. the group coordinator is still loading: ask again
        time.sleep(0.25)
    raise TimeoutError(f"group {group} still behind on {wanted} after {timeout_s:.0f}s")
