"""Reply parsing decides opt-outs, flare handling and crisis alerts, so it is pinned by example."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.replies import DEFAULT_FLARE_PHRASES, Keyword, ParsedReply, parse_reply

STOP, START, HELP = Keyword.STOP, Keyword.START, Keyword.HELP
FLARE, PAUSE, RESUME, SLOWER = Keyword.FLARE, Keyword.PAUSE, Keyword.RESUME, Keyword.SLOWER
COMMANDS = frozenset({STOP, START, HELP, PAUSE, RESUME, SLOWER})
STOP_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "opt out")

GMAIL_REPLY = (
    "Hi,\n\nMy pain is about a 6 today. Walked 30 mins.\n\nThanks,\nJane\n\n"
    "On Mon, Jan 5, 2024 at 10:00 AM Clinic <noreply@clinic.org> wrote:\n"
    "> How is your pain today (0-10)? Reply STOP to opt out.\n"
    "> If you are thinking about suicide, call or text 988.\n"
)
OUTLOOK_REPLY = (
    "5\n\n-----Original Message-----\nFrom: Clinic\nSent: Monday 9:00\n"
    "How is your pain? Reply STOP to stop. Feeling suicidal? Call 988."
)

# (raw, pain_score, keywords, crisis)
REPLIES: list[tuple[str, float | None, set[Keyword], bool]] = [
    # --- plain scores --------------------------------------------------------------------
    ("7", 7.0, set(), False),
    ("7/10", 7.0, set(), False),
    ("7 / 10", 7.0, set(), False),
    ("7 out of 10", 7.0, set(), False),
    ("pain is 6 today", 6.0, set(), False),
    ("6.5", 6.5, set(), False),
    ("6,5", 6.5, set(), False),
    ("feeling better, maybe a 3", 3.0, set(), False),
    ("10!!!", 10.0, set(), False),
    ("0", 0.0, set(), False),
    ("seven", 7.0, set(), False),
    ("Seven.", 7.0, set(), False),
    ("Zero pain today!", 0.0, set(), False),
    ("pain is a two", 2.0, set(), False),
    ("six and a half", 6.5, set(), False),
    ("6½", 6.5, set(), False),
    ("pain 5/10 😣", 5.0, set(), False),
    ("I'd say a 4ish", 4.0, set(), False),
    ("4-ish", 4.0, set(), False),
    ("5️⃣", 5.0, set(), False),
    ("6 😣😣", 6.0, set(), False),
    ("PAIN 7!!!", 7.0, set(), False),
    ("Pain level: 7", 7.0, set(), False),
    ("Rate 4", 4.0, set(), False),
    ("im at a 6 rn", 6.0, set(), False),
    ("My pain today is about a 5", 5.0, set(), False),
    ("ألم ٧", 7.0, set(), False),  # RTL text with an Arabic-Indic digit
    # --- rounding decisions: nearest half, exact quarters round up ----------------------
    ("4.25", 4.5, set(), False),
    ("4.75", 5.0, set(), False),
    ("9.9", 10.0, set(), False),
    ("10.2", None, set(), False),
    # --- ranges and changes --------------------------------------------------------------
    ("3-4", 3.5, set(), False),
    ("3 to 4", 3.5, set(), False),
    ("between 3 and 4", 3.5, set(), False),
    ("3 or 4", 3.5, set(), False),
    ("three to four", 3.5, set(), False),
    ("Pain's about a 5-6 today 🙁", 5.5, set(), False),
    ("Feeling a lot better this week!! Maybe 2-3", 2.5, set(), False),
    ("2-8", None, set(), False),
    ("8-6", None, set(), False),
    ("was 7 now 5", 5.0, set(), False),
    ("7 yesterday, 5 today", 5.0, set(), False),
    ("2 days ago it was 8, today 4", 4.0, set(), False),
    ("today 4 but yesterday was 7", 4.0, set(), False),
    ("pain 6, was 8 yesterday", 6.0, set(), False),
    ("went from 7 to 5", 5.0, set(), False),
    ("7 -> 5", 5.0, set(), False),
    ("7 down to 5", 5.0, set(), False),
    ("Pain 3/10 this morning, went for a 15 min walk and now it's 2/10", 2.0, set(), False),
    ("Pain 8 but after my walk it's a 5", 5.0, set(), False),
    (
        "It's been a rough week. Monday was a 7, Tuesday 8, today finally down to a 4.",
        4.0,
        set(),
        False,
    ),
    # --- numbers that are not scores -----------------------------------------------------
    ("walked 20 minutes, pain 4", 4.0, set(), False),
    ("slept 6 hours", None, set(), False),
    ("11", None, set(), False),
    ("-2", None, set(), False),
    ("100%", None, set(), False),
    ("day 3", None, set(), False),
    ("😀", None, set(), False),
    ("1 2 3", None, set(), False),
    ("I walked 3 miles!", None, set(), False),
    ("I did 3 of the exercises", None, set(), False),
    ("went to PT with 3 friends", None, set(), False),
    ("it's one of those days", None, set(), False),
    ("5/10/2024", None, set(), False),
    ("24/7 pain", None, set(), False),
    ("took 2 advil, pain 5", 5.0, set(), False),
    ("Took 2 ibuprofen at 8am, pain now 5", 5.0, set(), False),
    ("I have 2 kids and pain is 6", 6.0, set(), False),
    ("My 3 year old kept me up all night, pain 7", 7.0, set(), False),
    ("i'm 45, pain 6", 6.0, set(), False),
    ("week 2 day 4: 5/10", 5.0, set(), False),
    ("On a scale of 1 to 10, I'm a 6", 6.0, set(), False),
    ("Pain 4. Call me at 555-123-4567", 4.0, set(), False),
    ("3:30 pm walk, pain 4", 4.0, set(), False),
    ("2 good days in a row! 3 today", 3.0, set(), False),
    (
        "Good morning! Today is better, I'd give it a 3. The breathing exercise helped 🙏",
        3.0,
        set(),
        False,
    ),
    ("sorry for late reply, was at the dr. 5 today", 5.0, set(), False),
    ("Pain 5, mood 7", 5.0, set(), False),
    # --- flares --------------------------------------------------------------------------
    ("8, awful flare", 8.0, {FLARE}, False),
    ("FLARE", None, {FLARE}, False),
    ("flare up", None, {FLARE}, False),
    ("flare-up today 8", 8.0, {FLARE}, False),
    ("ugh 8. flaring again", 8.0, {FLARE}, False),
    ("honestly its a 9 today. worst flare in months", 9.0, {FLARE}, False),
    ("had 3 bad days this week, today is a 6", 6.0, {FLARE}, False),
    ("Its a bad day 6", 6.0, {FLARE}, False),
    ("never felt worse, 9", 9.0, {FLARE}, False),
    ("no flares this week, 2", 2.0, set(), False),
    ("not worse, about a 4", 4.0, set(), False),
    ("not a bad day, 3", 3.0, set(), False),
    ("without a flare all week", None, set(), False),
    ("pain is worsening", None, set(), False),
    # --- commands ------------------------------------------------------------------------
    ("STOP", None, {STOP}, False),
    (" Stop! ", None, {STOP}, False),
    ("stop!!", None, {STOP}, False),
    ("Stop 🛑", None, {STOP}, False),
    ("Stop.\n\nSent from my iPhone", None, {STOP}, False),
    ("STOP Sent from my iPhone", None, {STOP}, False),
    ("STOP STOP STOP", None, {STOP}, False),
    ("stop please thank you", None, {STOP}, False),
    ("Stop now", None, {STOP}, False),
    ("  Unsubscribe  ", None, {STOP}, False),
    ("opt-out", None, {STOP}, False),
    ("End", None, {STOP}, False),
    ("please stop texting me", None, {STOP}, False),
    ("stop sending me messages", None, {STOP}, False),
    ("unsubscribe me", None, {STOP}, False),
    ("remove me from this list", None, {STOP}, False),
    ("Can you please remove me from your list? Thanks", None, {STOP}, False),
    ("please don't text me anymore", None, {STOP}, False),
    ("Pain 6. Please stop texting me, I'm done with this.", 6.0, {STOP}, False),
    ("pain 6 please stop texting me", 6.0, {STOP}, False),
    ("My kids are driving me crazy, please stop texting me", None, {STOP}, False),
    ("I would really like to unsubscribe", None, {STOP}, False),
    ("you guys send too many messages", None, {SLOWER}, False),
    ("Yes", None, {START}, False),
    ("yes please", None, {START}, False),
    ("unstop", None, {START}, False),
    ("START", None, {START}, False),
    ("help", None, {HELP}, False),
    ("help me", None, set(), False),
    ("stop texting me so early", None, {STOP}, False),
    ("INFO", None, {HELP}, False),
    ("pause please", None, {PAUSE}, False),
    ("take a break", None, {PAUSE}, False),
    ("can we take a break from the messages", None, {PAUSE}, False),
    ("pause for a week", None, {PAUSE}, False),
    ("unpause", None, {RESUME}, False),
    ("I'm ready!", None, {RESUME}, False),
    ("continue", None, {RESUME}, False),
    ("RESUME", None, {RESUME}, False),
    ("slow down pls", None, {SLOWER}, False),
    ("less often", None, {SLOWER}, False),
    ("too many messages", None, {SLOWER}, False),
    ("too many texts, pain 5", 5.0, {SLOWER}, False),
    # --- crisis --------------------------------------------------------------------------
    ("I want to die", None, set(), True),
    ("i want to kill myself", None, set(), True),
    ("i dont want to be alive anymore", None, set(), True),
    ("I'm not suicidal, just tired. 6", 6.0, set(), True),
    ("pain 9, I can't do this, I want to end it all", 9.0, set(), True),
    # --- email and multi-line ------------------------------------------------------------
    (GMAIL_REPLY, 6.0, set(), False),
    (OUTLOOK_REPLY, 5.0, set(), False),
    (
        "STOP\n\nOn Mon, Jan 5, 2024 at 10:00 AM Clinic <noreply@clinic.org> wrote:\n> 1-10?",
        None,
        {STOP},
        False,
    ),
    ("4\nSent from my Galaxy S23", 4.0, set(), False),
    ("6/10\n\nSent from Yahoo Mail on Android", 6.0, set(), False),
    ("Pain 6 today\nwalked 2 miles\nfeeling ok", 6.0, set(), False),
    ("6\n--\nJohn Doe\nPhone 555 1234", 6.0, set(), False),
]


@pytest.mark.parametrize(("raw", "score", "keywords", "crisis"), REPLIES)
def test_real_world_replies(
    raw: str, score: float | None, keywords: set[Keyword], crisis: bool
) -> None:
    parsed = parse_reply(raw)
    assert (parsed.pain_score, set(parsed.keywords), parsed.crisis) == (score, keywords, crisis)
    assert parsed.raw == raw


KEYWORD_FALSE_POSITIVES = [
    "I can't stop thinking about the pain",
    "don't stop",
    "the pain won't stop",
    "stop and breathe helped",
    "at the end of the day 4",
    "I need to stop catastrophizing",
    "Stop signs everywhere on my walk lol",
    "Don't stop sending me messages, they help!",
    "Why did you stop sending me messages?",
    "if you stop texting me I'll relapse",
    "I told my sister to stop texting me so much",
    "I asked my boss to stop calling me after hours",
    "my ex won't stop texting me",
    "not too many messages, it's fine",
    "I don't want to unsubscribe, just a rough week",
    "I had to take a break from walking",
    "yes I did the exercise",
    "I quit my job last week, pain 6",
    "Cancel my appointment tomorrow?",
    "Please continue the messages, they help",
    "The end.",
    "end of week 2, pain 5",
    "I'm ready for bed lol",
    "Unsubscribing from negative thoughts 😂",
    "slow down and breathe, they said",
    "flares happen less often now",
    "help me understand the exercise",
    "start the next module?",
    "pause the video at 3 min?",
]


@pytest.mark.parametrize("raw", KEYWORD_FALSE_POSITIVES)
def test_sentences_that_merely_contain_a_keyword_are_not_commands(raw: str) -> None:
    assert parse_reply(raw).keywords & COMMANDS == frozenset()


CRISIS_FALSE_POSITIVES = [
    "this pain is killing me",
    "my back is killing me",
    "my feet are killing me, 6",
    "the suspense is killing me",
    "dying to try the walk",
    "I'd kill for a good night's sleep",
    "dead tired",
    "I'm dead on my feet",
    "I'm dying lol",
    "I nearly died laughing",
    "to die for chocolate cake",
    "killing it at PT today 💪",
    "overdid it yesterday, 7",
    "hurt my back lifting",
    "I hurt myself gardening, pain 6",
    "cut myself shaving, pain 3",
    "I'm cutting myself some slack today",
    "trying to cut myself a break, 5",
    "dead end street on my walk",
    "I could end my walk early next time",
]


@pytest.mark.parametrize("raw", CRISIS_FALSE_POSITIVES)
def test_ordinary_pain_idioms_are_not_crisis(raw: str) -> None:
    assert parse_reply(raw).crisis is False


CRISIS = [
    "I want to die",
    "i wanna die",
    "i want to kill myself",
    "going to kill myself",
    "kill myself",
    "suicide",
    "thinking about suicide",
    "I feel suicidal",
    "I'm not suicidal",  # negated mentions are flagged on purpose: a human reviews each alert
    "i don't want to die",
    "I want to end my life",
    "thinking of ending my life",
    "i just want to end it all",
    "everyone would be better off dead",
    "better off without me",
    "wish I was dead",
    "i wish i were dead",
    "I don't want to be alive",
    "dont want to live like this anymore",
    "no reason to live",
    "self harm",
    "self-harm again",
    "I want to hurt myself",
    "i cut myself again",
    "I cut myself on purpose",
    "I cut myself last night",
    "I want to cut myself",
    "I've been cutting myself",
    "overdose",
    "thinking about an overdose",
    "I could take all my pills",
    "i don't want to be here anymore",
    "I DONT WANT TO BE HERE ANYMORE",
    "I want to\ndie",
    "I want to die.\n\nSent from my iPhone",
    "pain 9. i want to die",
]


@pytest.mark.parametrize("raw", CRISIS)
def test_crisis_language_is_flagged(raw: str) -> None:
    assert parse_reply(raw).crisis is True


def test_quoted_clinic_text_cannot_trigger_crisis_or_stop() -> None:
    parsed = parse_reply(GMAIL_REPLY)
    assert not parsed.crisis
    assert STOP not in parsed.keywords


def test_raw_is_kept_and_text_is_normalized() -> None:
    raw = "  Pain\u00a0is\t６ \n\n today  "
    parsed = parse_reply(raw)
    assert parsed.raw == raw
    assert parsed.text == "Pain is 6 today"
    assert parsed.pain_score == 6.0


def test_flare_phrases_are_reported_in_order_found() -> None:
    parsed = parse_reply("terrible night, flaring, worse than last week. awful")
    assert parsed.flare_phrases == ("terrible", "flaring", "worse", "awful")
    assert parsed.is_flare_signal
    assert FLARE in parsed.keywords


def test_flare_phrases_match_whole_words_only() -> None:
    assert parse_reply("worsening").flare_phrases == ()
    assert parse_reply("a flare-up").flare_phrases == ("flare",)
    assert parse_reply("FLARES all week").flare_phrases == ("flare",)
    assert parse_reply("unflared").flare_phrases == ()


def test_custom_flare_phrases() -> None:
    phrases = ("Can\u2019t cope", "bad night")
    parsed = parse_reply("I can't cope, another BAD NIGHT", flare_phrases=phrases)
    assert parsed.flare_phrases == ("can\u2019t cope", "bad night")
    assert parse_reply("awful", flare_phrases=phrases).flare_phrases == ()
    assert parse_reply("bad night", flare_phrases="bad night").flare_phrases == ("bad night",)
    assert parse_reply("flare", flare_phrases=()).flare_phrases == ()


def test_no_flare_signal_without_flare_words() -> None:
    parsed = parse_reply("5 today, steady")
    assert not parsed.is_flare_signal
    assert parsed.flare_phrases == ()


def test_huge_input_keeps_raw_and_bounds_the_scan() -> None:
    raw = "pain 4. " + "blah " * 2_000 + " 9 flare"
    parsed = parse_reply(raw)
    assert parsed.raw == raw
    assert parsed.pain_score == 4.0  # the late "9" is past the scan window
    assert parsed.flare_phrases == ()


@pytest.mark.parametrize(
    "raw", ["", " ", "\x00", "\x00STOP\x00", "!!!", "?", "\u202e7", "٣", "9" * 5000, "½½½"]
)
def test_odd_inputs_do_not_raise(raw: str) -> None:
    parsed = parse_reply(raw)
    assert parsed.raw == raw


def test_parsed_reply_is_frozen() -> None:
    parsed = parse_reply("5")
    assert isinstance(parsed, ParsedReply)
    with pytest.raises(AttributeError):
        parsed.pain_score = 1.0  # type: ignore[misc]


# --- properties ------------------------------------------------------------------------------

REPLY_WORDS = st.sampled_from(
    [
        "pain", "stop", "now", "today", "was", "yesterday", "a", "out", "of", "10", "/", "-", "to",
        "between", "and", "7", "3.5", "6,5", "11", "-2", "%", "day", "hours", "seven", "ish",
        "flare", "no", "worse", "😣", "\n", ",", ".", "from", "->", "½", "kill myself", "0",
    ]
)  # fmt: skip


@given(st.text())
def test_parse_reply_never_raises_and_keeps_raw(raw: str) -> None:
    parsed = parse_reply(raw)
    assert parsed.raw == raw
    assert parsed.pain_score is None or 0 <= parsed.pain_score <= 10


@given(st.lists(REPLY_WORDS, max_size=25).map(" ".join))
def test_scores_are_always_half_steps_in_range(raw: str) -> None:
    score = parse_reply(raw).pain_score
    assert score is None or (0 <= score <= 10 and (score * 2).is_integer())


@given(
    st.sampled_from(STOP_WORDS),
    st.data(),
    st.text(alphabet=string.whitespace + string.punctuation, max_size=6),
    st.text(alphabet=string.whitespace + string.punctuation, max_size=6),
)
def test_any_casing_of_a_stop_word_alone_opts_out(
    word: str, data: st.DataObject, prefix: str, suffix: str
) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    cased = "".join(c.upper() if up else c.lower() for c, up in zip(word, flips, strict=True))
    assert STOP in parse_reply(prefix + cased + suffix).keywords


def test_default_flare_phrases_are_lowercase() -> None:
    assert all(p == p.lower() for p in DEFAULT_FLARE_PHRASES)
