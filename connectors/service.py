"""Services of the provision flow: pure handlers over a database connection, run by the sinks' runner.

A :class:`Service` turns one input event into state changes (on the connection it is given) and output events. It
is run in one of two shells:

* :class:`ServiceSink` plugs it into :class:`sinks.base.SinkRunner` (real Kafka): one transaction per batch, the
  outputs produced after the commit and before the offsets move on;
* :class:`Bus` delivers events between services in process (unit and property tests), through the same
  :func:`act_once`.

Effectively-once by idempotent effects: :func:`act_once` stores each input's outputs in ``service_effects`` in the
same transaction as its state changes. A replayed input (a crash between the commit and the offset commit) finds
them and re-sends the same events (same ``event_id``) instead of acting twice.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hub.engine.handler import Delivery, Outcome, Refusal
from schemas.models import DeadLetter, Event, ProvisionRequest
from schemas.record import json_default, now_utc
from sinks.base import Sink
from topics import catalog
from topics.catalog import Topic

log = logging.getLogger("kenshin_hub.connectors")

Output = tuple[Topic, Event]


@dataclass(frozen=True)
class Position:
    """Where the input being handled came from (for dead letters a service writes itself)."""

    topic: str
    partition: int
    offset: int


def sanitized_request(request: ProvisionRequest) -> str:
    """The request body as records and dead letters keep it: no 符号, and of the permit only its id and expiry."""
    body: dict[str, Any] = json.loads(request.to_json())
    body.pop("fugo", None)
    permit = body.pop("permit", None)
    if permit:
        body["permit_id"] = permit.get("permit_id")
        body["permit_expires_at"] = permit.get("expires_at")
    return json.dumps(body, ensure_ascii=False, sort_keys=True)


def rejection(
    topic: Topic,
    event: Event,
    reason: str,
    position: Position | None,
    *,
    event_id: uuid.UUID,
    occurred_at: datetime,
    source: str,
    step: str,
) -> Output:
    """The dead letter of an input a service refuses to act on (a decoded event the data's own fault), on the
    input topic's dead-letter topic. A provision request's letter keeps no 符号.
    """
    where = position or Position(topic.name, -1, -1)
    letter = DeadLetter(
        event_id=event_id,
        occurred_at=occurred_at,
        tenant=event.tenant,
        source_system=source,
        step=step,
        reason=reason,
        error_type="Rejected",
        source_topic=where.topic,
        source_partition=where.partition,
        source_offset=where.offset,
        original_value=(sanitized_request(event) if isinstance(event, ProvisionRequest) else event.to_json()).encode(),
    )
    return (topic.dlq or catalog.SINKS_DLQ, letter)


class Service(Protocol):
    name: str
    inputs: tuple[Topic, ...]

    def accepts(self, event: Event) -> bool:
        """Whether this instance acts on ``event`` (e.g. only its own tenant's); others are skipped."""

    def handle(self, conn: Connection, topic: Topic, event: Event) -> list[Output]:
        """Act on one event inside the caller's transaction; return the events to produce."""


def encode_outputs(outputs: Sequence[Output]) -> str:
    """The outputs as stored in ``service_effects``: each event as its ``to_json`` form, under its topic's name."""
    return json.dumps(
        [{"topic": t.name, "value": e.to_dict()} for t, e in outputs], default=json_default, ensure_ascii=False
    )


def decode_outputs(text: str) -> list[Output]:
    out: list[Output] = []
    for item in json.loads(text):
        topic = catalog.by_name(item["topic"])
        out.append((topic, topic.value_type.from_json(json.dumps(item["value"]))))
    return out


def act_once(conn: Connection, effects: sa.Table, service: Service, topic: Topic, event: Event) -> list[Output]:
    """Run ``service`` on ``event`` unless it already did; either way return the event's outputs.

    An event the service does not act on (another tenant's, say) leaves no row: deciding that again is the same.
    """
    if not service.accepts(event):
        return []
    input_id = f"{topic.name}:{event.event_id}"
    read, write = _effect_statements(effects)
    stored = conn.execute(read, {"w_service": service.name, "w_input_id": input_id}).scalar_one_or_none()
    if stored is not None:
        return decode_outputs(stored)
    outputs = service.handle(conn, topic, event)
    conn.execute(
        write,
        {"service": service.name, "input_id": input_id, "outputs": encode_outputs(outputs), "acted_at": now_utc()},
    )
    return outputs


_EFFECT_STATEMENTS: dict[sa.Table, tuple[sa.Select[tuple[Any]], sa.Insert]] = {}


def _effect_statements(effects: sa.Table) -> tuple[sa.Select[tuple[Any]], sa.Insert]:
    """The read and the write of ``act_once``, built once per table (building them per event cost more than running
    them).
    """
    made = _EFFECT_STATEMENTS.get(effects)
    if made is None:
        read = sa.select(effects.c.outputs).where(
            effects.c.service == sa.bindparam("w_service"), effects.c.input_id == sa.bindparam("w_input_id")
        )
        made = _EFFECT_STATEMENTS[effects] = (read, sa.insert(effects))
    return made


class ServiceSink(Sink[Event]):
    """One topic of a service, as a sink of :class:`sinks.base.SinkRunner`."""

    def __init__(
        self,
        service: Service,
        topic: Topic,
        effects: sa.Table,
        observer: Callable[[list[Output]], None] | None = None,
    ) -> None:
        self.service = service
        self.observer = observer
        self.topic = topic
        self.name = f"{service.name}.{topic.name}"
        self.effects = effects
        self._buffer: list[tuple[Event, Position]] = []
        self._outputs: list[tuple[tuple[int, int], Output]] = []

    def add(self, event: Event, key: bytes, partition: int, offset: int) -> None:
        self._buffer.append((event, Position(self.topic.name, partition, offset)))

    def flush(self, connection: Connection) -> None:
        for event, position in self._buffer:
            if hasattr(self.service, "position"):
                self.service.position = position
            where = (position.partition, position.offset)
            outputs = act_once(connection, self.effects, self.service, self.topic, event)
            self._outputs.extend((where, out) for out in outputs)
        self._buffer.clear()

    def take_outputs(self) -> list[tuple[tuple[int, int], Output]]:
        out, self._outputs = self._outputs, []
        return out

    def committed(self, done: Sequence[tuple[Delivery, Outcome]]) -> None:
        """The observer sees the committed batch's outputs (its outcomes), once they are acknowledged."""
        taken = [out for _d, outcome in done if not isinstance(outcome, Refusal) for out in outcome]
        if self.observer is not None and taken:
            self.observer(taken)

    def clear(self) -> None:
        self._buffer.clear()
        self._outputs.clear()


def service_sinks(
    service: Service, effects: sa.Table, observer: Callable[[list[Output]], None] | None = None
) -> list[Sink[Any]]:
    return [ServiceSink(service, topic, effects, observer) for topic in service.inputs]


@dataclass
class Bus:
    """Delivers events between services in process, each service in its own database (tests and simulations).

    Every published event is kept in :attr:`sent` with its topic (:meth:`on` reads it), so a test can look at
    everything that crossed each topic, as a consumer of it would.
    """

    members: list[tuple[Service, Engine, sa.Table]] = field(default_factory=list)
    sent: list[Output] = field(default_factory=list)
    _queue: deque[Output] = field(default_factory=deque)
    taps: list[Callable[[Topic, Event], None]] = field(default_factory=list)
    _inputs: dict[int, frozenset[str]] = field(default_factory=dict)

    def join(self, service: Service, engine: Engine, effects: sa.Table) -> None:
        self.members.append((service, engine, effects))

    def publish(self, outputs: Iterable[Output]) -> None:
        for topic, event in outputs:
            self.sent.append((topic, event))
            for tap in self.taps:
                tap(topic, event)
            self._queue.append((topic, event))

    def _inputs_of(self, service: Service) -> frozenset[str]:
        names = self._inputs.get(id(service))
        if names is None:
            names = self._inputs[id(service)] = frozenset(t.name for t in service.inputs)
        return names

    def on(self, topic: Topic) -> list[Event]:
        """What crossed ``topic``; for a template of the tenant topics, what crossed any municipality's, in order."""
        return [e for t, e in self.sent if topic.name in (t.name, t.template)]

    def run(self, limit: int = 1_000_000) -> int:
        """Deliver until nothing is left (bounded); the number of deliveries."""
        delivered = 0
        while self._queue:
            if delivered >= limit:
                raise RuntimeError("the bus did not settle")
            topic, event = self._queue.popleft()
            for service, engine, effects in self.members:
                if topic.name in self._inputs_of(service):
                    with engine.begin() as conn:
                        outputs = act_once(conn, effects, service, topic, event)
                    self.publish(outputs)
                    delivered += 1
        return delivered
