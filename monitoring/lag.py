"""Consumer lag per partition, sampled in a background thread into the metrics bundle.

Reads through :class:`hub.lag.GroupLagReader` (a non-subscribing consumer with the group's id: committed offsets
and high watermarks), not through the admin client's ListConsumerGroupOffsets, which crashes librdkafka 2.16 on a
retriable error. The lag is what the group has *committed*, i.e. what a restart would have to process again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaException

from hub.kafka import ClientConfig
from hub.lag import GroupLagReader
from monitoring.metrics import HubMetrics

log = logging.getLogger("kenshin_hub.monitoring")

LAG_INTERVAL_S = 5.0
READ_TIMEOUT_S = 10.0


class LagSampler:
    """Every ``interval_s`` (and once at start), sets ``kenshin_hub_consumer_lag_messages`` of ``group``."""

    def __init__(
        self,
        conf: ClientConfig,
        group: str,
        topics: Sequence[str],
        metrics: HubMetrics,
        *,
        interval_s: float = LAG_INTERVAL_S,
        reader: Callable[[ClientConfig, str], GroupLagReader] = GroupLagReader,
    ) -> None:
        self.group = group
        self.topics = tuple(topics)
        self._conf = conf
        self._metrics = metrics
        self._interval_s = interval_s
        self._reader_factory = reader
        self._stop = threading.Event()
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name=f"lag-{group}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader: GroupLagReader | None = None
        try:
            while not self._stop.is_set():
                try:
                    if reader is None:
                        reader = self._reader_factory(self._conf, self.group)
                    self._metrics.consumer_lag(self.group, reader.lag(self.topics, timeout_s=READ_TIMEOUT_S))
                    self.samples += 1
                except KafkaException as exc:
                    self._metrics.consumer_lag_read_failed(self.group)
                    log.debug("lag of %s not read (%s); trying again", self.group, exc.args[0] if exc.args else exc)
                except Exception as exc:  # noqa: BLE001 - the sampler must outlive any failure; the counter shows it
                    self._metrics.consumer_lag_read_failed(self.group)
                    log.warning("lag of %s not read (%s); trying again", self.group, type(exc).__name__)
                self._stop.wait(self._interval_s)
        finally:
            if reader is not None:
                reader.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=READ_TIMEOUT_S * 2)
