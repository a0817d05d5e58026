"""Segment counts must match carrier billing: a miscount means surprise cost or a cut message."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.segments import SegmentInfo, count_segments, is_gsm7, normalize_sms

# GSM 03.38 basic table, written out independently of the module under test.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = "\f^{}\\[~]|€"
EMOJI = "😀"  # outside the BMP: a UTF-16 surrogate pair, 2 units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", SegmentInfo("GSM-7", 0, 0, 160), id="empty"),
        pytest.param("a" * 160, SegmentInfo("GSM-7", 160, 1, 160), id="gsm-160-fits-one"),
        pytest.param("a" * 161, SegmentInfo("GSM-7", 161, 2, 153), id="gsm-161-needs-two"),
        pytest.param("a" * 306, SegmentInfo("GSM-7", 306, 2, 153), id="gsm-306-two"),
        pytest.param("a" * 307, SegmentInfo("GSM-7", 307, 3, 153), id="gsm-307-three"),
        pytest.param("€" * 80, SegmentInfo("GSM-7", 160, 1, 160), id="extension-costs-two"),
        pytest.param("a" * 159 + "€", SegmentInfo("GSM-7", 161, 2, 153), id="euro-tips-over"),
        pytest.param("ж" * 70, SegmentInfo("UCS-2", 70, 1, 70), id="ucs2-70-fits-one"),
        pytest.param("ж" * 71, SegmentInfo("UCS-2", 71, 2, 67), id="ucs2-71-needs-two"),
        pytest.param("ж" * 134, SegmentInfo("UCS-2", 134, 2, 67), id="ucs2-134-two"),
        pytest.param("ж" * 135, SegmentInfo("UCS-2", 135, 3, 67), id="ucs2-135-three"),
        pytest.param(EMOJI, SegmentInfo("UCS-2", 2, 1, 70), id="one-emoji"),
        pytest.param(EMOJI * 35, SegmentInfo("UCS-2", 70, 1, 70), id="35-emoji-fit"),
    ],
)
def test_count_segments_table(text: str, expected: SegmentInfo) -> None:
    assert count_segments(text) == expected


def test_escape_pair_is_not_split_across_segments() -> None:
    # 152 plain + a 2-septet euro would straddle the 153-septet boundary: the euro moves to
    # segment 2, so 152 + 2 + 152 = 306 septets needs 3 segments where ceil(306 / 153) == 2.
    text = "a" * 152 + "€" + "a" * 152
    info = count_segments(text)
    assert (info.encoding, info.units, info.unit_limit) == ("GSM-7", 306, 153)
    assert info.segments == 3
    assert count_segments("a" * 152 + "€" + "a" * 151).segments == 2  # 2 + 151 fits exactly


def test_surrogate_pair_is_not_split_at_the_67_unit_boundary() -> None:
    text = "ж" * 66 + EMOJI + "ж" * 66  # 134 units: naive ceil(134 / 67) == 2
    info = count_segments(text)
    assert (info.encoding, info.units, info.unit_limit) == ("UCS-2", 134, 67)
    assert info.segments == 3


def test_a_single_emoji_makes_the_whole_message_ucs2() -> None:
    plain = "Your pain check-in: how are you today? Reply 0-10."
    assert count_segments(plain).encoding == "GSM-7"
    with_emoji = count_segments(plain + " 🙂")
    assert with_emoji.encoding == "UCS-2"
    assert with_emoji.unit_limit == 70


def test_is_gsm7_accepts_exactly_the_tables() -> None:
    assert all(is_gsm7(ch) for ch in GSM_BASIC + GSM_EXTENSION)
    for outsider in ("ç", "`", "á", "\t", "\x1b", "’", "…", "\u00a0", EMOJI, "ж"):
        assert not is_gsm7(outsider), repr(outsider)
    assert is_gsm7("")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("it\u2019s \u201cfine\u201d", 'it\'s "fine"', id="curly-quotes"),
        pytest.param("\u2018a\u2019 \u201ab\u201b \u201ec\u201f", "'a' 'b' \"c\"", id="all-quotes"),
        pytest.param("3\u20134 \u2014 ok", "3-4 - ok", id="en-em-dash"),
        pytest.param("wait\u2026", "wait...", id="ellipsis"),
        pytest.param("a\u00a0b\u2009c\u3000d\u202fe", "a b c d e", id="unicode-spaces"),
        pytest.param(
            "line one  \nline two\t\r\nend \u00a0 \n\n",
            "line one\nline two\r\nend",
            id="trailing-ws",
        ),
        pytest.param("  keep leading", "  keep leading", id="leading-kept"),
        pytest.param("feel better 🙂", "feel better 🙂", id="emoji-untouched"),
        pytest.param("a\fb", "a\fb", id="form-feed-is-gsm-not-a-line-break"),
        pytest.param("café ß", "café ß", id="others-untouched"),
        pytest.param("", "", id="empty"),
    ],
)
def test_normalize_sms(text: str, expected: str) -> None:
    assert normalize_sms(text) == expected


def test_normalize_sms_turns_pasted_text_back_into_gsm7() -> None:
    pasted = "Don\u2019t forget\u2014today\u2019s \u201cbody scan\u201d\u2026\u00a0"
    assert not is_gsm7(pasted)
    assert is_gsm7(normalize_sms(pasted))
    assert count_segments(normalize_sms(pasted)).encoding == "GSM-7"


@given(st.text(max_size=400), st.characters(codec="utf-8"))
def test_segments_never_decrease_when_a_character_is_appended(text: str, char: str) -> None:
    assert count_segments(text + char).segments >= count_segments(text).segments


@given(st.text(alphabet=GSM_BASIC, min_size=1, max_size=1000))
def test_plain_gsm_matches_the_carrier_formula(text: str) -> None:
    info = count_segments(text)
    expected = 1 if len(text) <= 160 else math.ceil(len(text) / 153)
    assert (info.encoding, info.units, info.segments) == ("GSM-7", len(text), expected)


@given(st.text(max_size=400))
def test_units_match_the_encoding(text: str) -> None:
    info = count_segments(text)
    if info.encoding == "UCS-2":
        assert info.units == len(text.encode("utf-16-le")) // 2
    else:
        assert info.units == len(text) + sum(text.count(ch) for ch in GSM_EXTENSION)
    assert (info.segments == 0) == (text == "")


def _packed(costs: list[int], single: int, multi: int) -> int:
    """Carrier packing written out independently: a 2-unit character never splits."""
    if sum(costs) <= single:
        return 1 if costs else 0
    segments, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            segments, used = segments + 1, 0
        used += cost
    return segments


@given(st.text(alphabet=GSM_BASIC + GSM_EXTENSION, max_size=700))
def test_gsm_with_and_without_escapes_packs_like_the_carrier(text: str) -> None:
    costs = [2 if ch in GSM_EXTENSION else 1 for ch in text]
    assert count_segments(text).segments == _packed(costs, 160, 153)


@given(st.text(alphabet=st.sampled_from("жa€ ✨" + EMOJI), max_size=400))
def test_ucs2_with_and_without_surrogates_packs_like_the_carrier(text: str) -> None:
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    info = count_segments(text)
    if info.encoding == "UCS-2":
        assert info.segments == _packed(costs, 70, 67)


@given(st.text(max_size=300))
def test_normalize_sms_is_idempotent(text: str) -> None:
    once = normalize_sms(text)
    assert normalize_sms(once) == once
