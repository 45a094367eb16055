"""`kenshin-hub schemas register | check`: the .avsc contract against the schema registry.

Each topic's value subject (``<topic>-value``) gets the schema of its model and compatibility level BACKWARD, so
the registry itself also refuses an incompatible registration. ``check`` asks the registry whether the local
files are BACKWARD compatible with what is registered, without changing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from topics.catalog import ALL_TOPICS, Topic

COMPATIBILITY = "BACKWARD"


@dataclass(frozen=True)
class SubjectResult:
    subject: str
    ok: bool
    detail: str


SchemaSource = Callable[[Topic], str]


def packaged_schema(topic: Topic) -> str:
    """The topic's schema as shipped in ``schemas/avro``."""
    return topic.value_type.schema_str()


def schemas_from_dir(directory: Path) -> SchemaSource:
    """Read each topic's schema from ``directory`` instead (to check a change before it ships)."""

    def source(topic: Topic) -> str:
        return (directory / topic.value_type.SCHEMA_FILE).read_text(encoding="utf-8")

    return source


def _registered(client: SchemaRegistryClient, subject: str) -> bool:
    try:
        client.get_latest_version(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return False
        raise
    return True


def register(
    client: SchemaRegistryClient, topics: Iterable[Topic] = ALL_TOPICS, source: SchemaSource = packaged_schema
) -> list[SubjectResult]:
    results = []
    for topic in topics:
        subject = topic.value_subject
        schema = Schema(source(topic), schema_type="AVRO")
        existed = _registered(client, subject)
        if existed and not client.test_compatibility(subject, schema):
            results.append(SubjectResult(subject, False, f"not {COMPATIBILITY} compatible with the registered schema"))
            continue
        try:
            schema_id = client.register_schema(subject, schema)
        except SchemaRegistryError as exc:
            results.append(SubjectResult(subject, False, f"registry refused it: {exc.error_message}"))
            continue
        client.set_compatibility(subject, COMPATIBILITY)
        results.append(SubjectResult(subject, True, f"id {schema_id}"))
    return results


def check(
    client: SchemaRegistryClient, topics: Iterable[Topic] = ALL_TOPICS, source: SchemaSource = packaged_schema
) -> list[SubjectResult]:
    results = []
    for topic in topics:
        subject = topic.value_subject
        schema = Schema(source(topic), schema_type="AVRO")
        if not _registered(client, subject):
            results.append(SubjectResult(subject, True, "not registered yet (nothing to be compatible with)"))
            continue
        compatible = client.test_compatibility(subject, schema)
        detail = f"{COMPATIBILITY} compatible" if compatible else f"NOT {COMPATIBILITY} compatible with the latest"
        results.append(SubjectResult(subject, compatible, detail))
    return results
