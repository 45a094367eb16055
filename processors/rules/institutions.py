"""実施医療機関: the registered medical institutions, from ``institutions.toml`` (validated on load)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from processors.rules.eligibility import RulesError
from schemas.models import ScreeningKind


@dataclass(frozen=True)
class Institution:
    code: str
    name: str
    kinds: frozenset[ScreeningKind]
    group: bool  # also runs 集団 (mass) screenings
    follow_up: bool  # registered for 精密検査: a 精検 result of its kinds may come from it


@dataclass(frozen=True)
class InstitutionRegistry:
    version: str
    by_code: Mapping[str, Institution]

    def performs(self, code: str, kind: ScreeningKind) -> bool:
        inst = self.by_code.get(code)
        return inst is not None and kind in inst.kinds

    def follows_up(self, code: str, kind: ScreeningKind) -> bool:
        """Whether the institution is registered for ``kind`` and for 精密検査 (a 精検 result may come from it)."""
        inst = self.by_code.get(code)
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
