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
from topics.catalog import ALL_TOPICS, DAY_MS, PRIMARY_TOPICS

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
    """``retention.toml``: how long each kind of stored data is kept (applied per tenant by :mod:`hub.retention`)."""

    version: str
    retention_hour: int  # the local (JST) hour from which the daily run is due
    min_interval_hours: int  # never two runs closer than this
    provision_record_years: int  # 情報提供等記録 (and the logs of the queries they record)
    fukuhon_days_after_publication_end: int  # 副本, after their 公開終了日
    held_decided_days: int  # held provisions (自動応答不可フラグ) after their decision
    outgoing_answered_days: int  # the requester side's answered queries
    used_permit_days: int  # used 提供許可証 ids (a permit expires within a day)
    ceased_resident_years: int  # persons who moved out or died, with everything stored of them
    ledger_fiscal_years: int  # がん検診台帳 entries and history, in fiscal years after the exam's
    invitation_fiscal_years: int  # 受診勧奨 / 繰越受診通知, in fiscal years after theirs
    resolved_error_years: int  # screening errors after they were resolved or withdrawn
    fukuhon_outbox_sent_days: int  # the connector's copy of a forwarded or exported 副本
    staff_operation_years: int  # 操作記録 of staff
    outbox_uncommitted_days: int  # stored effects (runtime_outbox) Kafka has no commit for yet
    service_effects_days: int  # the provision services' stored effects (service_effects)
    dead_letter_days: int  # dead letters (their topics' retention may not exceed it)


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


# Every key of retention.toml with its smallest and largest value (None: no upper bound).
RETENTION_KEYS: dict[str, tuple[int, int | None]] = {
    "retention_hour": (0, 23),
    "min_interval_hours": (1, 23),
    "provision_record_years": (1, None),
    "fukuhon_days_after_publication_end": (0, None),
    "held_decided_days": (1, None),
    "outgoing_answered_days": (1, None),
    "used_permit_days": (2, None),  # a permit lives at most a day (network.toml): a used id is needed no longer
    "ceased_resident_years": (1, None),
    "ledger_fiscal_years": (1, None),
    "invitation_fiscal_years": (1, None),
    "resolved_error_years": (1, None),
    "fukuhon_outbox_sent_days": (1, None),
    "staff_operation_years": (1, None),
    "outbox_uncommitted_days": (1, None),
    "service_effects_days": (1, None),
    "dead_letter_days": (1, None),
}


def load_retention(path: Path | None = None) -> Retention:
    """``retention.toml``, validated: every key present, no other key, each an integer within its range, and the
    periods the topic catalog fixes not contradicted (dead letters; the services' de-duplication window).
    """
    name = "retention.toml"
    data = _load(name, path)
    unknown = sorted(set(data) - set(RETENTION_KEYS) - {"version"})
    if unknown:
        raise PolicyError(f"{name}: unknown key(s) {', '.join(unknown)} (known: {', '.join(RETENTION_KEYS)})")
    missing = [k for k in RETENTION_KEYS if k not in data]
    if missing:
        raise PolicyError(f"{name}: missing key(s) {', '.join(missing)}: every kind of stored data needs a period")
    values: dict[str, int] = {}
    for key, (low, high) in RETENTION_KEYS.items():
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise PolicyError(f"{name}: {key} must be an integer {bound}, not {value!r}")
        values[key] = value
    for topic in ALL_TOPICS:
        if topic.name.endswith(".dlq.v1") and topic.retention_ms > values["dead_letter_days"] * DAY_MS:
            raise PolicyError(
                f"{name}: dead_letter_days is {values['dead_letter_days']} but {topic.name} keeps its dead letters "
                f"{topic.retention_ms // DAY_MS} days (topics/catalog.py)"
            )
    longest = max(t.retention_ms for t in PRIMARY_TOPICS if t.dlq is not None and t.cleanup_policy == "delete")
    if values["service_effects_days"] * DAY_MS < longest:
        raise PolicyError(
            f"{name}: service_effects_days must be >= {longest // DAY_MS}, the longest retention of an input topic: "
            "an input Kafka still holds may be read again and must find its stored effects"
        )
    return Retention(version=data["version"], **values)


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


def network_tenants() -> tuple[str, ...]:
    """The 団体コード of every municipality of the simulated network, whose 中間サーバー (and tenant topics) this
    hub's cluster carries.
    """
    return tuple(sorted(load_network().bodies))
