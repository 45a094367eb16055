"""突合: check a result against the resident registry, the eligibility rules and the registered institutions.

Pure functions. Identity items are compared after normalisation (NFKC, no spaces, katakana for kana, one dash
form), against the 基本5情報 registered on the exam date — or the current ones, so a result written before a name
change still matches. A mismatch names the fields that disagree, never their values.

A 精検 must come from an institution registered for 精検 (INSTITUTION_NOT_FOR_FOLLOW_UP) and follow a 1次 that said
要精検 (NO_PRIMARY_FOR_FOLLOW_UP while that 1次 is not in the ledger, FOLLOW_UP_WITHOUT_REFERRAL when it is and did not
refer); every result carries only the items its kind records (``items.toml``, 別添1: ITEMS_NOT_OF_KIND, and
NO_REFERRAL_FOR_KIND for 要精検 on ピロリ菌検査).

The reasons that rest on configuration only (UNKNOWN_INSTITUTION, INSTITUTION_NOT_FOR_FOLLOW_UP, the items) are
found even before the person is known; every other one depends on data that can still arrive: the person's 住基
changes (identity, residence, birth date and sex) or their other results (the interval, the 1次 of a 精検 and what
it said). So the ledger keeps every result and matches it again when the person's data changes
(``processors.rules.ledger``). :data:`WAITING_REASONS` are the reasons that usually mean "not arrived yet" rather
than "wrong": an error with only those reasons is shown to staff as waiting for 住基 or for the 1次.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from hub.validation import age_at_fiscal_year_end, fiscal_year
from processors.rules.eligibility import EligibilityRules
from processors.rules.institutions import InstitutionRegistry
from processors.rules.items import ItemRules, packaged_items
from processors.rules.residents import PersonLog
from schemas.models import ErrorReason, PersonIdentity, ResultStage, ScreeningKind, ScreeningResult

WAITING_REASONS: frozenset[ErrorReason] = frozenset(
    {
        ErrorReason.UNKNOWN_PERSON,  # the 転入/出生 that registers the person has not arrived
        ErrorReason.NOT_RESIDENT_ON_EXAM_DATE,  # nor the 転入 that makes them resident on the exam date
        ErrorReason.NO_PRIMARY_FOR_FOLLOW_UP,  # nor the 1次 this 精検 follows
    }
)
"""Reasons that usually clear themselves when later data arrives (住基待ち / 1次待ち)."""

_SPACES = re.compile(r"[\s\u3000・･]+")
_DASHES = re.compile(r"[‐‑‒–—―−ーｰ-]")
_HIRAGANA_TO_KATAKANA = {code: code + 0x60 for code in range(0x3041, 0x3097)}


def normalize_text(value: str) -> str:
    return _SPACES.sub("", unicodedata.normalize("NFKC", value))


def normalize_kana(value: str) -> str:
    """NFKC (half-width → full-width katakana), hiragana → katakana, no spaces or middle dots."""
    return normalize_text(value).translate(_HIRAGANA_TO_KATAKANA)


def normalize_address(value: str) -> str:
    return _DASHES.sub("-", normalize_text(value))


_CHECKS: tuple[tuple[str, ErrorReason], ...] = (
    ("name", ErrorReason.NAME_MISMATCH),
    ("name_kana", ErrorReason.KANA_MISMATCH),
    ("birth_date", ErrorReason.BIRTH_DATE_MISMATCH),
    ("sex", ErrorReason.SEX_MISMATCH),
    ("address", ErrorReason.ADDRESS_MISMATCH),
)


def _normalized(person: PersonIdentity) -> dict[str, object]:
    return {
        "name": normalize_text(person.name),
        "name_kana": normalize_kana(person.name_kana),
        "birth_date": person.birth_date,
        "sex": person.sex,
        "address": normalize_address(person.address),
    }


def identity_mismatches(written: PersonIdentity, registered: Iterable[PersonIdentity]) -> list[str]:
    """Fields of ``written`` that disagree with the closest of the ``registered`` identities ([] = a match)."""
    got = _normalized(written)
    best: list[str] | None = None
    for candidate in registered:
        want = _normalized(candidate)
        diff = [name for name, _ in _CHECKS if got[name] != want[name]]
        if best is None or len(diff) < len(best):
            best = diff
    return best if best is not None else [name for name, _ in _CHECKS]


@dataclass(frozen=True)
class MatchOutcome:
    reasons: tuple[ErrorReason, ...]
    mismatched_fields: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.reasons


def match(
    result: ScreeningResult,
    log: PersonLog | None,
    *,
    rules: EligibilityRules,
    institutions: InstitutionRegistry,
    attended_years: Iterable[int] = (),
    has_primary: bool = True,
    referred: bool = True,
    items: ItemRules | None = None,
) -> MatchOutcome:
    """Every reason ``result`` cannot enter the ledger (none: it can).

    ``attended_years`` are the fiscal years in which the person already has an entry of this kind (for the
    interval rule); ``has_primary`` tells a follow-up whether its primary is in the ledger, ``referred`` whether
    that primary said 要精検. ``items`` are the item rules of the kinds (default: the packaged ``items.toml``).
    """
    reasons: list[ErrorReason] = []
    where = (result.tenant, result.institution_code, result.kind, result.exam_date)  # the registry on the exam date
    if not institutions.performs(*where):
        reasons.append(ErrorReason.UNKNOWN_INSTITUTION)
    elif result.stage is ResultStage.FOLLOW_UP and not institutions.follows_up(*where):
        reasons.append(ErrorReason.INSTITUTION_NOT_FOR_FOLLOW_UP)
    reasons += (items if items is not None else packaged_items()).reasons(result)
    state = log.state() if log is not None else None
    if log is None or state is None:
        basis = log.basis() if log is not None else None
        if basis is not None and result.exam_date >= basis.birth_date:  # kept minimal: below target age
            age = age_at_fiscal_year_end(basis.birth_date, fiscal_year(result.exam_date))
            below = rules.rule(result.kind).age_sex_reasons(basis.sex, age, _method(result))
            if below:  # the person could not be a target then: that is the reason, not a missing person
                return MatchOutcome(tuple(dict.fromkeys((*reasons, *below))))
        return MatchOutcome((*reasons, ErrorReason.UNKNOWN_PERSON))
    registered = [p for p in (log.identity_on(result.exam_date), state.person) if p is not None]
    fields = identity_mismatches(result.subject, registered)
    reasons += [reason for name, reason in _CHECKS if name in fields]
    if result.stage is ResultStage.PRIMARY:
        if not log.resident_on(result.exam_date):
            reasons.append(ErrorReason.NOT_RESIDENT_ON_EXAM_DATE)
        rule = rules.rule(result.kind)
        fy = fiscal_year(result.exam_date)
        birth = state.person.birth_date
        if result.exam_date >= birth:
            method = _method(result)
            age_fy_end = age_at_fiscal_year_end(birth, fy)
            reasons += rule.age_sex_reasons(state.person.sex, age_fy_end, method)
            if not rule.interval_met(fy, attended_years, method):
                reasons.append(ErrorReason.INTERVAL_NOT_MET)
        else:
            reasons.append(ErrorReason.INVALID_RESULT)
    elif not has_primary:
        reasons.append(ErrorReason.NO_PRIMARY_FOR_FOLLOW_UP)
    elif not referred:
        reasons.append(ErrorReason.FOLLOW_UP_WITHOUT_REFERRAL)
    return MatchOutcome(tuple(dict.fromkeys(reasons)), tuple(fields))


def _method(result: ScreeningResult) -> str | None:
    if result.kind is ScreeningKind.STOMACH and result.primary is not None and result.primary.stomach is not None:
        return result.primary.stomach.method.value
    return None
