"""エラー処理 rules that are data: which matching errors staff may accept (``decisions.toml``, validated on load)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from processors.rules.eligibility import RulesError
from schemas.models import ErrorReason

# Reasons that are never accepted, whatever the file says: they are fixed at their source (see decisions.toml).
NEVER_ACCEPTED = frozenset(
    {
        ErrorReason.UNKNOWN_PERSON,
        ErrorReason.UNKNOWN_INSTITUTION,
        ErrorReason.INSTITUTION_NOT_FOR_FOLLOW_UP,
        ErrorReason.NO_PRIMARY_FOR_FOLLOW_UP,
        ErrorReason.INVALID_RESULT,
        ErrorReason.ITEMS_NOT_OF_KIND,
        ErrorReason.NO_REFERRAL_FOR_KIND,
    }
)


@dataclass(frozen=True)
class DecisionRules:
    version: str
    acceptable: frozenset[ErrorReason]

    def accepts(self, reasons: tuple[ErrorReason, ...] | list[ErrorReason]) -> bool:
        """Whether an error with ``reasons`` may be accepted (every reason acceptable, and at least one)."""
        return bool(reasons) and all(r in self.acceptable for r in reasons)


def parse_decisions(text: str, where: str = "decisions.toml") -> DecisionRules:
    data = tomllib.loads(text)
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise RulesError(f"{where}: version is missing")
    listed = data.get("acceptable")
    if not isinstance(listed, list) or not listed:
        raise RulesError(f"{where}: acceptable must list error reasons")
    reasons: set[ErrorReason] = set()
    for item in listed:
        try:
            reason = ErrorReason(item)
        except ValueError:
            raise RulesError(f"{where}: {item!r} is not an error reason") from None
        if reason in NEVER_ACCEPTED:
            raise RulesError(f"{where}: {reason.value} cannot be accepted: it is fixed at its source")
        if reason in reasons:
            raise RulesError(f"{where}: {reason.value} is listed twice")
        reasons.add(reason)
    return DecisionRules(version, frozenset(reasons))


def load_decisions(path: Path | None = None) -> DecisionRules:
    if path is not None:
        return parse_decisions(path.read_text(encoding="utf-8"), str(path))
    return packaged_decisions()


@cache
def packaged_decisions() -> DecisionRules:
    text = resources.files("processors.rules").joinpath("decisions.toml").read_text(encoding="utf-8")
    return parse_decisions(text)
