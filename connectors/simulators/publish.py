"""Send simulated events to Kafka through a configured ``confluent_kafka.Producer``, with a progress bar.

The producer comes from the caller, configured with :func:`hub.kafka.producer_config` (idempotent, acks=all,
murmur2). Messages carry no explicit timestamp: the broker's time is used, since an ``occurred_at`` decades ago (an
initial 出生 event) would make the topic's time-based retention delete the message at once. Nothing about the
events themselves is printed, only counts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TextIO, TypeVar

from topics.catalog import Topic

E_contra = TypeVar("E_contra", contravariant=True)

PROGRESS_THRESHOLD = 1000  # no bar for fewer events
POLL_EVERY = 100  # serve delivery callbacks every so many messages
FLUSH_TIMEOUT_S = 60.0
_BAR_WIDTH = 30
_REDRAW_S = 0.1


class ProducerLike(Protocol):
    """What :func:`publish` needs of a ``confluent_kafka.Producer``."""

    def produce(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ..., *, on_delivery: Callable[[Any, Any], None]
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class SerdeLike(Protocol[E_contra]):
    """What :func:`publish` needs of a :class:`schemas.serde.TopicSerde`."""

    @property
    def topic(self) -> Topic: ...

    def key(self, event: E_contra) -> bytes: ...

    def value(self, event: E_contra) -> bytes: ...


class _Progress:
    def __init__(self, total: int, label: str, out: TextIO, enabled: bool) -> None:
        self.total, self.label, self.out = total, label, out
        self.enabled = enabled and total > PROGRESS_THRESHOLD
        self._last = 0.0

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < _REDRAW_S:
            return
        self._last = now
        filled = _BAR_WIDTH * done // self.total
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        prefix = f"{self.label} " if self.label else ""
        self.out.write(f"\r{prefix}[{bar}] {done}/{self.total} {100 * done // self.total:3d}%")
        if final:
            self.out.write("\n")
        self.out.flush()


def publish(
    producer: ProducerLike,
    serde: SerdeLike[E_contra],
    events: Iterable[E_contra],
    *,
    progress: bool = True,
    label: str = "",
    flush_timeout: float = FLUSH_TIMEOUT_S,
    out: TextIO | None = None,
) -> int:
    """Produce every event to ``serde.topic`` keyed and encoded by ``serde``; the number sent.

    Waits for every delivery report: raises :class:`RuntimeError` when a message is still undelivered after
    ``flush_timeout`` seconds or when any delivery failed.
    """
    items: Sequence[E_contra] = events if isinstance(events, Sequence) else list(events)
    topic = serde.topic.name
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))  # a KafkaError: code and broker message, never the payload

    bar = _Progress(len(items), label or topic, out if out is not None else sys.stderr, progress)
    sent = 0
    for event in items:
        key, value = serde.key(event), serde.value(event)
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: serve deliveries, then retry
                producer.poll(0.5)
        sent += 1
        if sent % POLL_EVERY == 0:
            producer.poll(0)
        bar.update(sent)
    remaining = producer.flush(flush_timeout)
    bar.update(sent, final=True)
    if remaining > 0:
        raise RuntimeError(f"{remaining} of {sent} messages to {topic} still undelivered after {flush_timeout:g} s")
    if failures:
        raise RuntimeError(f"{len(failures)} of {sent} messages to {topic} failed; first error: {failures[0]}")
    return sent
