"""The one retry policy: what is an outage (wait and retry, never dead-letter) and how long to wait.

An outage of the broker, the schema registry or the database is not the data's fault: the batch is rolled back,
nothing is committed, and the same batch is read again after a bounded exponential back-off. Only a fault of the
data itself (it does not decode, a handler refuses it, the database refuses its row) becomes a dead letter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy.exc as sa_exc
from confluent_kafka import KafkaError, KafkaException

from schemas.serde import RegistryUnavailable


class StaleOffsets(RuntimeError):
    """Another worker acted on the partition since this batch read the stored offsets; the batch is re-read."""


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge every output of the batch; the batch is replayed (its outbox re-sent)."""


def describe_error(exc: BaseException) -> str:
    """A log-safe description of ``exc``: class names and SQLSTATE, never the message (it may hold row values)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return f"KafkaException ({exc.args[0].name()})"
    text = type(exc).__name__
    orig = getattr(exc, "orig", None)
    if orig is not None:
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        text += f" ({type(orig).__name__}" + (f", SQLSTATE {sqlstate}" if sqlstate else "") + ")"
    return text


def is_transient(exc: BaseException) -> bool:
    """True for outages (connection, broker, registry, a concurrent worker): retry as is, never dead-letter."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | KafkaException
        | RegistryUnavailable
        | StaleOffsets
        | DeliveryFailed
        | ConnectionError
        | TimeoutError,
    )


@dataclass
class Backoff:
    """Exponential back-off between attempts: ``initial_s`` · 2^(failures-1), at most ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0
    failures: int = 0
    retry_at: float = field(default=0.0)

    def failed(self) -> float:
        """Count a failure; the delay before the next attempt."""
        self.failures += 1
        delay = min(self.max_s, self.initial_s * 2.0 ** (self.failures - 1))
        self.retry_at = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def wait_s(self) -> float:
        return max(0.0, self.retry_at - time.monotonic())
