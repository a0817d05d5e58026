"""``phone_check`` answers exactly as phonenumbers does with its own digit filter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import phonenumberutil

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
]


@contextmanager
def library_filter() -> Iterator[None]:
    """phonenumbers with its own digit filter, for the expected answers."""
    setattr(phonenumberutil, phone_check._CHECK_NAME, phone_check._library_filter)
    try:
        yield
    finally:
        setattr(phonenumberutil, phone_check._CHECK_NAME, phone_check._digits_only)


def answer(raw: str, region: str) -> str:
    try:
        return "ok " + phone_check.normalized(raw, region)
    except ValueError as exc:
        return f"ValueError: {exc}"


def expected(raw: str, region: str) -> str:
    with library_filter():
        return answer(raw, region)


def test_the_faster_filter_is_what_phonenumbers_calls() -> None:
    # Fails when a phonenumbers upgrade renames its internals: numbers would still be
    # checked (by the library's own filter), only bulk enrolment would be slower.
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
