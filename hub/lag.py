"""Consumer-group lag: how far a group is behind the end of its topics.

Read with a non-subscribing consumer carrying the group's id (``committed()`` and watermarks), not with the admin
client's ListConsumerGroupOffsets: librdkafka (2.16) crashes the process when that admin response carries a
retriable error such as COORDINATOR_LOAD_IN_PROGRESS on a freshly started cluster.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from hub.kafka import ClientConfig


class GroupLagReader:
    """Reads a group's lag again and again through one non-subscribing consumer (the metrics' lag sampler)."""

    def __init__(self, conf: ClientConfig, group: str) -> None:
        self.group = group
        self._consumer = Consumer({**conf, "group.id": group, "enable.auto.commit": False, "log_level": 0})

    def lag(self, topics: Iterable[str], timeout_s: float = 30.0) -> dict[tuple[str, int], int]:
        """Lag per (topic, partition): end offset minus the group's committed offset (all of it when none)."""
        metadata = self._consumer.list_topics(timeout=timeout_s).topics
        partitions = [TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
        if not partitions:
            return {}
        lag = {}
        for tp in self._consumer.committed(partitions, timeout=timeout_s):
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
            lag[(tp.topic, tp.partition)] = high - max(tp.offset, 0)
        return lag

    def close(self) -> None:
        self._consumer.close()


def group_lag(conf: ClientConfig, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition) of ``group``, read once (see :meth:`GroupLagReader.lag`)."""
    reader = GroupLagReader(conf, group)
    try:
        return reader.lag(topics)
    finally:
        reader.close()


def wait_drained(
    conf: ClientConfig,
    group: str,
    topics: Iterable[str],
    *,
    timeout_s: float = 300.0,
    check: Callable[[], None] | None = None,
    poll_s: float = 0.1,
) -> float:
    """Block until ``group`` has committed everything in ``topics``; the seconds it took. TimeoutError if not.

    ``check`` runs at every turn (the supervisor's: a dead child raises at once instead of being waited for).
    """
    wanted = list(topics)
    started = time.monotonic()
    reader = GroupLagReader(conf, group)
    last: dict[tuple[str, int], int] = {}
    moved = started  # when the lag last changed: a stall and a slow drain read differently
    try:
        while time.monotonic() - started < timeout_s:
            if check is not None:
                check()
            with contextlib.suppress(KafkaException):  # e.g. the group coordinator is still loading: ask again
                lag = reader.lag(wanted)
                if sum(lag.values()) == 0:
                    return time.monotonic() - started
                if lag != last:
                    last, moved = lag, time.monotonic()
            time.sleep(poll_s)
    finally:
        reader.close()
    if check is not None:
        check()
    behind = ", ".join(f"{t}[{p}]={n}" for (t, p), n in sorted(last.items()) if n)
    raise TimeoutError(
        f"group {group} still behind on {wanted} after {timeout_s:.0f}s (lag unchanged for the last "
        f"{time.monotonic() - moved:.0f}s): {behind or 'unknown'}"
    )
