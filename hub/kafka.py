"""Kafka client configurations shared by every component (one place for the partitioner and safety settings)."""

from __future__ import annotations

from hub.settings import Settings

ClientConfig = dict[str, str | int | float | bool]


def producer_config(settings: Settings, **extra: str | int | float | bool) -> ClientConfig:
    """An idempotent, acks=all producer whose partitioner matches the Java client (murmur2).

    librdkafka's default partitioner (CRC32) would put a key on a different partition than
    the Java clients do; every producer of the hub therefore uses murmur2, so a person's events stay co-partitioned
    with their state.
    """
    conf: ClientConfig = dict(settings.kafka_config())
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "compression.type": "zstd",
        }
    )
    conf.update(extra)
    return conf


def consumer_config(settings: Settings, group_id: str, **extra: str | int | float | bool) -> ClientConfig:
    """A consumer that commits only when told to (after its effects are durable), reading committed data only."""
    conf: ClientConfig = dict(settings.kafka_config())
    conf.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    conf.update(extra)
    return conf


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's default partitioner), as an unsigned 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[length - length % 4 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the hub's producers (murmur2) and the Java client put ``key`` on."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
