"""``phone_check`` answers exactly as phonenumbers does with its own digit filter and
extension search."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any
from unittest.mock import patch

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType, phonenumberutil

from campaigns import phone_check

NUMBERS = [
    "(212) 200-1234",
    "+1 650 253 0002",
    "650.253.0006",
    "+16502530004",
    "1-800-FLOWERS",
    "+44 20 7946 0958",
    "020 7946 0958",
    "+49 30 901820",
    "tel:+1-650-253-0000;ext=12",
    "(650) 253-0000 ext. 12",
    "+1 (650) 253-0000 x12",
    "+1 555 0100",
    "not a phone",
    "",
    "+",
    "12",
    "+1 650 253 000000000000",
    "\uff0b\uff11 \uff16\uff15\uff10 \uff12\uff15\uff13 \uff10\uff10\uff10\uff12",  # full-width
    "+\u0661 \u0666\u0665\u0660 \u0662\u0665\u0663 \u0660\u0660\u0660\u0662",  # Arabic-Indic
    "+1 650 253 0002\u00b2",
    "+1\u00a0650\u00a0253\u00a00002",
    "(650) 253-0000 #12",
    "650-253-0000,,12",
    "650 253 0000;12",
    "650 253 0000 ~ 12",
    "650 253 0000 int 12",
    "650 253 0000 доб 12",
    "650 253 0000 ｘ12",
    "(650) 253-0000 - 12#",
    "650/253/0000\t",
]


def library_filter() -> AbstractContextManager[Any]:
    """phonenumbers with its own digit filter and extension search, for the expected
    answers."""
    return patch.multiple(phonenumberutil, **{
        phone_check._CHECK_NAME: phone_check._library_filter,
        phone_check._EXTENSION_NAME: phone_check._library_strip,
    })  # fmt: skip


def answer(raw: str, region: str) -> str:
    try:
        return "ok " + phone_check.normalized(raw, region)
    except ValueError as exc:
        return f"ValueError: {exc}"


def expected(raw: str, region: str) -> str:
    with library_filter():
        return answer(raw, region)


def test_the_faster_steps_are_what_phonenumbers_calls() -> None:
    # Fails when a phonenumbers upgrade renames its internals: numbers would still be
    # checked (by the library's own steps), only bulk enrolment would be slower.
    assert phone_check.installed()


@pytest.mark.parametrize("region", ["US", "GB", "DE"])
@pytest.mark.parametrize("raw", NUMBERS)
def test_same_e164_or_error_as_the_library(raw: str, region: str) -> None:
    assert answer(raw, region) == expected(raw, region)


@pytest.mark.parametrize("keep", [False, True])
def test_every_ascii_character_filters_as_the_library_does(keep: bool) -> None:
    for code in range(128):
        text = f"1{chr(code)}2"
        assert phone_check._digits_only(text, keep) == phone_check._library_filter(text, keep)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="0123456789 ()+-.xX#*abc\u0663\uff13\u00b2\u0966\u00a0", max_size=20),
    keep=st.booleans(),
)
def test_any_text_filters_as_the_library_does(text: str, keep: bool) -> None:
    assert phone_check._digits_only(text, keep) == phone_check._library_filter(text, keep)


def test_every_ascii_character_strips_extensions_as_the_library_does() -> None:
    for code in range(128):
        for text in (f"650 253 0000{chr(code)}12", f"650 253 0000 {chr(code)} 12#", chr(code)):
            got = phone_check._strip_extension(text)
            assert got == phone_check._library_strip(text), text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789 ()+-./\t#,;~xXteó\u00a0\uff58\uff03", max_size=24))
def test_any_text_strips_extensions_as_the_library_does(text: str) -> None:
    assert phone_check._strip_extension(text) == phone_check._library_strip(text)


def _samples() -> Iterator[phonenumbers.PhoneNumber]:
    """Every region's example numbers of every type, its invalid example, and neighbours of
    each (a digit changed, one more, one fewer): valid and invalid numbers of every shape."""
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        examples = [phonenumbers.example_number_for_type(region, kind)
                    for kind in range(PhoneNumberType.UNKNOWN)]  # fmt: skip
        examples.append(phonenumbers.invalid_example_number(region))
        for example in examples:
            if example is None:
                continue
            nsn = str(example.national_number)
            for digits in {nsn, nsn[:-1] + str((int(nsn[-1]) + 5) % 10), nsn + "7", nsn[:-1],
                           str((int(nsn[0]) + 1) % 10) + nsn[1:]}:  # fmt: skip
                if digits:
                    yield phonenumbers.PhoneNumber(example.country_code, int(digits))


def test_validity_is_the_librarys_for_every_regions_numbers() -> None:
    checked = 0
    for number in _samples():
        assert phone_check._valid(number) == phonenumbers.is_valid_number(number), number
        checked += 1
    assert checked > 5000


@settings(max_examples=500, deadline=None)
@given(
    country_code=st.sampled_from([1, 7, 44, 39, 47, 61, 262, 290, 599, 800, 882, 999]),
    national=st.integers(min_value=0, max_value=10**12),
)
def test_validity_of_any_number_is_the_librarys(country_code: int, national: int) -> None:
    number = phonenumbers.PhoneNumber(country_code, national)
    assert phone_check._valid(number) == phonenumbers.is_valid_number(number)
