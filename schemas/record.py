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
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Self, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ModelError(ValueError):
    """A record that does not satisfy its model's invariants (the message never carries personal data)."""


@cache
def load_schema_text(schema_file: str) -> str:
    return resources.files("schemas").joinpath("avro", schema_file).read_text(encoding="utf-8")


def _to_avro(value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    convert = _TO_AVRO.get(type(value))
    if convert is None:
        convert = _TO_AVRO[type(value)] = _to_avro_converter(type(value))
    return convert(value)


# What ``_to_avro`` does depends on the value's class only, so it is chosen once per class (the same branches, in
# the same order, as isinstance checks on the value would take).
_AS_IS: frozenset[type] = frozenset({str, int, bool, float, bytes, type(None), date, datetime})
_TO_AVRO: dict[type, Callable[[Any], Any]] = {}


# --- the wire form: what the serde writes with its logical-type-free schemas (see schemas.serde) ---------------

EPOCH_DATE = date(1970, 1, 1)
# Timestamps and dates repeat (a batch's events are stamped within milliseconds of each other, birth and exam dates
# recur): each value is converted once (both ways) and the immutable result shared. Bounded: cleared when full.
_CONVERTED_MAX = 8192


class _Converted(dict[Any, Any]):
    """``convert(key)`` for each key once: a dict lookup on a hit, cleared when :data:`_CONVERTED_MAX` is reached."""

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        super().__init__()
        self.convert = convert

    def __missing__(self, key: Any) -> Any:
        if len(self) >= _CONVERTED_MAX:
            self.clear()
        value = self[key] = self.convert(key)
        return value


_WIRE_AS_IS: frozenset[type] = frozenset({str, int, bool, float, bytes, type(None)})
_TO_WIRE: dict[type, Callable[[Any], Any]] = {}


def _to_wire(value: Any) -> Any:
    """``_to_avro`` with the logical types as their Avro base values: epoch milliseconds, epoch days, UUID text."""
    convert = _TO_WIRE.get(type(value))
    if convert is None:
        convert = _TO_WIRE[type(value)] = _to_wire_converter(type(value))
    return convert(value)


def _to_wire_converter(cls: type) -> Callable[[Any], Any]:
    if cls in _WIRE_AS_IS:
        return _as_is
    if issubclass(cls, datetime):
        return _epoch_millis
    if issubclass(cls, date):
        return _epoch_days
    if issubclass(cls, AvroRecord):
        return _record_to_wire
    if issubclass(cls, list | tuple):
        return _sequence_to_wire
    if issubclass(cls, dict):
        return _mapping_to_wire
    return _to_avro_converter(cls)  # enums, UUIDs, anything else: as in to_dict


def _epoch_millis(value: datetime) -> int:
    """timestamp-millis as fastavro writes it: floor of the milliseconds since the epoch (naive values are UTC)."""
    millis: int = _MILLIS[value]  # equal aware datetimes are the same instant; a naive one never equals an aware one
    return millis


_MILLISECOND = timedelta(milliseconds=1)
_MILLIS = _Converted(lambda value: ((value if value.tzinfo else value.replace(tzinfo=UTC)) - EPOCH) // _MILLISECOND)


def _epoch_days(value: date) -> int:
    return (value - EPOCH_DATE).days


def _record_to_wire(value: AvroRecord) -> dict[str, Any]:
    return value.to_wire()


def _sequence_to_wire(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [_to_wire(v) for v in value]


def _mapping_to_wire(value: dict[Any, Any]) -> dict[Any, Any]:
    return {k: _to_wire(v) for k, v in value.items()}


def _to_avro_converter(cls: type) -> Callable[[Any], Any]:
    if issubclass(cls, enum.Enum):
        return _enum_value
    if issubclass(cls, AvroRecord):
        return _record_to_dict
    if issubclass(cls, list | tuple):
        return _sequence_to_avro
    if issubclass(cls, dict):
        return _mapping_to_avro
    if issubclass(cls, uuid.UUID):
        return str
    return _as_is


def _enum_value(value: enum.Enum) -> Any:
    return value._value_  # what .value returns, without the descriptor


def _record_to_dict(value: AvroRecord) -> dict[str, Any]:
    return value.to_dict()


def _sequence_to_avro(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [_to_avro(v) for v in value]


def _mapping_to_avro(value: dict[Any, Any]) -> dict[Any, Any]:
    return {k: _to_avro(v) for k, v in value.items()}


def _as_is(value: T) -> T:
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
        if tp is date and type(value) is int:
            return EPOCH_DATE + timedelta(days=value)
        if tp is bytes and isinstance(value, str):
            return base64.b64decode(value)
    return value


# ``from_dict`` compiles, once per record class, one converter per field from its type hint: the same conversions
# as ``_from_avro`` without inspecting the hint again for every value. None means "as is".
Converter = Callable[[Any], Any]


def _from_avro_converter(tp: Any) -> Converter | None:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _from_avro_converter(inner[0])
    if origin is tuple and len(get_args(tp)) == 2:
        item = _from_avro_converter(get_args(tp)[0])
        if item is None:
            return tuple
        return lambda value: tuple(None if v is None else item(v) for v in value)
    if origin is dict and len(get_args(tp)) == 2:
        value_of = _from_avro_converter(get_args(tp)[1])
        if value_of is None:
            return lambda value: {k: v for k, v in value.items()}  # a new dict, as _from_avro makes
        return lambda value: {k: None if v is None else value_of(v) for k, v in value.items()}
    if origin is not None:
        return lambda value: _from_avro(tp, value)  # any other generic: the general rule
    if isinstance(tp, type):
        if issubclass(tp, AvroRecord):
            return tp.from_dict
        if issubclass(tp, enum.Enum):
            return _enum_converter(tp)
        if tp is uuid.UUID:
            return _to_uuid
        if tp is datetime:
            return _to_datetime
        if tp is date:
            return _to_date
        if tp is bytes:
            return _to_bytes
    return None


def _enum_converter(tp: type[enum.Enum]) -> Converter:
    members = tp._value2member_map_

    def convert(value: Any) -> Any:
        try:
            return members[value]  # the lookup tp(value) starts with
        except (KeyError, TypeError):
            return tp(value)  # anything else: exactly what the enum does (_missing_, the ValueError)

    return convert


_new_object = object.__new__
_set_attribute = object.__setattr__
_UUID_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _to_uuid(value: Any) -> uuid.UUID:
    if type(value) is str and len(value) == 36 and value[8] == value[13] == value[18] == value[23] == "-":
        # The wire form (8-4-4-4-12 hex digits): what uuid.UUID(value) computes, without its generic parsing.
        digits = value.replace("-", "")
        if len(digits) == 32:
            try:
                number = int(digits, 16)
            except ValueError:
                pass  # uuid.UUID below raises (or accepts) it as it would
            else:
                made: uuid.UUID = _new_object(uuid.UUID)
                _set_attribute(made, "int", number)
                _set_attribute(made, "is_safe", _UUID_SAFE_UNKNOWN)
                return made
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


_DATETIMES = _Converted(lambda millis: EPOCH + timedelta(milliseconds=millis))  # exact: no float on the way
_DATES = _Converted(lambda days: EPOCH_DATE + timedelta(days=days))


def _to_datetime(value: Any) -> Any:
    if isinstance(value, int):
        return _DATETIMES[value]
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _to_date(value: Any) -> Any:
    if type(value) is int:  # the wire form: days since the epoch
        return _DATES[value]
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        return date.fromisoformat(value)
    return value


def _to_bytes(value: Any) -> Any:
    return base64.b64decode(value) if isinstance(value, str) else value


_FROM_DICT: dict[type, Callable[[dict[str, Any]], Any]] = {}
_ABSENT = object()


def _compile_from_dict(cls: type) -> Callable[[dict[str, Any]], Any]:
    """``cls.from_dict`` as one function made for ``cls`` (as :mod:`dataclasses` makes ``__init__``).

    Per field, in order: the value of its name in the dict, converted by the field's converter unless it is None; a
    field the dict lacks takes its default (or its factory's value), a required one is a :class:`ModelError`. The
    instance is then filled in place and ``__post_init__`` checks it, which is what ``cls(**fields)`` does, without
    the frozen ``__init__``'s per-field ``object.__setattr__``.
    """
    hints = _hints(cls)
    scope: dict[str, Any] = {"_new": _new_object, "_cls": cls, "_ABSENT": _ABSENT, "ModelError": ModelError}
    body = ["    get = data.get"]
    names = []
    for i, f in enumerate(dataclasses.fields(cls)):
        if not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: from_dict needs every field in __init__")
        names.append(f"{f.name!r}: v{i}")
        body.append(f"    v{i} = get({f.name!r}, _ABSENT)")
        if f.default is not dataclasses.MISSING:
            scope[f"d{i}"] = f.default
            missing = f"v{i} = d{i}"
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"f{i}"] = f.default_factory
            missing = f"v{i} = f{i}()"
        else:
            missing = f"raise ModelError({f'{cls.__name__}: the required field {f.name!r} is missing'!r})"
        body.append(f"    if v{i} is _ABSENT:\n        {missing}")
        convert = _from_avro_converter(hints[f.name])
        if convert is not None:
            scope[f"c{i}"] = convert
            body.append(f"    elif v{i} is not None:\n        v{i} = c{i}(v{i})")
    body.append("    made = _new(_cls)")
    body.append(f"    made.__dict__.update({{{', '.join(names)}}})")
    if hasattr(cls, "__post_init__"):
        body.append("    made.__post_init__()")
    body.append("    return made")
    exec("def from_dict(data):\n" + "\n".join(body), scope)  # noqa: S102 - our own generated code, as dataclasses
    compiled: Callable[[dict[str, Any]], Any] = scope["from_dict"]
    _FROM_DICT[cls] = compiled
    return compiled


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


_TO_WIRE_OF: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _compile_to_wire(cls: type) -> Callable[[Any], dict[str, Any]]:
    """``to_wire`` as one function made for ``cls``: each field as is when its value's class is a base type, else
    through ``_to_wire``, in field order (the same dict the per-field loop builds).
    """
    items = ", ".join(
        f"{name!r}: (v{i} if type(v{i} := self.{name}) in _AS_IS else _convert(v{i}))"
        for i, name in enumerate(_field_names(cls))
    )
    scope: dict[str, Any] = {"_AS_IS": _WIRE_AS_IS, "_convert": _to_wire}
    exec(f"def to_wire(self):\n    return {{{items}}}", scope)  # noqa: S102 - our own generated code
    compiled: Callable[[Any], dict[str, Any]] = scope["to_wire"]
    _TO_WIRE_OF[cls] = compiled
    return compiled


def json_default(value: Any) -> Any:
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
        out: dict[str, Any] = {}
        for name in _FIELD_NAMES.get(type(self)) or _field_names(type(self)):
            value = getattr(self, name)
            out[name] = value if type(value) in _AS_IS else _to_avro(value)
        return out

    def to_wire(self) -> dict[str, Any]:
        """What the serde writes (:mod:`schemas.serde`): ``to_dict`` with timestamps as epoch milliseconds, dates as
        epoch days and UUIDs as text, the base types of their Avro logical types. ``from_dict`` reads it back.
        """
        wire: dict[str, Any] = (_TO_WIRE_OF.get(type(self)) or _compile_to_wire(type(self)))(self)
        return wire

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        made: Self = (_FROM_DICT.get(cls) or _compile_from_dict(cls))(data)
        return made

    def to_json(self) -> str:
        """Compact JSON (processor state): dates ISO, timestamps epoch milliseconds, bytes base64."""
        return json.dumps(self.to_dict(), default=json_default, ensure_ascii=False, separators=(",", ":"))

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
