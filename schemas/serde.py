"""Serde of the hub's events: Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, body).

Bodies are written and read by fastavro with schemas parsed once: the writer side looks up the id of our own
schema for ``<topic>-value`` once (never auto-registering: ``kenshin-hub schemas register`` does that) and reuses
it; the reader side fetches, parses and caches each writer schema once per schema id, and skips schema resolution
when the writer schema is structurally the reader's. Both sides work on the logical types' base values: the
schemas fastavro sees have the logical types the models convert themselves (:data:`WIRE_LOGICAL_TYPES`) taken out,
the writer gets :meth:`~schemas.record.AvroRecord.to_wire` and ``from_dict`` converts what the reader returns,
because fastavro's own conversions of UUIDs and timestamps cost more than the rest of a read. The bytes are the
same as confluent-kafka's ``AvroSerializer`` writes, and either side reads the other's (a unit test proves it for
every event type).

Failures say whose fault they are:

* :class:`DecodeError` (a ``ValueError``): the bytes are not a valid event of the topic (empty, not the wire
  format, truncated, a body that does not parse, an id the registry does not know, a broken invariant). Dead-letter
  it. The reason never quotes the payload or a field value.
* :class:`RegistryUnavailable`: the registry could not answer (unreachable, timeout, 5xx...). Not the data's
  fault: retry the batch later; nothing is remembered for that id.
* :class:`SchemaNotRegistered` (a ``SchemaRegistryError``): our own schema is not registered for the subject.

An id the registry does not know is asked about once and remembered (a bounded set of :data:`UNKNOWN_IDS_MAX`
ids), so a flood of junk ids never becomes a flood of registry requests. The caches are shared by every serde of
one registry client. Keys are UTF-8 strings (see :mod:`topics.catalog`).
"""

from __future__ import annotations

import io
import json
import struct
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.models import Event
from schemas.record import ModelError
from topics.catalog import Topic

E = TypeVar("E", bound=Event)
T = TypeVar("T")

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")  # magic byte + schema id, as confluent-kafka's prefix_schema_id_serializer writes it
WIRE_LOGICAL_TYPES = frozenset({"date", "timestamp-millis", "uuid"})
"""Logical types the models convert themselves (``to_wire`` / ``from_dict``): fastavro reads and writes their base
types. Any other logical type in a writer schema is left to fastavro."""
UNKNOWN_IDS_MAX = 4096
"""How many ids the registry said it does not know are remembered (the oldest is forgotten first)."""


class DecodeError(ValueError):
    """A message value that is not a valid event of its topic (wrong format, unknown schema, broken invariant)."""


class EncodeError(ValueError):
    """An event that does not fit its own Avro schema (a bug upstream of the serde); names no field value."""


class RegistryUnavailable(Exception):
    """The schema registry could not answer (unreachable, timeout, 5xx...): not the data's fault; retry later."""


class SchemaNotRegistered(SchemaRegistryError):
    """Our own schema is not registered under the topic's value subject (schemas are never auto-registered)."""

    def __init__(self, subject: str, cause: SchemaRegistryError) -> None:
        super().__init__(
            cause.http_status_code,
            cause.error_code,
            f"the schema of subject {subject!r} was not found in the schema registry: "
            "run `kenshin-hub schemas register` first",
        )
        self.subject = subject


def registry_client(conf: dict[str, str]) -> SchemaRegistryClient:
    """A registry client; ``{"url": "mock://name"}`` gives confluent-kafka's in-process mock (unit tests)."""
    return SchemaRegistryClient.new_client(conf)


# --- the registry side: one request per schema id ------------------------------------------------------------


class _UnknownSchema(Exception):
    """The registry does not know the id, or what it holds under it is not a readable Avro schema."""


@dataclass(frozen=True)
class _WriterSchema:
    parsed: Any  # fastavro's parsed schema (reused by every read)
    canonical: str


def _unavailable(what: str, exc: BaseException) -> RegistryUnavailable:
    if isinstance(exc, SchemaRegistryError):
        return RegistryUnavailable(f"schema registry failed to answer {what}: HTTP {exc.http_status_code}")
    return RegistryUnavailable(f"schema registry unreachable for {what}: {type(exc).__name__}")


class _SchemaStore:
    """The writer schemas of one registry client, by id: each asked for once, parsed once.

    Only the registry's explicit "not found" (HTTP 404) makes an id unknown; any other failure of the client
    (connection refused, timeout, TLS, 5xx, 401...) is an outage, raised as :class:`RegistryUnavailable` and not
    remembered, so the next message asks again.
    """

    def __init__(self) -> None:
        self._known: dict[int, _WriterSchema] = {}
        self._unknown: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()  # one request per id even when threads miss it together

    def writer(self, registry: SchemaRegistryClient, schema_id: int) -> _WriterSchema:
        found = self._known.get(schema_id)
        if found is not None:
            return found
        with self._lock:
            found = self._known.get(schema_id)
            if found is not None:
                return found
            reason = self._unknown.get(schema_id)
            if reason is not None:
                raise _UnknownSchema(reason)
            try:
                found = self._fetch(registry, schema_id)
            except _UnknownSchema as exc:
                self._unknown[schema_id] = str(exc)
                while len(self._unknown) > UNKNOWN_IDS_MAX:
                    self._unknown.popitem(last=False)
                raise
            self._known[schema_id] = found
            return found

    def _fetch(self, registry: SchemaRegistryClient, schema_id: int) -> _WriterSchema:
        what = f"schema id {schema_id}"
        schema: Schema = _ask(what, f"{what} is not in the schema registry", registry.get_schema, schema_id)
        if (schema.schema_type or "AVRO") != "AVRO":
            raise _UnknownSchema(f"{what} is a {schema.schema_type} schema, not Avro")
        named: dict[str, Any] = {}
        try:
            self._add_references(registry, schema, named, set())
            parsed = parse_schema(wire_schema(json.loads(schema.schema_str or "")), named_schemas=named)
        except (_UnknownSchema, RegistryUnavailable):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the registry holds under this id, we cannot read it
            raise _UnknownSchema(f"{what} is not a readable Avro schema ({type(exc).__name__})") from None
        return _WriterSchema(parsed, canonical_form(parsed))

    def _add_references(
        self, registry: SchemaRegistryClient, schema: Schema, named: dict[str, Any], seen: set[tuple[str, int]]
    ) -> None:
        """Parse the named types ``schema`` references (each once, dependencies first) into ``named``."""
        for ref in schema.references or ():
            subject, version = ref.subject, ref.version
            if subject is None or version is None:
                raise _UnknownSchema("a schema reference has no subject or version")
            if (subject, version) in seen:
                continue
            seen.add((subject, version))
            what = f"the reference {subject!r} version {version}"
            referenced = _ask(what, f"{what} is not in the registry", registry.get_version, subject, version).schema
            self._add_references(registry, referenced, named, seen)
            parse_schema(wire_schema(json.loads(referenced.schema_str or "")), named_schemas=named)


def _ask(what: str, missing: str, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on the registry: "not found" (HTTP 404) is the data's fault; any other failure an outage."""
    try:
        return call(*args)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            raise _UnknownSchema(missing) from None
        raise _unavailable(what, exc) from exc
    except Exception as exc:  # connection refused, timeout, TLS, OAuth token, a non-JSON answer...
        raise _unavailable(what, exc) from exc


_STORES: weakref.WeakKeyDictionary[SchemaRegistryClient, _SchemaStore] = weakref.WeakKeyDictionary()
_STORES_LOCK = threading.Lock()


def _store(registry: SchemaRegistryClient) -> _SchemaStore:
    with _STORES_LOCK:
        store = _STORES.get(registry)
        if store is None:
            store = _STORES[registry] = _SchemaStore()  # holds no reference to the client: it can go
        return store


def wire_schema(schema: Any) -> Any:
    """``schema`` (parsed JSON) without the logical types of :data:`WIRE_LOGICAL_TYPES` (the same bytes)."""
    if isinstance(schema, list):
        return [wire_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: wire_schema(v) for k, v in schema.items() if k != "logicalType" or v not in WIRE_LOGICAL_TYPES}


# --- canonical form --------------------------------------------------------------------------------------------

_KEPT = ("type", "name", "fields", "symbols", "items", "values", "size", "logicalType", "precision", "scale")


def canonical_form(parsed: Any) -> str:
    """What decides how bytes read: Avro's parsing canonical form, but keeping logical types.

    Two schemas with the same form read every body to the same datum, so a writer schema equal to the reader
    schema in this form needs no resolution. Docs, aliases, defaults (only used when the two differ), order and
    custom properties are dropped; names are full names (fastavro's parsed schema has them).
    """
    return json.dumps(_structure(parsed), ensure_ascii=False, separators=(",", ":"))


def _structure(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_structure(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key in _KEPT:
        if key not in schema:
            continue
        value = schema[key]
        if key == "fields":
            out[key] = [{"name": f["name"], "type": _structure(f["type"])} for f in value]
        elif key in ("type", "items", "values"):
            out[key] = _structure(value)
        else:
            out[key] = value
    if set(out) == {"type"}:
        return out["type"]  # {"type": "string"} is "string"
    return out


# --- the serde -------------------------------------------------------------------------------------------------


class TopicSerde(Generic[E]):
    """Encode and decode the values (and string keys) of one topic.

    Cheap to build: the registry is first asked on the first :meth:`value` (our schema's id) or on the first
    :meth:`decode` of each schema id.
    """

    def __init__(self, topic: Topic, registry: SchemaRegistryClient, model: type[E] | None = None) -> None:
        self.topic = topic
        self.model: type[E] = model if model is not None else topic.value_type  # type: ignore[assignment]
        self._registry = registry
        self._store = _store(registry)
        self._schema = Schema(self.model.schema_str(), schema_type="AVRO")
        self._parsed = parse_schema(wire_schema(json.loads(self.model.schema_str())))
        self._canonical = canonical_form(self._parsed)
        self._header: bytes | None = None
        self._readers: dict[int, tuple[Any, Any]] = {}  # schema id -> (writer schema, reader schema or None)
        self._what = f"not a valid {self.model.__name__}"

    # --- writing ---

    def key(self, event: E) -> bytes:
        return self.topic.key_of(event).encode()

    def value(self, event: E) -> bytes:
        header = self._header if self._header is not None else self._lookup_header()
        data = event.to_wire()
        out = io.BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, self._parsed, data)
        except Exception as exc:  # noqa: BLE001 - fastavro quotes the value; say only where it failed
            raise EncodeError(f"{type(event).__name__} does not fit its Avro schema ({type(exc).__name__})") from None
        return out.getvalue()

    def _lookup_header(self) -> bytes:
        subject = self.topic.value_subject
        try:
            registered = self._registry.lookup_schema(subject, self._schema, normalize_schemas=False)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise SchemaNotRegistered(subject, exc) from None
            raise _unavailable(f"subject {subject!r}", exc) from exc
        except Exception as exc:  # only a 404 means "not registered"; any other failure is an outage
            raise _unavailable(f"subject {subject!r}", exc) from exc
        self._header = HEADER.pack(MAGIC_BYTE, registered.schema_id)
        return self._header

    # --- reading ---

    def decode(self, payload: bytes, topic_name: str | None = None) -> E:
        """Decode one value; bad bytes are a :class:`DecodeError` naming the cause (never the payload).

        Raises :class:`RegistryUnavailable` when the writer schema is not cached and the registry cannot answer.
        ``topic_name`` is accepted for compatibility: the schema id in the payload decides the writer schema.
        """
        if not payload:
            raise DecodeError("empty message value")
        if len(payload) < HEADER.size or payload[0] != MAGIC_BYTE:
            raise DecodeError(self._bad_header(payload))
        schema_id: int = HEADER.unpack_from(payload, 0)[1]
        reader = self._readers.get(schema_id)
        if reader is None:
            reader = self._reader_for(schema_id)
        body = io.BytesIO(payload)
        body.seek(HEADER.size)
        try:
            data = schemaless_reader(body, reader[0], reader[1])
        except Exception as exc:  # noqa: BLE001 - any failure to read the body is the data's fault
            raise DecodeError(
                f"{self._what}: the body does not read as schema id {schema_id} ({type(exc).__name__})"
            ) from None
        if not isinstance(data, dict):  # cannot happen with a record reader schema; keeps the types honest
            raise DecodeError(f"{self._what}: schema id {schema_id} does not read as a record")
        if body.tell() != len(payload):
            raise DecodeError(f"{self._what}: {len(payload) - body.tell()} byte(s) after the end of the record")
        try:
            return self.model.from_dict(data)
        except ModelError as exc:  # worded without personal data (see schemas.record.ModelError)
            raise DecodeError(f"{self._what}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. an enum symbol the model does not know; never quote the value
            raise DecodeError(f"{self._what}: a field does not fit the model ({type(exc).__name__})") from None

    def _bad_header(self, payload: bytes) -> str:
        if len(payload) < HEADER.size:
            return f"{self._what}: {len(payload)} byte(s), shorter than the 5-byte wire-format header"
        return f"{self._what}: no magic byte {MAGIC_BYTE} (not the Confluent schema-registry wire format)"

    def _reader_for(self, schema_id: int) -> tuple[Any, Any]:
        try:
            writer = self._store.writer(self._registry, schema_id)
        except _UnknownSchema as exc:
            raise DecodeError(f"{self._what}: {exc}") from None
        reader = (writer.parsed, None if writer.canonical == self._canonical else self._parsed)
        self._readers[schema_id] = reader
        return reader
