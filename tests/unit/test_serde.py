"""schemas.serde: byte-compatible with confluent-kafka's Avro serde, one registry request per schema id, and every
failure classified (bad bytes -> DecodeError without personal data, registry outage -> RegistryUnavailable)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import io
import json
import struct
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry._sync.mock_schema_registry_client import MockSchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.common._httpx_compat import httpx as client_httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given
from hypothesis import strategies as st

from schemas import models as m
from schemas import serde as serde_module
from schemas.bench import sample_events, serde_benchmark
from schemas.record import ModelError, _epoch_days, _epoch_millis, _to_date, _to_datetime, _to_uuid
from schemas.serde import (
    DecodeError,
    EncodeError,
    RegistryUnavailable,
    SchemaNotRegistered,
    TopicSerde,
    canonical_form,
    registry_client,
    wire_schema,
)
from tests import samples
from topics.catalog import ALL_TOPICS, HUB_COMMANDS, INSTITUTION_RESULTS, RESIDENT_CHANGES, Topic

pytestmark = pytest.mark.unit

EVENTS = samples.every_event()


def topic_of(event: m.Event) -> Topic:
    return next(t for t in ALL_TOPICS if t.value_type is type(event))


class CountingRegistry(MockSchemaRegistryClient):  # type: ignore[misc]
    """confluent-kafka's mock registry that counts the serde's questions and can be taken down."""

    def __init__(self) -> None:
        super().__init__({"url": "mock://counting"})
        self.get_schema_calls: list[int] = []
        self.lookup_calls: list[str] = []
        self.outage: BaseException | None = None

    def get_schema(self, schema_id: int, *args: Any, **kwargs: Any) -> Schema:
        self.get_schema_calls.append(schema_id)
        if self.outage is not None:
            raise self.outage
        return super().get_schema(schema_id, *args, **kwargs)

    def lookup_schema(self, subject_name: str, *args: Any, **kwargs: Any) -> Any:
        self.lookup_calls.append(subject_name)
        if self.outage is not None:
            raise self.outage
        return super().lookup_schema(subject_name, *args, **kwargs)


def register_all(client: SchemaRegistryClient) -> SchemaRegistryClient:
    for topic in ALL_TOPICS:
        client.register_schema(topic.value_subject, Schema(topic.value_type.schema_str(), "AVRO"))
    return client


@pytest.fixture
def registry() -> CountingRegistry:
    client = CountingRegistry()
    register_all(client)
    return client


def schema_id_of(registry: SchemaRegistryClient, topic: Topic) -> int:
    return int(registry.get_latest_version(topic.value_subject).schema_id)


def frame(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">bI", 0, schema_id) + body


def avro_body(schema: dict[str, Any] | str, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def schema_of(topic: Topic) -> dict[str, Any]:
    return json.loads(topic.value_type.schema_str())  # type: ignore[no-any-return]


def confluent_pair(registry: SchemaRegistryClient, topic: Topic) -> tuple[Any, Any]:
    """confluent-kafka's own serializer and deserializer, configured as the hub's serde used to be."""
    schema = Schema(topic.value_type.schema_str(), schema_type="AVRO")
    ser = AvroSerializer(
        registry,
        schema,
        to_dict=lambda e, _ctx: e.to_dict(),
        conf={"auto.register.schemas": False, "normalize.schemas": False},
    )
    de = AvroDeserializer(registry, schema.schema_str, from_dict=lambda d, _ctx: topic.value_type.from_dict(d))
    return ser, de


PERSONAL = ("旭川", "アサヒカワ", "ハナコ", "北海道", samples.my_number(), "0000123456")


def assert_no_personal_data(exc: BaseException, payload: bytes) -> None:
    text = str(exc)
    assert len(text) < 200
    assert repr(payload) not in text
    assert payload.hex() not in text
    if len(payload) > 8:
        assert repr(payload[5:13])[2:-1] not in text
    for value in PERSONAL:
        assert value not in text


# --- byte compatibility ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event", [*EVENTS, *(samples.primary_result(k) for k in m.ScreeningKind)], ids=lambda e: type(e).__name__
)
def test_bytes_are_confluents_both_ways(event: m.Event, registry: CountingRegistry) -> None:
    topic = topic_of(event)
    ours = TopicSerde(topic, registry)
    ser, de = confluent_pair(registry, topic)
    ctx = SerializationContext(topic.name, MessageField.VALUE)
    theirs = ser(event, ctx)
    assert ours.value(event) == theirs
    assert ours.decode(theirs) == event
    assert de(ours.value(event), ctx) == event
    assert theirs[0] == 0
    assert int.from_bytes(theirs[1:5], "big") == schema_id_of(registry, topic)


def test_bench_records_are_byte_compatible_too(registry: CountingRegistry) -> None:
    for event in sample_events(200):
        topic = topic_of(event)
        ser, _de = confluent_pair(registry, topic)
        value = TopicSerde(topic, registry).value(event)
        assert value == ser(event, SerializationContext(topic.name, MessageField.VALUE))
        assert TopicSerde(topic, registry).decode(value) == event


# --- one registry request per schema id ----------------------------------------------------------------------


def test_a_thousand_messages_of_one_id_ask_the_registry_once(registry: CountingRegistry) -> None:
    serde = TopicSerde(INSTITUTION_RESULTS, registry)
    event = samples.primary_result()
    payloads = [serde.value(dataclasses.replace(event, reception_no=f"R{i:06d}")) for i in range(1000)]
    assert registry.lookup_calls == [INSTITUTION_RESULTS.value_subject]
    assert [serde.decode(p).reception_no for p in payloads] == [f"R{i:06d}" for i in range(1000)]
    assert registry.get_schema_calls == [schema_id_of(registry, INSTITUTION_RESULTS)]
    # another serde of the same registry client shares what is known
    assert TopicSerde(INSTITUTION_RESULTS, registry).decode(payloads[0]) == dataclasses.replace(
        event, reception_no="R000000"
    )
    assert len(registry.get_schema_calls) == 1


def test_junk_ids_are_asked_once_each_then_refused_at_once(registry: CountingRegistry) -> None:
    serde = TopicSerde(INSTITUTION_RESULTS, registry)
    body = serde.value(samples.primary_result())[5:]
    junk_ids = [10_000 + i for i in range(1000)]
    for _ in range(3):
        for schema_id in junk_ids:
            with pytest.raises(DecodeError, match=rf"schema id {schema_id} is not in the schema registry"):
                serde.decode(frame(schema_id, body))
    assert registry.get_schema_calls == junk_ids  # once each, the first time
    with pytest.raises(DecodeError):  # another serde of the same client knows them too
        TopicSerde(RESIDENT_CHANGES, registry).decode(frame(junk_ids[0], body))
    assert len(registry.get_schema_calls) == 1000


def test_the_unknown_ids_remembered_are_bounded(registry: CountingRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serde_module, "UNKNOWN_IDS_MAX", 3)
    serde = TopicSerde(INSTITUTION_RESULTS, registry)
    for schema_id in (900, 901, 902, 903, 903, 902, 901):
        with pytest.raises(DecodeError):
            serde.decode(frame(schema_id, b"\x00\x00"))
    assert registry.get_schema_calls == [900, 901, 902, 903]
    with pytest.raises(DecodeError):
        serde.decode(frame(900, b"\x00"))  # the oldest was forgotten: asked again
    assert registry.get_schema_calls == [900, 901, 902, 903, 900]


def test_a_schema_id_registered_later_is_found(registry: CountingRegistry) -> None:
    # an id unknown to the registry stays unknown (ids are never reused); a new id is asked about when first seen
    serde = TopicSerde(RESIDENT_CHANGES, registry)
    change = next(e for e in EVENTS if isinstance(e, m.ResidentChange))
    variant = schema_of(RESIDENT_CHANGES)
    variant["doc"] = "a later registration, docs changed only"
    new_id = registry.register_schema("other-subject", Schema(json.dumps(variant), "AVRO"))
    payload = frame(new_id, serde.value(change)[5:])
    assert serde.decode(payload) == change
    assert serde.decode(payload) == change
    assert registry.get_schema_calls == [new_id]


# --- registry outages are not bad data -------------------------------------------------------------------------

OUTAGES: list[Callable[[], BaseException]] = [
    lambda: client_httpx.ConnectError("connection refused"),
    lambda: client_httpx.ReadTimeout("timed out"),
    lambda: SchemaRegistryError(503, 50300, "Service Unavailable"),
    lambda: SchemaRegistryError(500, 50001, "Error in the backend datastore"),
    lambda: SchemaRegistryError(401, 40101, "Unauthorized"),
    lambda: ConnectionRefusedError(111, "Connection refused"),
    lambda: TimeoutError("timed out"),
]


@pytest.mark.parametrize(
    "outage", OUTAGES, ids=lambda f: type(f()).__name__ + str(getattr(f(), "http_status_code", ""))
)
def test_an_outage_on_read_is_retried_not_remembered(
    outage: Callable[[], BaseException], registry: CountingRegistry
) -> None:
    writer = TopicSerde(INSTITUTION_RESULTS, registry)
    event = samples.primary_result()
    payload = writer.value(event)
    reader = TopicSerde(INSTITUTION_RESULTS, registry)
    registry.outage = outage()
    for _ in range(3):
        with pytest.raises(RegistryUnavailable) as caught:
            reader.decode(payload)
        assert not isinstance(caught.value, ValueError)  # never dead-lettered as bad data
        assert_no_personal_data(caught.value, payload)
    registry.outage = None
    assert reader.decode(payload) == event
    assert reader.decode(payload) == event
    assert len(registry.get_schema_calls) == 4  # three failed attempts, one success, then cached


@pytest.mark.parametrize("outage", OUTAGES[:3], ids=["connect", "timeout", "503"])
def test_an_outage_on_write_is_retried(outage: Callable[[], BaseException], registry: CountingRegistry) -> None:
    serde = TopicSerde(INSTITUTION_RESULTS, registry)
    registry.outage = outage()
    with pytest.raises(RegistryUnavailable):
        serde.value(samples.primary_result())
    registry.outage = None
    assert serde.value(samples.primary_result())[0] == 0
    assert len(registry.lookup_calls) == 2


def test_registry_unavailable_is_no_value_error() -> None:
    assert not issubclass(RegistryUnavailable, ValueError)
    assert not issubclass(RegistryUnavailable, DecodeError)


def test_an_unregistered_schema_names_the_subject_and_the_fix() -> None:
    serde = TopicSerde(RESIDENT_CHANGES, CountingRegistry())
    with pytest.raises(SchemaNotRegistered, match=r"juki\.resident-changes\.v1-value.*kenshin-hub schemas register"):
        serde.value(next(e for e in EVENTS if isinstance(e, m.ResidentChange)))
    assert issubclass(SchemaNotRegistered, SchemaRegistryError)  # callers catching the registry's error still do


# --- bad bytes -------------------------------------------------------------------------------------------------


def bad_payloads(registry: SchemaRegistryClient) -> Iterator[tuple[str, bytes, str]]:
    """(case, payload, expected reason) for every kind of bad bytes on institution.results.v1."""
    serde = TopicSerde(INSTITUTION_RESULTS, registry)
    good = serde.value(samples.primary_result())
    own_id = schema_id_of(registry, INSTITUTION_RESULTS)
    yield "one byte", b"\x00", "shorter than the 5-byte"
    yield "header only, short", good[:4], "shorter than the 5-byte"
    yield "wrong magic byte", b"\x01" + good[1:], "no magic byte 0"
    yield "json", b'{"name": "\xe6\x97\xad\xe5\xb7\x9d"}', "no magic byte 0"
    yield "header, no body", good[:5], "does not read as schema id"
    for cut in (6, 12, 40, len(good) // 2, len(good) - 1):
        yield f"truncated at {cut}", good[:cut], "does not read as schema id"
    yield "garbage body", frame(own_id, b"\xff" * 40), "does not read as schema id"
    yield "another topic's body", frame(own_id, TopicSerde(RESIDENT_CHANGES, registry).value(EVENTS[1])[5:]), "does"

    schema = schema_of(INSTITUTION_RESULTS)
    record = samples.primary_result().to_dict()
    record["event_id"] = "旭川 花子 not-a-uuid"
    yield "bad uuid", frame(own_id, avro_body(schema, record)), "a field does not fit the model"

    # an enum index past the reader's symbols, under our own id (a writer with one symbol more)
    wider = copy.deepcopy(schema)
    kind = next(f for f in wider["fields"] if f["name"] == "kind")
    kind["type"]["symbols"].append("PROSTATE")
    record = samples.primary_result().to_dict()
    record["kind"] = "PROSTATE"
    yield "enum index past the symbols", frame(own_id, avro_body(wider, record)), "does not read as schema id"
    wider_id = registry.register_schema("prostate-results-value", Schema(json.dumps(wider), "AVRO"))
    yield "unknown enum symbol (resolved)", frame(wider_id, avro_body(wider, record)), "does not read as schema id"

    for field, value, reason in [
        ("tenant", "012040", "not a valid 団体コード"),
        ("reception_no", "", "reception_no"),
        ("source_system", "", "source_system is empty"),
    ]:
        record = samples.primary_result().to_dict()
        record[field] = value
        yield f"invariant {field}", frame(own_id, avro_body(schema, record)), reason
    change_schema = schema_of(RESIDENT_CHANGES)
    change = EVENTS[1].to_dict()
    change["my_number"] = "123456789019"
    change_id = schema_id_of(registry, RESIDENT_CHANGES)
    yield "invariant my_number", frame(change_id, avro_body(change_schema, change)), "個人番号"

    json_id = registry.register_schema("json-value", Schema('{"type": "object"}', "JSON"))
    yield "a JSON schema id", frame(json_id, good[5:]), "not Avro"
    yield "an unknown id", frame(424242, good[5:]), "not in the schema registry"
    string_id = registry.register_schema("s-value", Schema('"string"', "AVRO"))
    yield "not a record", frame(string_id, b"\x02a"), "does not read as schema id"


def test_every_kind_of_bad_bytes_is_a_decode_error_without_the_payload(registry: CountingRegistry) -> None:
    cases = list(bad_payloads(registry))
    assert len(cases) > 20
    for case, payload, reason in cases:
        serde = RESIDENT_CHANGES if "my_number" in case else INSTITUTION_RESULTS
        with pytest.raises(DecodeError) as caught:
            TopicSerde(serde, registry).decode(payload)
        text = str(caught.value)
        assert reason in text, (case, text)
        assert text.startswith(("not a valid ", "empty")), (case, text)
        assert_no_personal_data(caught.value, payload)
        assert caught.value.__cause__ is None  # no chained library message (it may quote the value)
        assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_empty_and_none_values() -> None:
    serde = TopicSerde(INSTITUTION_RESULTS, CountingRegistry())
    for payload in (b"", None):
        with pytest.raises(DecodeError, match="empty message value"):
            serde.decode(payload)  # type: ignore[arg-type]


def test_an_event_that_does_not_fit_its_schema_is_an_encode_error(registry: CountingRegistry) -> None:
    event = dataclasses.replace(samples.primary_result(), institution_name=None)  # type: ignore[arg-type]
    object.__setattr__(event, "atena_no", 1234567)
    with pytest.raises(EncodeError, match="ScreeningResult does not fit its Avro schema") as caught:
        TopicSerde(INSTITUTION_RESULTS, registry).value(event)
    assert "1234567" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- schema resolution only when the writer differs ------------------------------------------------------------


def test_resolution_is_skipped_for_the_same_schema_and_used_for_another(registry: CountingRegistry) -> None:
    serde = TopicSerde(HUB_COMMANDS, registry)
    command = EVENTS[0]
    assert isinstance(command, m.HubCommand)
    own_id = schema_id_of(registry, HUB_COMMANDS)
    assert serde.decode(serde.value(command)) == command
    assert serde._readers[own_id][1] is None  # writer == reader: no resolution

    # an older writer: without the 'partition' field (the reader's default... there is none: resolution fails)
    older = schema_of(HUB_COMMANDS)
    older["fields"] = [f for f in older["fields"] if f["name"] != "fiscal_year"]
    older["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    older_id = registry.register_schema("older-commands", Schema(json.dumps(older), "AVRO"))
    record = command.to_dict()
    record.pop("fiscal_year")
    record["note"] = "x"
    with pytest.raises(DecodeError, match="does not read as schema id"):
        serde.decode(frame(older_id, avro_body(older, record)))
    assert serde._readers[older_id][1] is not None

    # a newer writer with one more symbol in the enum and one more field: resolved to the reader's schema
    newer = schema_of(HUB_COMMANDS)
    cmd = next(f for f in newer["fields"] if f["name"] == "command")
    cmd["type"]["symbols"].append("FISCAL_YEAR_END")
    newer["fields"].append({"name": "comment", "type": ["null", "string"], "default": None})
    newer_id = registry.register_schema("newer-commands", Schema(json.dumps(newer), "AVRO"))
    record = command.to_dict() | {"comment": "extra", "command": "FISCAL_YEAR_END"}
    decoded = serde.decode(frame(newer_id, avro_body(newer, record)))
    assert decoded.command is m.CommandType.OTHER  # the reader enum's default
    assert dataclasses.replace(decoded, command=command.command) == command


def test_canonical_form_ignores_docs_and_names_but_keeps_logical_types() -> None:
    schema = schema_of(RESIDENT_CHANGES)
    parsed = fastavro.parse_schema(copy.deepcopy(schema))
    no_docs = json.loads(json.dumps(schema).replace('"doc"', '"x-doc"'))
    assert canonical_form(fastavro.parse_schema(no_docs)) == canonical_form(parsed)
    moved = copy.deepcopy(schema)
    moved.pop("namespace")
    moved["name"] = "jp.kenshinhub.v1." + moved["name"]
    assert canonical_form(fastavro.parse_schema(moved)) == canonical_form(parsed)
    plain = copy.deepcopy(schema)
    occurred = next(f for f in plain["fields"] if f["name"] == "occurred_at")
    occurred["type"] = "long"
    assert canonical_form(fastavro.parse_schema(plain)) != canonical_form(parsed)


# --- the real HTTP client: how it reports 404 and outages --------------------------------------------------------


def http_registry(handler: Callable[[Any], Any]) -> SchemaRegistryClient:
    client = SchemaRegistryClient({"url": "http://registry.invalid:8081", "max.retries": 0})
    client._rest_client.session.close()
    client._rest_client.session = client_httpx.Client(transport=client_httpx.MockTransport(handler))
    return client


def test_real_client_404_is_unknown_and_asked_once() -> None:
    calls: list[str] = []

    def handler(request: Any) -> Any:
        calls.append(request.url.path)
        return client_httpx.Response(404, json={"error_code": 40403, "message": "Schema not found"})

    with http_registry(handler) as client:
        serde = TopicSerde(INSTITUTION_RESULTS, client)
        for _ in range(50):
            with pytest.raises(DecodeError, match="schema id 77 is not in the schema registry"):
                serde.decode(frame(77, b"\x00\x00"))
        assert calls == ["/schemas/ids/77"]
        with pytest.raises(SchemaNotRegistered, match="kenshin-hub schemas register"):
            serde.value(samples.primary_result())


@pytest.mark.parametrize("failure", ["503", "502", "connect", "timeout"])
def test_real_client_outage_is_registry_unavailable(failure: str) -> None:
    state = {"down": True}
    schema = INSTITUTION_RESULTS.value_type.schema_str()

    def handler(request: Any) -> Any:
        if state["down"]:
            if failure == "connect":
                raise client_httpx.ConnectError("connection refused", request=request)
            if failure == "timeout":
                raise client_httpx.ReadTimeout("timed out", request=request)
            return client_httpx.Response(int(failure), text="<html>bad gateway</html>")
        if request.url.path.startswith("/subjects/"):
            return client_httpx.Response(200, json={"subject": "s", "id": 5, "version": 1, "schema": schema})
        return client_httpx.Response(200, json={"schema": schema})

    with http_registry(handler) as client:
        serde = TopicSerde(INSTITUTION_RESULTS, client)
        event = samples.primary_result()
        with pytest.raises(RegistryUnavailable):
            serde.value(event)
        with pytest.raises(RegistryUnavailable):
            serde.decode(frame(5, b"\x00"))
        state["down"] = False
        payload = serde.value(event)
        assert payload[:5] == frame(5, b"")
        assert serde.decode(payload) == event


# --- the benchmark runs ----------------------------------------------------------------------------------------


def test_benchmark_returns_its_figures() -> None:
    figures = serde_benchmark(200)
    assert set(figures) >= {"confluent_msgs_per_s", "kenshin_msgs_per_s", "speedup"}
    assert all(v > 0 for v in figures.values())


def test_registry_client_mock() -> None:
    assert isinstance(registry_client({"url": "mock://x"}), MockSchemaRegistryClient)


def test_bytes_after_the_end_of_the_record_are_a_decode_error(registry: CountingRegistry) -> None:
    serde = TopicSerde(INSTITUTION_RESULTS, registry)
    event = samples.primary_result()
    payload = serde.value(event)
    assert serde.decode(payload) == event
    with pytest.raises(DecodeError, match=r"3 byte\(s\) after the end of the record"):
        serde.decode(payload + b"\x00\x01\x02")


@given(
    at=st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)),
    day=st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2300, 1, 1)),
    ident=st.uuids(),
)
def test_the_wire_form_writes_what_fastavro_writes_for_the_logical_types(
    at: dt.datetime, day: dt.date, ident: uuid.UUID
) -> None:
    """to_wire + the logical-type-free schema: the same bytes as fastavro's own conversions, and read back equal."""
    schema = {
        "type": "record",
        "name": "Wire",
        "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "ident", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "days", "type": {"type": "array", "items": ["null", {"type": "int", "logicalType": "date"}]}},
        ],
    }
    record = {"at": at, "day": day, "ident": ident, "days": [day, None]}
    wire = {"at": _epoch_millis(at), "day": _epoch_days(day), "ident": str(ident), "days": [_epoch_days(day), None]}
    ours, theirs = io.BytesIO(), io.BytesIO()
    fastavro.schemaless_writer(ours, fastavro.parse_schema(wire_schema(schema)), wire)
    fastavro.schemaless_writer(theirs, fastavro.parse_schema(copy.deepcopy(schema)), record)
    assert ours.getvalue() == theirs.getvalue()
    assert _to_datetime(_epoch_millis(at)) == at.replace(microsecond=at.microsecond // 1000 * 1000)
    assert _to_date(_epoch_days(day)) == day


@given(ident=st.uuids(), style=st.sampled_from(["plain", "upper", "braces", "urn", "hex"]))
def test_the_fast_uuid_reading_is_uuid_uuid(ident: uuid.UUID, style: str) -> None:
    """The wire form takes a short cut; every other spelling uuid.UUID accepts still reads to the same UUID."""
    text = {
        "plain": str(ident),
        "upper": str(ident).upper(),
        "braces": "{" + str(ident) + "}",
        "urn": ident.urn,
        "hex": ident.hex,
    }[style]
    read = _to_uuid(text)
    assert read == ident
    assert type(read) is uuid.UUID
    assert str(read) == str(ident)
    assert hash(read) == hash(ident)
    assert read.is_safe == ident.is_safe


@pytest.mark.parametrize(
    "text", ["", "not-a-uuid", "1234567g-1234-1234-1234-123456789012", "12345678-1234-1234-1234-1234567890123"]
)
def test_a_malformed_uuid_is_refused_as_uuid_uuid_refuses_it(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - uuid.UUID's own ValueError, whatever its wording
        uuid.UUID(text)
    with pytest.raises(ValueError):  # noqa: PT011
        _to_uuid(text)


def test_converted_timestamps_are_shared_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas import record

    monkeypatch.setattr(record, "_CONVERTED_MAX", 4)
    base = 1_764_000_000_000
    first = _to_datetime(base)
    assert _to_datetime(base) is first
    assert first == dt.datetime(2025, 11, 24, 16, 0, tzinfo=dt.UTC)
    for n in range(10):
        assert _to_datetime(base + n) == first + dt.timedelta(milliseconds=n)
        assert _to_date(20_000 + n) == dt.date(2024, 10, 4) + dt.timedelta(days=n)
        assert _epoch_millis(first + dt.timedelta(milliseconds=n)) == base + n
    assert len(record._DATETIMES) <= 4
    assert len(record._DATES) <= 4
    assert len(record._MILLIS) <= 4
    naive = dt.datetime(2025, 11, 24, 16, 0)  # naive values are UTC, and never taken for an aware one
    assert _epoch_millis(naive) == base
    assert _epoch_millis(first.astimezone(dt.timezone(dt.timedelta(hours=9)))) == base


def test_from_dict_fills_defaults_refuses_missing_fields_and_checks_invariants() -> None:
    event = samples.every_event()[0]
    data = event.to_wire()
    assert type(event).from_dict(data) == event
    with pytest.raises(ModelError, match="the required field 'event_id' is missing"):
        type(event).from_dict({k: v for k, v in data.items() if k != "event_id"})
    with pytest.raises(ModelError, match="not a valid 団体コード"):
        type(event).from_dict({**data, "tenant": "012040"})
    fukuhon = next(e for e in samples.every_event() if isinstance(e, m.FukuhonRegistration))
    wire = fukuhon.to_wire()
    del wire["data"]  # a field with a default factory: each instance gets its own value
    one, two = m.FukuhonRegistration.from_dict(wire), m.FukuhonRegistration.from_dict(wire)
    assert one.data == {}
    assert one.data is not two.data
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.version = 9  # type: ignore[misc]
