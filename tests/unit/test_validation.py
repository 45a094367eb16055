from datetime import date

import pytest

from hub.validation import (
    age_at_fiscal_year_end,
    fiscal_year,
    fiscal_year_end,
    is_valid_my_number,
    is_valid_tenant_code,
    legal_age,
    my_number_check_digit,
    tenant_check_digit,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["123456789018", "000000000000", "111111111118"])
def test_valid_my_numbers(value: str) -> None:
    assert is_valid_my_number(value)


@pytest.mark.parametrize(
    "value",
    ["123456789019", "123456789010", "12345678901", "1234567890180", "12345678901a", "１２３４５６７８９０１８", ""],
)
def test_invalid_my_numbers(value: str) -> None:
    assert not is_valid_my_number(value)


def test_my_number_check_digit_weights() -> None:
    # P(1) is the rightmost body digit with weight 2; a single 1 there gives r = 2, check = 9.
    assert my_number_check_digit("00000000001") == 9
    # P(7) (weight 2 again) is the 5th digit from the left.
    assert my_number_check_digit("00001000000") == 9
    # r <= 1 gives 0.
    assert my_number_check_digit("00000000000") == 0


def test_every_single_digit_typo_is_caught() -> None:
    good = "123456789018"
    for i in range(12):
        for d in "0123456789":
            if d != good[i]:
                assert not is_valid_my_number(good[:i] + d + good[i + 1 :])


@pytest.mark.parametrize(
    ("code", "name"), [("012041", "旭川市"), ("011002", "札幌市"), ("012025", "函館市"), ("131016", "千代田区")]
)
def test_valid_tenant_codes(code: str, name: str) -> None:
    assert is_valid_tenant_code(code), name


@pytest.mark.parametrize("code", ["012040", "012042", "01204", "0120411", "01204A", ""])
def test_invalid_tenant_codes(code: str) -> None:
    assert not is_valid_tenant_code(code)


def test_tenant_check_digit_formula() -> None:
    # 旭川: 6*0 + 5*1 + 4*2 + 3*0 + 2*4 = 21; (11 - 21 % 11) % 10 = 1
    assert tenant_check_digit("01204") == 1
    with pytest.raises(ValueError, match="5 ASCII digits"):
        tenant_check_digit("0120")


def test_age_increases_on_the_day_before_the_birthday() -> None:
    birth = date(1980, 6, 15)
    assert legal_age(birth, date(2020, 6, 13)) == 39
    assert legal_age(birth, date(2020, 6, 14)) == 40
    assert legal_age(birth, date(2020, 6, 15)) == 40


def test_born_on_1_april_is_older_at_the_fiscal_year_end() -> None:
    # Born 1 April 1986: 40 already on 31 March 2026, so a target in fiscal 2025 (早生まれ rule).
    birth = date(1986, 4, 1)
    assert legal_age(birth, date(2026, 3, 30)) == 39
    assert legal_age(birth, date(2026, 3, 31)) == 40
    assert age_at_fiscal_year_end(birth, 2025) == 40
    # Born 2 April 1986: turns 40 only on 1 April 2026, in fiscal 2026.
    assert age_at_fiscal_year_end(date(1986, 4, 2), 2025) == 39


def test_born_on_29_february() -> None:
    birth = date(2000, 2, 29)
    assert legal_age(birth, date(2021, 2, 27)) == 20
    assert legal_age(birth, date(2021, 2, 28)) == 21  # non-leap year: older on 28 Feb
    assert legal_age(birth, date(2024, 2, 27)) == 23
    assert legal_age(birth, date(2024, 2, 28)) == 24  # leap year: the day before 29 Feb
    assert legal_age(birth, date(2000, 2, 29)) == 0


def test_age_before_birth_is_an_error() -> None:
    with pytest.raises(ValueError, match="before the birth"):
        legal_age(date(2000, 1, 2), date(2000, 1, 1))


@pytest.mark.parametrize(
    ("day", "year"),
    [(date(2026, 4, 1), 2026), (date(2026, 3, 31), 2025), (date(2025, 12, 31), 2025), (date(2026, 1, 1), 2025)],
)
def test_fiscal_year(day: date, year: int) -> None:
    assert fiscal_year(day) == year


def test_fiscal_year_end() -> None:
    assert fiscal_year_end(2025) == date(2026, 3, 31)
    # fiscal 2027 ends in leap year 2028: still 31 March
    assert fiscal_year_end(2027) == date(2028, 3, 31)
