"""The provision flow's rules as data: permitted-query list, network bodies, sensitive items, retention.

Each file under ``connectors/data`` is versioned and validated on load; a file that does not validate raises
:class:`PolicyError` with the file name and the offending entry, so a service refuses to start on a broken rule file
instead of answering with it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hub.validation import is_valid_tenant_code

ITEM_PREFIX = "K"


class PolicyError(ValueError):
    """A rule file of the provision flow does not validate."""


@dataclass(frozen=True)
class PermitEntry:
    """One line of the 照会許可照会リスト."""

    id: str
    requester: str  # 機関区分 of the 情報照会者
    provider: str  # 機関区分 of the 情報提供者
    affair_code: str
    affair: str
    info_name_code: str
    info_name: str
    legal_basis: str
    items: frozenset[str]
    fiscal_year_item: str | None  # the 副本 item a query's 対象年度 range is matched against


@dataclass(frozen=True)
class Body:
    code: str
    name: str
    body_class: str


@dataclass(frozen=True)
class Network:
    version: str
    permit_ttl_seconds: int
    bodies: Mapping[str, Body]

    def body(self, code: str) -> Body | None:
        return self.bodies.get(code)


@dataclass(frozen=True)
class PermittedQueries:
    version: str
    entries: tuple[PermitEntry, ...]

    def match(self, requester_class: str, provider_class: str, affair_code: str, info_name_code: str,
              items: tuple[str, ...]) -> PermitEntry | None:  # fmt: skip
        """The entry that permits this query (every item included), or ``None``."""
        for entry in self.entries:
            if (
                entry.requester == requester_class
                and entry.provider == provider_class
                and entry.affair_code == affair_code
                and entry.info_name_code == info_name_code
                and items
                and set(items) <= entry.items
            ):
                return entry
        return None

    def fiscal_year_item(self, info_name_code: str) -> str | None:
        for entry in self.entries:
            if entry.info_name_code == info_name_code and entry.fiscal_year_item:
                return entry.fiscal_year_item
        return None

    def info_name(self, info_name_code: str) -> str:
        for entry in self.entries:
            if entry.info_name_code == info_name_code:
                return entry.info_name
        return info_name_code


@dataclass(frozen=True)
class SensitiveItems:
    version: str
    person_flags: frozenset[str]
    items: Mapping[tuple[str, str], str]  # (info_name_code, item) -> reason

    def flagged(self, info_name_code: str, items: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(i for i in items if (info_name_code, i) in self.items)


@dataclass(frozen=True)
class Retention:
    version: str
    provision_record_years: int
    fukuhon_days_after_publication_end: int


def _load(name: str, path: Path | None) -> dict[str, Any]:
    try:
        text = (
            path.read_text(encoding="utf-8")
            if path is not None
            else resources.files("connectors.data").joinpath(name).read_text(encoding="utf-8")
        )
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{name}: {exc}") from exc
    if not isinstance(data.get("version"), str) or not data["version"]:
        raise PolicyError(f"{name}: a non-empty string 'version' is required")
    return data


def _str(name: str, where: str, entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{name}: {where}: '{key}' must be a non-empty string")
    return value


def _info_code(name: str, where: str, value: str) -> str:
    if not (len(value) == 16 and value.startswith("TM") and value[2:].isdigit()):
        raise PolicyError(f"{name}: {where}: info_name_code must be 'TM' + 14 digits, not {value!r}")
    return value


def _item(name: str, where: str, value: object) -> str:
    if not (isinstance(value, str) and value.startswith(ITEM_PREFIX) and value[1:].isdigit() and len(value) == 4):
        raise PolicyError(f"{name}: {where}: item codes are 'K' + 3 digits, not {value!r}")
    return value


def load_permitted_queries(path: Path | None = None) -> PermittedQueries:
    name = "permitted_queries.toml"
    data = _load(name, path)
    raw = data.get("entries")
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{name}: at least one [[entries]] is required")
    entries, ids = [], set()
    for i, e in enumerate(raw):
        where = f"entries[{i}]"
        entry_id = _str(name, where, e, "id")
        if entry_id in ids:
            raise PolicyError(f"{name}: {where}: duplicate id {entry_id!r}")
        ids.add(entry_id)
        items = e.get("items")
        if not isinstance(items, list) or not items:
            raise PolicyError(f"{name}: {where}: 'items' must be a non-empty list")
        fy_item = e.get("fiscal_year_item")
        if fy_item is not None and _item(name, where, fy_item) not in items:
            raise PolicyError(f"{name}: {where}: fiscal_year_item must be one of the entry's items")
        entries.append(
            PermitEntry(
                id=entry_id,
                requester=_str(name, where, e, "requester"),
                provider=_str(name, where, e, "provider"),
                affair_code=_str(name, where, e, "affair_code"),
                affair=_str(name, where, e, "affair"),
                info_name_code=_info_code(name, where, _str(name, where, e, "info_name_code")),
                info_name=_str(name, where, e, "info_name"),
                legal_basis=_str(name, where, e, "legal_basis"),
                items=frozenset(_item(name, where, x) for x in items),
                fiscal_year_item=fy_item,
            )
        )
    return PermittedQueries(version=data["version"], entries=tuple(entries))


def load_network(path: Path | None = None) -> Network:
    name = "network.toml"
    data = _load(name, path)
    ttl = data.get("permit_ttl_seconds")
    if not isinstance(ttl, int) or not 1 <= ttl <= 86_400:
        raise PolicyError(f"{name}: permit_ttl_seconds must be an integer between 1 and 86400")
    bodies: dict[str, Body] = {}
    for i, b in enumerate(data.get("bodies") or []):
        where = f"bodies[{i}]"
        code = _str(name, where, b, "code")
        if not is_valid_tenant_code(code):
            raise PolicyError(f"{name}: {where}: {code!r} is not a valid 団体コード")
        if code in bodies:
            raise PolicyError(f"{name}: {where}: duplicate body {code}")
        bodies[code] = Body(code=code, name=_str(name, where, b, "name"), body_class=_str(name, where, b, "class"))
    if len(bodies) < 2:
        raise PolicyError(f"{name}: a network needs at least two [[bodies]]")
    return Network(version=data["version"], permit_ttl_seconds=ttl, bodies=bodies)


PERSON_FLAGS = frozenset({"support_measure"})


def load_sensitive_items(path: Path | None = None) -> SensitiveItems:
    name = "sensitive_items.toml"
    data = _load(name, path)
    flags = data.get("person_flags", [])
    if not isinstance(flags, list) or not set(flags) <= PERSON_FLAGS:
        raise PolicyError(f"{name}: person_flags must be a list of {sorted(PERSON_FLAGS)}")
    items: dict[tuple[str, str], str] = {}
    for i, e in enumerate(data.get("items") or []):
        where = f"items[{i}]"
        code = _info_code(name, where, _str(name, where, e, "info_name_code"))
        items[(code, _item(name, where, e.get("item")))] = _str(name, where, e, "reason")
    return SensitiveItems(version=data["version"], person_flags=frozenset(flags), items=items)


def load_retention(path: Path | None = None) -> Retention:
    name = "retention.toml"
    data = _load(name, path)
    years, days = data.get("provision_record_years"), data.get("fukuhon_days_after_publication_end")
    if not isinstance(years, int) or years < 1:
        raise PolicyError(f"{name}: provision_record_years must be a positive integer")
    if not isinstance(days, int) or days < 0:
        raise PolicyError(f"{name}: fukuhon_days_after_publication_end must be an integer >= 0")
    return Retention(data["version"], years, days)


@dataclass(frozen=True)
class Policies:
    """Everything the 中間サーバー and the network check against, loaded together."""

    permitted: PermittedQueries
    network: Network
    sensitive: SensitiveItems
    retention: Retention


@cache
def default_policies() -> Policies:
    return Policies(load_permitted_queries(), load_network(), load_sensitive_items(), load_retention())
