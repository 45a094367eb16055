"""What a process plugs into the runtime: a :class:`Handler` that acts on a decoded batch inside a transaction.

The runtime owns everything that is the same for every process (consuming, decoding, the transaction, the outbox,
delivery, offsets, retries, dead letters, metrics); a handler owns only what its process does with the events.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine

from monitoring.metrics import DeadLetterReason
from schemas.models import Event
from topics.catalog import Topic

Output = tuple[Topic, Event]


@dataclass(frozen=True)
class Delivery:
    """One decoded message of a batch, with its position."""

    topic: Topic
    partition: int
    offset: int
    key: bytes
    event: Event


@dataclass(frozen=True)
class Refusal:
    """The handler's verdict that one delivery's data is at fault: it is dead-lettered, the rest of the batch kept.

    ``reason`` is worded without personal data (it goes to logs and to the dead letter).
    """

    step: str
    reason: str
    error: BaseException
    category: DeadLetterReason = DeadLetterReason.INVALID


Outcome = Sequence[Output] | Refusal


class Handler(ABC):
    """A process's work on a batch.

    :meth:`handle` runs inside the runtime's transaction and must neither commit nor roll back. Raising from it
    rolls the whole batch back: an outage (see :func:`hub.engine.retry.is_transient`) is retried as is; any other
    error is retried too, and after a few attempts the batch is acted on one message per transaction so that the
    one message at fault is dead-lettered alone.
    """

    name: str
    topics: tuple[Topic, ...]

    def setup(self, engine: Engine) -> None:  # noqa: B027 - an optional hook
        """Check once, before consuming, that the store holds what the handler needs (tables are migrated)."""

    @abstractmethod
    def handle(self, conn: Connection, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Act on ``deliveries`` (offset order within each partition); one outcome per delivery, in order."""

    def steps(self, topic: Topic) -> tuple[str, ...]:
        """The step names a message of ``topic`` is counted under (metrics ``messages_in``)."""
        return (self.name,)

    def decode_step(self, topic: Topic) -> str:
        """The step a message of ``topic`` that does not decode is dead-lettered at."""
        return f"{self.name}.decode"

    def output_step(self, topic: Topic) -> str:
        """The step name the outputs of an input of ``topic`` are counted under (metrics ``messages_out``)."""
        return self.name

    def committed(self, deliveries: Sequence[Delivery], outcomes: Sequence[Outcome]) -> None:  # noqa: B027
        """The batch is durable: its transaction committed and its outputs were acknowledged (metrics hooks).

        Called when the batch settles, which is after the *next* batch has been handled: work only from
        ``deliveries`` and ``outcomes``, never from state a handler kept from its last :meth:`handle`.
        """

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:  # noqa: B027 - an optional hook
        """These partitions were taken away: drop any state kept for them between batches."""
