"""実施医療機関: the registered medical institutions, from ``institutions.toml`` (validated on load)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from processors.rules.eligibility import RulesError
from schemas.models import InstitutionChange, ScreeningKind


@dataclass(frozen=True)
class Institution:
    code: str
    name: str
    kinds: frozenset[ScreeningKind]
    group: bool  # also runs 集団 (mass) screenings
    follow_up: bool  # registered for 精密検査: a 精検 result of its kinds may come from it
    valid_from: date = date.min  # in force for exams on or after this date (the file's entries: from the start)
    valid_to: date | None = None  # the last exam date it is in force for (None: open-ended)


def encode_kinds(kinds: Iterable[ScreeningKind]) -> str:
    """The kinds as the stores keep them: comma-separated, in the order of 別添1."""
    chosen = set(kinds)
    return ",".join(k.value for k in ScreeningKind if k in chosen)


def decode_kinds(text: str) -> frozenset[ScreeningKind]:
    return frozenset(ScreeningKind(k) for k in text.split(","))


def version_of(change: InstitutionChange) -> Institution:
    """An institution's registration as one recorded change (``hub.institutions.v1``) describes it."""
    return Institution(change.code, change.name, frozenset(change.kinds), change.group, change.follow_up,
                       change.valid_from, change.valid_to)  # fmt: skip


@dataclass(frozen=True)
class InstitutionRegistry:
    """The registered institutions: ``institutions.toml`` (in force from the start, for every municipality), and
    the changes staff recorded since, per municipality, in the order they were recorded.

    On an exam date the registration in force is the version with the latest ``valid_from`` on or before that date
    (a later-recorded version wins a tie), unless it ended (``valid_to``) before it: the registry as it stood on
    the exam date.
    """

    version: str
    by_code: Mapping[str, Institution]
    changes: Mapping[tuple[str, str], tuple[Institution, ...]] = field(default_factory=dict)

    def with_changes(self, changes: Mapping[tuple[str, str], tuple[Institution, ...]]) -> InstitutionRegistry:
        return replace(self, changes=dict(changes))

    def with_stored(self, rows: Iterable[Any]) -> InstitutionRegistry:
        """This registry with the changes a store holds: rows with ``tenant``, ``code``, ``name``, ``kinds``
        (:func:`encode_kinds`), ``group_screening``, ``follow_up``, ``valid_from`` and ``valid_to``, in the order
        they were recorded (the processors' and the sinks' tables have those columns).
        """
        changes: dict[tuple[str, str], list[Institution]] = {}
        for r in rows:
            version = Institution(r.code, r.name, decode_kinds(r.kinds), r.group_screening, r.follow_up, r.valid_from,
                                  r.valid_to)  # fmt: skip
            changes.setdefault((r.tenant, r.code), []).append(version)
        return self.with_changes({k: tuple(v) for k, v in changes.items()})

    def in_force(self, tenant: str, day: date) -> list[Institution]:
        """Every registration of ``tenant`` in force on ``day``, by code."""
        codes = sorted(set(self.by_code) | {code for t, code in self.changes if t == tenant})
        return [i for i in (self.on(tenant, c, day) for c in codes) if i is not None]

    def on(self, tenant: str, code: str, day: date) -> Institution | None:
        """The registration of ``code`` for ``tenant`` in force on ``day`` (None: not registered then)."""
        seed = self.by_code.get(code)
        versions = ([seed] if seed is not None else []) + list(self.changes.get((tenant, code), ()))
        in_force: Institution | None = None
        for v in versions:  # recorded order: a later one with the same valid_from wins
            if v.valid_from <= day and (in_force is None or v.valid_from >= in_force.valid_from):
                in_force = v
        if in_force is None or (in_force.valid_to is not None and day > in_force.valid_to):
            return None
        return in_force

    def performs(self, tenant: str, code: str, kind: ScreeningKind, day: date) -> bool:
        inst = self.on(tenant, code, day)
        return inst is not None and kind in inst.kinds

    def follows_up(self, tenant: str, code: str, kind: ScreeningKind, day: date) -> bool:
        """Whether the institution is registered for ``kind`` and for 精密検査 (a 精検 result may come from it)."""
        inst = self.on(tenant, code, day)
        return inst is not None and kind in inst.kinds and inst.follow_up


def parse_institutions(data: Mapping[str, Any]) -> InstitutionRegistry:
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise RulesError("institutions: version is missing")
    by_code: dict[str, Institution] = {}
    for i, raw in enumerate(data.get("institutions", [])):
        where = f"institutions[{i}]"
        code = raw.get("code")
        if not isinstance(code, str) or len(code) != 10 or not code.isdigit():
            raise RulesError(f"{where}: code must be a 10-digit 医療機関コード")
        if code in by_code:
            raise RulesError(f"{where}: code {code} is declared twice")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise RulesError(f"{where}: name is missing")
        try:
            kinds = frozenset(ScreeningKind(k) for k in raw.get("kinds", []))
        except ValueError as exc:
            raise RulesError(f"{where}: {exc}") from None
        if not kinds:
            raise RulesError(f"{where}: kinds is empty")
        unknown = set(raw) - {"code", "name", "kinds", "group", "follow_up"}
        if unknown:
            raise RulesError(f"{where}: unknown keys {sorted(unknown)}")
        flags = {key: raw.get(key, False) for key in ("group", "follow_up")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise RulesError(f"{where}: {key} must be true or false, got {value!r}")
        by_code[code] = Institution(code, name, kinds, flags["group"], flags["follow_up"])
    if not by_code:
        raise RulesError("institutions: none declared")
    return InstitutionRegistry(version=version, by_code=by_code)


def load_institutions(path: Path | None = None) -> InstitutionRegistry:
    if path is None:
        text = resources.files("processors.rules").joinpath("institutions.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        return parse_institutions(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"institutions are not valid TOML: {exc}") from None
