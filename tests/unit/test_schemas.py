import dataclasses
import io
import json
import re
import types
import typing
from importlib import resources
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas import models as m
from schemas.record import ModelError
from schemas.serde import DecodeError, TopicSerde, registry_client
from tests import samples
from topics.catalog import ALL_TOPICS, PRIMARY_TOPICS

pytestmark = pytest.mark.unit

AVRO_DIR = resources.files("schemas").joinpath("avro")
SCHEMA_FILES = sorted(p.name for p in AVRO_DIR.iterdir() if p.name.endswith(".avsc"))


def _load(name: str) -> dict[str, Any]:
    return json.loads(AVRO_DIR.joinpath(name).read_text(encoding="utf-8"))


def _named_types(schema: Any, out: dict[str, Any]) -> None:
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum") and "name" in schema:
            out.setdefault(schema["name"], []).append(schema)
        for value in schema.values():
            _named_types(value, out)
    elif isinstance(schema, list):
        for value in schema:
            _named_types(value, out)


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_schema_parses_standalone(name: str) -> None:
    fastavro.parse_schema(_load(name))


def test_one_schema_per_event_type_and_one_model_per_schema() -> None:
    assert sorted(t.SCHEMA_FILE for t in m.EVENT_TYPES) == SCHEMA_FILES
    assert {t.value_type for t in PRIMARY_TOPICS} | {m.DeadLetter} == set(m.EVENT_TYPES)


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_field_documents_its_japanese_term_and_uses_snake_case(name: str) -> None:
    def walk(schema: Any) -> None:
        if isinstance(schema, dict):
            if schema.get("type") == "record":
                assert schema.get("doc"), schema["name"]
                for f in schema["fields"]:
                    assert re.fullmatch(r"[a-z][a-z0-9_]*", f["name"]), f["name"]
                    assert f.get("doc"), f"{schema['name']}.{f['name']} has no doc"
                    walk(f["type"])
            for key in ("items", "values"):
                if key in schema:
                    walk(schema[key])
        elif isinstance(schema, list):
            for s in schema:
                walk(s)

    walk(_load(name))


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_event_carries_the_header(name: str) -> None:
    fields = {f["name"]: f for f in _load(name)["fields"]}
    assert fields["event_id"]["type"] == {"type": "string", "logicalType": "uuid"}
    assert fields["occurred_at"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["tenant"]["type"] == "string"
    assert fields["source_system"]["type"] == "string"


def test_named_types_are_identical_wherever_they_appear() -> None:
    found: dict[str, Any] = {}
    for name in SCHEMA_FILES:
        _named_types(_load(name), found)
    for type_name, definitions in found.items():
        first = json.dumps(definitions[0], sort_keys=True, ensure_ascii=False)
        for other in definitions[1:]:
            assert json.dumps(other, sort_keys=True, ensure_ascii=False) == first, type_name


def _model_for(record_name: str) -> type:
    cls = getattr(m, record_name)
    assert dataclasses.is_dataclass(cls), record_name
    return cls


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def test_models_mirror_the_schemas_field_by_field() -> None:
    checked = set()
    found: dict[str, Any] = {}
    for name in SCHEMA_FILES:
        _named_types(_load(name), found)
    for type_name, definitions in found.items():
        schema = definitions[0]
        if schema["type"] == "enum":
            enum_cls = getattr(m, type_name)
            assert [e.value for e in enum_cls] == schema["symbols"], type_name
            continue
        cls = _model_for(type_name)
        hints = typing.get_type_hints(cls)
        model_fields = [f.name for f in dataclasses.fields(cls)]
        assert model_fields == [f["name"] for f in schema["fields"]], type_name
        for f in schema["fields"]:
            nullable = isinstance(f["type"], list) and "null" in f["type"]
            assert _is_optional(hints[f["name"]]) == nullable, f"{type_name}.{f['name']}"
        checked.add(type_name)
    assert {t.__name__ for t in m.EVENT_TYPES} <= checked


def test_the_institution_result_covers_every_kind_of_betten_1() -> None:
    fields = {f["name"] for f in _load("screening_result.avsc")["fields"]}
    assert {"reception_no", "exam_date", "institution_name", "setting", "primary", "follow_up"} <= fields
    assert [k.block for k in m.ScreeningKind] == ["stomach", "colorectal", "lung", "breast", "cervical", "h_pylori"]
    primary = {f.name for f in dataclasses.fields(m.PrimaryFindings)}
    assert {k.block for k in m.ScreeningKind} <= primary
    assert {"follow_up_required", "other_findings", "benefit_status", "national_health_insurance"} <= primary
    follow = {f.name for f in dataclasses.fields(m.FollowUpFindings)}
    assert {
        "procedure",
        "sputum_method",
        "judgement",
        "instructions",
        "other_findings",
        "body_result",
        "cervical_result",
    } <= follow


@pytest.fixture
def registry() -> Any:
    client = registry_client({"url": "mock://unit"})
    for topic in ALL_TOPICS:
        client.register_schema(topic.value_subject, Schema(topic.value_type.schema_str(), "AVRO"))
    return client


@pytest.mark.parametrize("event", samples.every_event(), ids=lambda e: type(e).__name__)
def test_every_model_round_trips_through_the_serde(event: m.Event, registry: Any) -> None:
    topic = next(t for t in ALL_TOPICS if t.value_type is type(event))
    serde = TopicSerde(topic, registry)
    payload = serde.value(event)
    assert payload[0] == 0  # Confluent wire format: magic byte, then the 4-byte schema id
    assert int.from_bytes(payload[1:5], "big") == registry.get_latest_version(topic.value_subject).schema_id
    assert serde.decode(payload) == event
    assert type(event).from_dict(event.to_dict()) == event
    assert serde.key(event).decode() == topic.key_of(event)


@pytest.mark.parametrize("kind", list(m.ScreeningKind))
def test_every_kind_round_trips(kind: m.ScreeningKind, registry: Any) -> None:
    from topics.catalog import INSTITUTION_RESULTS

    serde = TopicSerde(INSTITUTION_RESULTS, registry)
    event = samples.primary_result(kind)
    assert serde.decode(serde.value(event)) == event


def test_serializer_does_not_auto_register() -> None:
    from topics.catalog import RESIDENT_CHANGES

    serde = TopicSerde(RESIDENT_CHANGES, registry_client({"url": "mock://empty"}))
    with pytest.raises(SchemaRegistryError, match=r"(?i)not found"):
        serde.value(next(e for e in samples.every_event() if isinstance(e, m.ResidentChange)))


def test_model_invariants() -> None:
    good = samples.primary_result(m.ScreeningKind.LUNG)
    with pytest.raises(ModelError, match="exactly the 'lung' block"):
        dataclasses.replace(good, primary=samples.primary(m.ScreeningKind.BREAST))
    with pytest.raises(ModelError, match="not a valid 団体コード"):
        dataclasses.replace(good, tenant="012040")
    with pytest.raises(ModelError, match="FOLLOW_UP result carries"):
        dataclasses.replace(good, stage=m.ResultStage.FOLLOW_UP)
    change = next(e for e in samples.every_event() if isinstance(e, m.ResidentChange))
    assert isinstance(change, m.ResidentChange)
    with pytest.raises(ModelError, match="個人番号"):
        dataclasses.replace(change, my_number="123456789019")
    with pytest.raises(ModelError, match="基本5情報"):
        dataclasses.replace(change, person=None)
    with pytest.raises(ModelError, match="ResidentChange"):
        m.ResidentChange.from_dict({"atena_no": "1"})


def test_decoding_garbage_fails_cleanly(registry: Any) -> None:
    from topics.catalog import INSTITUTION_RESULTS

    serde = TopicSerde(INSTITUTION_RESULTS, registry)
    with pytest.raises(DecodeError, match="not a valid ScreeningResult"):
        serde.decode(b"\x01garbage")
    with pytest.raises(DecodeError, match="empty"):
        serde.decode(b"")
    with pytest.raises(DecodeError, match="not a valid ScreeningResult"):
        serde.decode(b"\x00\x00\x00\x00\x01\x02")


def test_json_state_keeps_every_millisecond() -> None:
    # float timestamps turned 06:10:58.587 into .586 for some values (found by the kill -9 test)
    from datetime import UTC, datetime

    event = samples.every_event()[1]
    for micro in range(0, 1_000_000, 1000):
        at = datetime(2004, 11, 3, 6, 10, 58, micro, tzinfo=UTC)
        moved = dataclasses.replace(event, occurred_at=at)
        assert type(moved).from_json(moved.to_json()).occurred_at == at


def test_the_withdrawal_fields_are_backward_compatible() -> None:
    """Records written before ``LedgerEntry.withdrawn`` and ``ErrorStatus.WITHDRAWN`` read with today's schemas."""
    ledger = _load("ledger_entry.avsc")
    before = {**ledger, "fields": [f for f in ledger["fields"] if f["name"] != "withdrawn"]}
    assert [f for f in ledger["fields"] if f["name"] == "withdrawn"] == [
        {"name": "withdrawn", "type": "boolean", "doc": ledger["fields"][-1]["doc"], "default": False}
    ]
    errors = _load("screening_error.avsc")
    old_errors = _load("screening_error.avsc")
    [status] = [f["type"] for f in old_errors["fields"] if f["name"] == "status"]
    assert status["symbols"] == ["OPEN", "RESOLVED", "WITHDRAWN"]  # appended: the old symbols keep their places
    status["symbols"] = ["OPEN", "RESOLVED"]
    for writer, reader, event in [
        (before, ledger, next(e for e in samples.every_event() if isinstance(e, m.LedgerEntry))),
        (old_errors, errors, next(e for e in samples.every_event() if isinstance(e, m.ScreeningError))),
    ]:
        record = {k: v for k, v in event.to_dict().items() if k != "withdrawn"}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), record)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, fastavro.parse_schema(writer), fastavro.parse_schema(reader))
        assert type(event).from_dict(read) == event
    entry = next(e for e in samples.every_event() if isinstance(e, m.LedgerEntry))
    assert entry.withdrawn is False
    stored = json.dumps({k: v for k, v in json.loads(entry.to_json()).items() if k != "withdrawn"})
    assert m.LedgerEntry.from_json(stored) == entry  # a processors' book stored before the field
