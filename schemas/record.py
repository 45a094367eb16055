"""Base of the typed event models: one ``to_dict``/``from_dict`` per record type, driven by its type hints.

Each model is a frozen dataclass mirroring one ``.avsc`` file field by field (a unit test checks the two agree).
``to_dict`` yields what fastavro writes (enums as symbol strings, dates as ``date``, timestamps as aware
``datetime``); ``from_dict`` accepts what fastavro reads and validates through the model's ``__post_init__``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import types
import uuid
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Self, TypeVar, Union, cast, get_args, get_origin, get_type_hints

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ModelError(ValueError):
    """A record that does not satisfy its model's invariants (the message never carries personal data)."""


@cache
def load_schema_text(schema_file: str) -> str:
    return resources.files("schemas").joinpath("avro", schema_file).read_text(encoding="utf-8")


def _to_avro(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, AvroRecord):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_to_avro(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_avro(v) for k, v in value.items()}
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _from_avro(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _from_avro(inner[0], value)
    if origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        return tuple(_from_avro(item_tp, v) for v in value)
    if origin is dict:
        _k, v_tp = get_args(tp)
        return {k: _from_avro(v_tp, v) for k, v in value.items()}
    if isinstance(tp, type):
        if issubclass(tp, AvroRecord):
            return tp.from_dict(value)
        if issubclass(tp, enum.Enum):
            return tp(value)
        if tp is uuid.UUID:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        if tp is datetime:
            if isinstance(value, int):
                return EPOCH + timedelta(milliseconds=value)  # exact: no float on the way
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if tp is date and isinstance(value, datetime):
            return value.date()
        if tp is date and isinstance(value, str):
            return date.fromisoformat(value)
        if tp is bytes and isinstance(value, str):
            return base64.b64decode(value)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)  # exact: float timestamps lose a millisecond
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class AvroRecord:
    """Mixin for frozen dataclasses that map onto one Avro record type."""

    SCHEMA_FILE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_avro(getattr(self, f.name)) for f in dataclasses.fields(cast(Any, self))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        hints = _hints(cast(type, cls))
        kwargs = {}
        for f in dataclasses.fields(cast(Any, cls)):
            if f.name in data:
                kwargs[f.name] = _from_avro(hints[f.name], data[f.name])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ModelError(f"{cls.__name__}: {exc}") from None

    def to_json(self) -> str:
        """Compact JSON (processor state): dates ISO, timestamps epoch milliseconds, bytes base64."""
        return json.dumps(self.to_dict(), default=_json_default, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))

    @classmethod
    def schema_str(cls) -> str:
        if not cls.SCHEMA_FILE:
            raise TypeError(f"{cls.__name__} is a nested record, not a top-level event")
        return load_schema_text(cls.SCHEMA_FILE)

    @classmethod
    def avro_name(cls) -> str:
        return str(json.loads(cls.schema_str())["name"])


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def now_utc() -> datetime:
    """Current time at millisecond precision (what timestamp-millis keeps)."""
    now = datetime.now(tz=UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
