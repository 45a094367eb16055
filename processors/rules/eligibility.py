"""Who is a screening target: the rules of ``eligibility.toml``, validated on load, as pure functions."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from hub.validation import age_at_fiscal_year_end
from schemas.models import ErrorReason, ScreeningKind, Sex, StomachMethod


class RulesError(ValueError):
    """A rules data file that does not validate."""


@dataclass(frozen=True)
class KindRule:
    kind: ScreeningKind
    sex: Sex | None  # None: any sex
    min_age: int
    max_age: int | None
    interval_years: int
    carry_over: bool
    invite: bool
    method_overrides: Mapping[str, tuple[int, int]]  # method -> (min_age, interval_years)

    def for_method(self, method: str | None) -> tuple[int, int]:
        """(min_age, interval_years) for an exam method (胃部X線 has its own)."""
        if method is not None and method in self.method_overrides:
            return self.method_overrides[method]
        return self.min_age, self.interval_years

    def age_sex_reasons(self, sex: Sex, age: int, method: str | None = None) -> list[ErrorReason]:
        reasons = []
        if self.sex is not None and sex is not self.sex:
            reasons.append(ErrorReason.NOT_ELIGIBLE_SEX)
        min_age, _ = self.for_method(method)
        if age < min_age or (self.max_age is not None and age > self.max_age):
            reasons.append(ErrorReason.NOT_ELIGIBLE_AGE)
        return reasons

    @property
    def youngest(self) -> int:
        """The youngest age at which this kind takes anyone, whatever the method."""
        return min((self.min_age, *(age for age, _ in self.method_overrides.values())))

    def is_target(self, sex: Sex, birth: date, fiscal_year: int) -> bool:
        """A target of the basic rule (no method override) in ``fiscal_year``."""
        return not self.age_sex_reasons(sex, age_at_fiscal_year_end(birth, fiscal_year))

    def interval_met(self, fiscal_year: int, attended_years: Iterable[int], method: str | None = None) -> bool:
        """True when no attendance falls in the ``interval_years - 1`` fiscal years before ``fiscal_year``."""
        _, interval = self.for_method(method)
        return not any(fiscal_year - interval < y < fiscal_year for y in attended_years)


@dataclass(frozen=True)
class EligibilityRules:
    version: str
    kinds: Mapping[ScreeningKind, KindRule]

    def rule(self, kind: ScreeningKind) -> KindRule:
        return self.kinds[kind]

    def can_be_target(self, sex: Sex, birth: date, fiscal_year: int) -> bool:
        """Whether the person is old enough, in ``fiscal_year``, to be a target of any kind for their sex.

        This is the hub's scope (the assessment's 対象となる本人の範囲, III.2): below it the hub keeps only the
        minimal basis of a person (:class:`schemas.models.TargetBasis`). Upper age limits do not count: a person
        past one kind's range stays in scope, as the scope only ever grows with age.
        """
        return age_at_fiscal_year_end(birth, fiscal_year) >= self.youngest_of[sex]

    @functools.cached_property
    def youngest_of(self) -> Mapping[Sex, int]:
        """Per sex, the youngest age at which any kind takes them (above every age when none does)."""
        return {
            sex: min((r.youngest for r in self.kinds.values() if r.sex is None or r.sex is sex), default=10**6)
            for sex in Sex
        }


def _int(raw: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 120:
        raise RulesError(f"{where}: {key} must be an integer between 0 and 120, got {value!r}")
    return value


def parse_rules(data: Mapping[str, Any]) -> EligibilityRules:
    if data.get("age_basis") != "fiscal_year_end":
        raise RulesError("age_basis must be 'fiscal_year_end' (年度末年齢)")
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise RulesError("version is missing")
    kinds: dict[ScreeningKind, KindRule] = {}
    for i, raw in enumerate(data.get("kinds", [])):
        where = f"kinds[{i}]"
        try:
            kind = ScreeningKind(raw["kind"])
        except (KeyError, ValueError):
            raise RulesError(f"{where}: unknown kind {raw.get('kind')!r}") from None
        if kind in kinds:
            raise RulesError(f"{where}: {kind} is declared twice")
        sex_raw = raw.get("sex", "ANY")
        if sex_raw not in ("ANY", "MALE", "FEMALE"):
            raise RulesError(f"{where}: sex must be ANY, MALE or FEMALE")
        min_age = _int(raw, "min_age", where)
        max_age = _int(raw, "max_age", where) if "max_age" in raw else None
        if max_age is not None and max_age < min_age:
            raise RulesError(f"{where}: max_age is below min_age")
        interval = _int(raw, "interval_years", where)
        if interval < 1:
            raise RulesError(f"{where}: interval_years must be at least 1")
        overrides: dict[str, tuple[int, int]] = {}
        for j, o in enumerate(raw.get("method_overrides", [])):
            if kind is not ScreeningKind.STOMACH or o.get("method") not in StomachMethod.__members__:
                raise RulesError(f"{where}.method_overrides[{j}]: only 胃がん methods {list(StomachMethod)} apply")
            overrides[o["method"]] = (_int(o, "min_age", where), _int(o, "interval_years", where))
        unknown = set(raw) - {
            "kind",
            "sex",
            "min_age",
            "max_age",
            "interval_years",
            "carry_over",
            "invite",
            "method_overrides",
        }
        if unknown:
            raise RulesError(f"{where}: unknown keys {sorted(unknown)}")
        kinds[kind] = KindRule(
            kind=kind,
            sex=None if sex_raw == "ANY" else Sex(sex_raw),
            min_age=min_age,
            max_age=max_age,
            interval_years=interval,
            carry_over=bool(raw.get("carry_over", False)),
            invite=bool(raw.get("invite", True)),
            method_overrides=overrides,
        )
    missing = set(ScreeningKind) - set(kinds)
    if missing:
        raise RulesError(f"no rule for {sorted(missing)}")
    return EligibilityRules(version=version, kinds=kinds)


def load_rules(path: Path | None = None) -> EligibilityRules:
    """The packaged rules, or those of ``path``; a :class:`RulesError` when the file does not validate."""
    if path is None:
        text = resources.files("processors.rules").joinpath("eligibility.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"eligibility rules are not valid TOML: {exc}") from None
    return parse_rules(data)
