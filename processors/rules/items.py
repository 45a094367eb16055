"""記録項目 per kind (別添1): which findings each kind's results may carry, from ``items.toml`` (validated on load).

Pure functions. The model already makes a 1次 carry exactly the block of its kind; these rules add what it cannot
say: which of the shared items a kind records (ピロリ菌検査 has no 他所見名), which 精検 items belong to which kind
(精検方法(精検喀痰) is 肺がん's, 精検体部結果 / 精検頸部結果 子宮がん's), and which kinds have 精検 at all (ピロリ菌検査
has none: a 1次 saying 要精検 is an error). An item counts as carried when it is not null; the booleans
(``national_health_insurance``, ``follow_up_required``) are always carried, and 要精検 is judged by ``referral``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from processors.rules.eligibility import RulesError
from schemas.models import (
    BreastFindings,
    CervicalFindings,
    ColorectalFindings,
    ErrorReason,
    FollowUpFindings,
    HPyloriFindings,
    LungFindings,
    PrimaryFindings,
    ResultStage,
    ScreeningKind,
    ScreeningResult,
    StomachFindings,
)

_BLOCKS: Mapping[ScreeningKind, type] = {
    ScreeningKind.STOMACH: StomachFindings,
    ScreeningKind.COLORECTAL: ColorectalFindings,
    ScreeningKind.LUNG: LungFindings,
    ScreeningKind.BREAST: BreastFindings,
    ScreeningKind.CERVICAL: CervicalFindings,
    ScreeningKind.H_PYLORI: HPyloriFindings,
}
_SHARED = ("other_findings", "benefit_status", "national_health_insurance")  # PrimaryFindings items of every kind
_ALWAYS_PRIMARY = ("national_health_insurance",)
_ALWAYS_FOLLOW_UP = ("judgement",)
_FOLLOW_UP_ITEMS = tuple(f.name for f in dataclasses.fields(FollowUpFindings))


def _required(cls: type) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def primary_items(kind: ScreeningKind) -> tuple[str, ...]:
    """Every item a 1次 of ``kind`` can carry: the shared ones and ``<block>.<field>`` of its own block."""
    return (*_SHARED, *(f"{kind.block}.{f.name}" for f in dataclasses.fields(_BLOCKS[kind])))


# Each kind's block of PrimaryFindings: its attribute, and its fields with their names in ``items.toml`` (made once:
# every result's items are checked, once per result each time its person's book is derived).
_BLOCK_ITEMS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = tuple(
    (kind.block, tuple((f.name, f"{kind.block}.{f.name}") for f in dataclasses.fields(_BLOCKS[kind])))
    for kind in ScreeningKind
)


def carried_primary(findings: PrimaryFindings) -> set[str]:
    """The items a 1次 carries (not null), named as in ``items.toml``; a block of any kind counts."""
    out = {name for name in _SHARED if getattr(findings, name) is not None}
    for attribute, items in _BLOCK_ITEMS:
        block = getattr(findings, attribute)
        if block is not None:
            out.update(item for name, item in items if getattr(block, name) is not None)
    return out


def carried_follow_up(findings: FollowUpFindings) -> set[str]:
    """The items a 精検 carries (not null)."""
    return {name for name in _FOLLOW_UP_ITEMS if getattr(findings, name) is not None}


@dataclass(frozen=True)
class KindItems:
    kind: ScreeningKind
    referral: bool  # the kind has 精密検査対象有無 and 精検
    primary: frozenset[str]
    follow_up: frozenset[str]


@dataclass(frozen=True)
class ItemRules:
    version: str
    kinds: Mapping[ScreeningKind, KindItems]

    def foreign_items(self, result: ScreeningResult) -> list[str]:
        """The items ``result`` carries that its kind does not record (sorted; [] = none)."""
        rule = self.kinds[result.kind]
        if result.primary is not None:
            return sorted(carried_primary(result.primary) - rule.primary)
        if result.follow_up is not None:
            return sorted(carried_follow_up(result.follow_up) - rule.follow_up)
        return []

    def reasons(self, result: ScreeningResult) -> list[ErrorReason]:
        """NO_REFERRAL_FOR_KIND (要精検, or a 精検, of a kind without 精検), ITEMS_NOT_OF_KIND; [] = the items fit."""
        rule = self.kinds[result.kind]
        if result.stage is ResultStage.FOLLOW_UP and not rule.referral:
            return [ErrorReason.NO_REFERRAL_FOR_KIND]  # no 精検 item is the kind's: one reason says it all
        reasons = []
        if result.primary is not None and result.primary.follow_up_required and not rule.referral:
            reasons.append(ErrorReason.NO_REFERRAL_FOR_KIND)
        if self.foreign_items(result):
            reasons.append(ErrorReason.ITEMS_NOT_OF_KIND)
        return reasons


def _names(raw: Mapping[str, Any], key: str, where: str) -> frozenset[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesError(f"{where}: {key} must be a list of item names")
    if len(set(value)) != len(value):
        raise RulesError(f"{where}: {key} names an item twice")
    return frozenset(value)


def parse_items(data: Mapping[str, Any]) -> ItemRules:
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise RulesError("items: version is missing")
    kinds: dict[ScreeningKind, KindItems] = {}
    for i, raw in enumerate(data.get("kinds", [])):
        where = f"items kinds[{i}]"
        try:
            kind = ScreeningKind(raw["kind"])
        except (KeyError, ValueError):
            raise RulesError(f"{where}: unknown kind {raw.get('kind')!r}") from None
        where = f"items {kind}"
        if kind in kinds:
            raise RulesError(f"{where}: declared twice")
        unknown = set(raw) - {"kind", "referral", "primary", "follow_up"}
        if unknown:
            raise RulesError(f"{where}: unknown keys {sorted(unknown)}")
        referral = raw.get("referral")
        if not isinstance(referral, bool):
            raise RulesError(f"{where}: referral must be true or false, got {referral!r}")
        primary, follow_up = _names(raw, "primary", where), _names(raw, "follow_up", where)
        known = set(primary_items(kind))
        if primary - known:
            raise RulesError(f"{where}: {sorted(primary - known)} not an item of a {kind} 1次 ({sorted(known)})")
        always = {*_ALWAYS_PRIMARY, *(f"{kind.block}.{name}" for name in _required(_BLOCKS[kind]))}
        if always - primary:
            raise RulesError(f"{where}: primary must list {sorted(always - primary)} (always carried)")
        if follow_up - set(_FOLLOW_UP_ITEMS):
            raise RulesError(f"{where}: {sorted(follow_up - set(_FOLLOW_UP_ITEMS))} not an item of a 精検")
        if referral and set(_ALWAYS_FOLLOW_UP) - follow_up:
            raise RulesError(f"{where}: follow_up must list {list(_ALWAYS_FOLLOW_UP)} (always carried)")
        if not referral and follow_up:
            raise RulesError(f"{where}: a kind without referral has no 精検: follow_up must be empty")
        kinds[kind] = KindItems(kind, referral, primary, follow_up)
    missing = set(ScreeningKind) - set(kinds)
    if missing:
        raise RulesError(f"no items for {sorted(missing)}")
    return ItemRules(version=version, kinds=kinds)


def load_items(path: Path | None = None) -> ItemRules:
    """The packaged item rules, or those of ``path``; a :class:`RulesError` when the file does not validate."""
    if path is None:
        text = resources.files("processors.rules").joinpath("items.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        return parse_items(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"item rules are not valid TOML: {exc}") from None


@cache
def packaged_items() -> ItemRules:
    """The packaged item rules, loaded once (the default of :class:`processors.rules.ledger.Context`)."""
    return load_items()
