"""Identifier check digits and calendar rules used by every part of the hub.

* 個人番号 (My Number): 12 digits, the last a check digit (番号法施行令第8条).
* 団体コード (地方公共団体コード): 5 digits and a check digit (総務省の定める計算方法).
* Japanese legal age (年齢計算ニ関スル法律 + 民法第143条): a person becomes one year older at the end of the day
  before the anniversary of birth, so on that day they already count as the new age.
* 年度 (fiscal year): April to March; fiscal year 2025 runs from 2025-04-01 to 2026-03-31.

Pure functions only; nothing here logs (a 個人番号 must never reach a log).
"""

from __future__ import annotations

import functools
from datetime import date, timedelta, timezone

MY_NUMBER_LENGTH = 12
TENANT_CODE_LENGTH = 6


def my_number_check_digit(first_eleven: str) -> int:
    """Check digit of a 個人番号 from its first 11 digits.

    With P(n) the n-th digit counted from the right (n = 1..11) and Q(n) = n + 1 for n <= 6, n - 5 for
    7 <= n <= 11: r = sum(P(n) * Q(n)) mod 11; the check digit is 0 when r <= 1, else 11 - r.
    """
    if len(first_eleven) != MY_NUMBER_LENGTH - 1 or not first_eleven.isascii() or not first_eleven.isdigit():
        raise ValueError("a 個人番号 body is exactly 11 ASCII digits")
    total = 0
    for n, ch in enumerate(reversed(first_eleven), start=1):
        q = n + 1 if n <= 6 else n - 5
        total += int(ch) * q
    r = total % 11
    return 0 if r <= 1 else 11 - r


def is_valid_my_number(value: str) -> bool:
    """True when ``value`` is 12 ASCII digits whose last digit is the correct check digit."""
    if len(value) != MY_NUMBER_LENGTH or not value.isascii() or not value.isdigit():
        return False
    return my_number_check_digit(value[:-1]) == int(value[-1])


def tenant_check_digit(first_five: str) -> int:
    """Check digit of a 団体コード: s = 6*d1 + 5*d2 + 4*d3 + 3*d4 + 2*d5; (11 - s mod 11) mod 10."""
    if len(first_five) != TENANT_CODE_LENGTH - 1 or not first_five.isascii() or not first_five.isdigit():
        raise ValueError("a 団体コード body is exactly 5 ASCII digits")
    s = sum(int(d) * w for d, w in zip(first_five, (6, 5, 4, 3, 2), strict=True))
    return (11 - s % 11) % 10


def is_valid_postcode(value: str) -> bool:
    """True when ``value`` is a 郵便番号 written NNN-NNNN (e.g. 070-8525)."""
    digits = value[:3] + value[4:]
    return len(value) == 8 and value[3] == "-" and digits.isascii() and digits.isdigit()


@functools.lru_cache(maxsize=4096)  # every decoded event checks its tenant; there are 1,741 municipalities
def is_valid_tenant_code(value: str) -> bool:
    """True when ``value`` is a 6-digit 団体コード with a correct check digit (e.g. 旭川市 012041)."""
    if len(value) != TENANT_CODE_LENGTH or not value.isascii() or not value.isdigit():
        return False
    return tenant_check_digit(value[:-1]) == int(value[-1])


# staff_operations.staff_id and the 中間サーバー's reviewer ids are VARCHAR(64); a longer typed id is recorded truncated
STAFF_ID_MAX = 64


def is_valid_staff_id(value: str) -> bool:
    """1 to 64 ASCII letters, digits, '-' and '_' (also safe as part of a file name)."""
    return 0 < len(value) <= STAFF_ID_MAX and value.isascii() and value.replace("-", "").replace("_", "").isalnum()


def legal_age(birth: date, on: date) -> int:
    """Age in completed years on ``on`` under Japanese law.

    The age increases at the end of the day before the anniversary of birth, so a person born on 1 April is
    already one year older on 31 March, and one born on 29 February becomes older on 28 February of every year.
    Computed as the ordinary age on the following day.
    """
    if on < birth:
        raise ValueError("the date is before the birth date")
    nxt = on + timedelta(days=1)
    age = nxt.year - birth.year
    if (nxt.month, nxt.day) < (birth.month, birth.day):
        age -= 1
    return age


JST = timezone(timedelta(hours=9), "JST")  # the city's dates (年度, 住基, schedules) are local


def fiscal_year(day: date) -> int:
    """年度 of ``day``: the calendar year in which its April–March fiscal year starts."""
    return day.year if day.month >= 4 else day.year - 1


def fiscal_year_start(year: int) -> date:
    return date(year, 4, 1)


def fiscal_year_end(year: int) -> date:
    """年度末: 31 March of the following calendar year."""
    return date(year + 1, 3, 31)


def age_at_fiscal_year_end(birth: date, year: int) -> int:
    """Legal age on 31 March closing fiscal ``year`` — the age municipalities use for screening targets."""
    return legal_age(birth, fiscal_year_end(year))
