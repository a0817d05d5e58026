"""Completed ``str.translate`` tables give the same text as the tables they complete."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from campaigns.phone_check import _ASCII_NON_DIGITS
from campaigns.replies import _APOSTROPHES
from campaigns.segments import _SMART_ENCODING, normalize_sms
from campaigns.translate_tables import ascii_complete

SMART = {0x2019: "'", 0x2014: "-", 0x2026: "...", 0xA0: " "}
APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019`", "'"))
NON_DIGITS = dict.fromkeys(c for c in range(128) if not 48 <= c <= 57)


def test_every_ascii_character_is_answered_and_the_table_wins() -> None:
    table = ascii_complete({ord("`"): "'", ord("x"): None, 0x2019: "'"})
    assert set(range(128)) <= table.keys()
    assert table[ord("`")] == "'" and table[ord("x")] is None and table[ord("a")] == ord("a")
    assert table[0x2019] == "'"


@given(st.text())
def test_completed_tables_translate_as_the_originals(text: str) -> None:
    for original in (SMART, APOSTROPHES, NON_DIGITS):
        assert text.translate(ascii_complete(original)) == text.translate(original)


def test_normalize_sms_may_skip_ascii_text_because_it_replaces_none_of_it() -> None:
    replaced = {k for k, v in _SMART_ENCODING.items() if v != k}
    assert replaced and min(replaced) >= 128


@given(st.text(alphabet=st.sampled_from(" ab\n\r'\"-.\u2018\u2019\u201c\u2014\u2026\u00a0😀")))
def test_smart_characters_are_replaced_wherever_they_are(text: str) -> None:
    normalized = normalize_sms(text)
    assert not set(normalized) & {"\u2018", "\u2019", "\u201c", "\u2014", "\u2026", "\u00a0"}


def test_the_modules_tables_answer_every_ascii_character() -> None:
    for table in (_SMART_ENCODING, _APOSTROPHES, _ASCII_NON_DIGITS):
        assert set(range(128)) <= table.keys()
