"""Serde of the hub's events: Avro in the Confluent wire format through ``confluent_kafka.schema_registry.avro``.

Serializers are plain callables with a context, as in confluent-kafka. Schemas are never auto-registered at
runtime: ``kenshin-hub schemas register`` does that, and a serializer whose schema is not registered fails with
a clear error. Keys are UTF-8 strings (see :mod:`topics.catalog`).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.models import Event
from topics.catalog import Topic

E = TypeVar("E", bound=Event)


class DecodeError(ValueError):
    """A message value that is not a valid event of its topic (wrong format, unknown schema, broken invariant)."""


def registry_client(conf: dict[str, str]) -> SchemaRegistryClient:
    """A registry client; ``{"url": "mock://name"}`` gives confluent-kafka's in-process mock (unit tests)."""
    return SchemaRegistryClient.new_client(conf)


class TopicSerde(Generic[E]):
    """Encode and decode the values (and string keys) of one topic."""

    def __init__(self, topic: Topic, registry: SchemaRegistryClient, model: type[E] | None = None) -> None:
        self.topic = topic
        self.model: type[E] = model if model is not None else topic.value_type  # type: ignore[assignment]
        schema = Schema(self.model.schema_str(), schema_type="AVRO")
        self._serializer = AvroSerializer(
            registry,
            schema,
            to_dict=_to_dict,
            conf={"auto.register.schemas": False, "normalize.schemas": False},
        )
        self._deserializer = AvroDeserializer(registry, schema.schema_str, from_dict=self._from_dict)

    def _from_dict(self, data: dict[str, Any], _ctx: SerializationContext) -> E:
        return self.model.from_dict(data)

    def key(self, event: E) -> bytes:
        return self.topic.key_of(event).encode()

    def value(self, event: E) -> bytes:
        ctx = SerializationContext(self.topic.name, MessageField.VALUE)
        data = self._serializer(event, ctx)
        if not isinstance(data, bytes):
            raise ValueError("serializer returned no bytes")
        return data

    def decode(self, payload: bytes, topic_name: str | None = None) -> E:
        """Decode one value; any failure becomes a :class:`DecodeError` naming its cause (never the payload)."""
        if not payload:
            raise DecodeError("empty message value")
        ctx = SerializationContext(topic_name or self.topic.name, MessageField.VALUE)
        try:
            event = self._deserializer(payload, ctx)
        except Exception as exc:
            raise DecodeError(f"not a valid {self.model.__name__}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(event, self.model):
            raise DecodeError(f"decoded to {type(event).__name__}, expected {self.model.__name__}")
        return event


def _to_dict(event: Event, _ctx: SerializationContext) -> dict[str, Any]:
    return event.to_dict()
