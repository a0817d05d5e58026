"""Parse what patients text or email back: opt-outs, commands, pain scores, flares, crisis.

Everything here is deliberately conservative. An opt-out or command fires only when it is the
whole message (or an unmistakable request), because unsubscribing someone who wrote "the pain
won't stop" is a real harm. A pain score is returned only when one number clearly is the score;
anything ambiguous is ``None`` so a human or a follow-up question can resolve it. Crisis
detection leans the other way: a missed alert is worse than a false one, and a person reviews
every alert.

Decisions on the ambiguous cases (the tests pin each one):

* Commands match the whole message once punctuation, emoji, repeats and polite fillers
  ("please", "thanks", "now", "ok") are stripped: "Stop!! 🛑 please" is STOP, "stop 5" is not.
  "YES" is START only alone; "help me" is not HELP (it may be distress, not a carrier query).
* An explicit opt-out request inside a longer message ("Pain 6. Please stop texting me") is
  STOP only when nothing but lead-ins ("hi", "can you please", "I need you to") precede it in
  its clause: "I told my sister to stop texting me" and "don't stop texting me" are not.
  "stop texting me so early" IS STOP: a request to stop must be honoured, not second-guessed.
* Scores are rounded to the nearest half, exact quarters rounding UP (toward more pain, so a
  flare is never under-reported): "4.25" -> 4.5, "4.75" -> 5.0. Anything above 10 before
  rounding ("10.2") is out of range, hence ``None``.
* A range ("3-4", "3 to 4", "3 or 4", "between 3 and 4") gives its midpoint, rounded the same
  way, when it ascends and spans at most 3 points; wider or descending dashes ("2-8", "8-6")
  are ambiguous. "from 7 to 5", "7 -> 5", "7 down to 5" and a descending "7 to 5" describe a
  change and give the later number.
* With several numbers, the one tied to "now/today/currently/at the moment" wins; otherwise a
  number not marked as past ("was", "yesterday", "ago"); otherwise the single best-cued one
  ("pain 6", "6/10" beat "a 6", which beats a bare 6). Ties between different values: ``None``.
* Not scores at all: numbers glued to letters ("20min", "3rd", "8am", "covid-19"), followed by
  a unit or count noun ("6 hours", "2 bad days", "3 of the exercises"), labelled ("day 3",
  "week 2", "#4"), times, dates, percentages, money, and bare numbers followed by an unrelated
  word mid-message ("took 2 advil"). Out-of-range numbers ("11", "-2") remain candidates, so
  they make a message ambiguous rather than silently vanish. So "at the end of the day 4" is
  ``None``: "day 4" reads as a programme day.
* Number words ("seven") count only with a cue ("a seven", "pain seven", "seven/10", "seven
  today") or as the whole message, so "one of those days" is not a score of 1.
* Flare phrases match whole words plus a plural "s"/"es" ("flares", "bad days"). "worsening"
  does NOT match "worse": callers who want stems add them to ``flare_phrases``. Matches are
  reported as the configured phrase lowercased, so callers can look them up in their list.
* A flare phrase with a negator (no, not, never, without, isn't, wasn't, didn't, don't, ...)
  among the two words before it is ignored ("no flares this week"), except the superlative
  "never felt/been worse", which means the opposite.
* Crisis: negated mentions ("I'm not suicidal", "don't want to die") are STILL flagged; a person
  reviews every alert and negation is exactly where a pattern would fail someone. "hurt/cut
  myself" followed by an accident context ("hurt myself lifting", "cut myself shaving") is not
  flagged unless an intent word precedes it ("want to hurt myself").
* Email cruft (quoted lines, "On ... wrote:", "Sent from my iPhone", signatures) is removed
  before scanning, so the clinic's own quoted text cannot trigger keywords or crisis alerts.
* Work is bounded: numbers, commands and flare phrases are read from the first 2,000
  characters of the reply, crisis language from the first 10,000; ``raw`` is never cut.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from campaigns.crisis_language import mentions_crisis
from campaigns.pain_scores import pain_score
from campaigns.reply_words import FILLERS, wordset
from campaigns.translate_tables import ascii_complete


class Keyword(StrEnum):
    STOP = "STOP"
    START = "START"
    HELP = "HELP"
    FLARE = "FLARE"
    PAUSE = "PAUSE"
    RESUME = "RESUME"
    SLOWER = "SLOWER"


DEFAULT_FLARE_PHRASES: tuple[str, ...] = (
    "flare",
    "flaring",
    "flared",
    "worse",
    "bad day",
    "awful",
    "terrible",
    "spiking",
    "setback",
)


@dataclass(frozen=True)
class ParsedReply:
    """One inbound reply; ``raw`` is kept exactly as received for audit and human review."""

    raw: str
    text: str
    pain_score: float | None
    keywords: frozenset[Keyword]
    flare_phrases: tuple[str, ...]
    crisis: bool

    @property
    def is_flare_signal(self) -> bool:
        return Keyword.FLARE in self.keywords or bool(self.flare_phrases)


# --- limits: bound the work on pathological input; ``raw`` itself is never truncated ---------

_BODY_LIMIT = 10_000  # chars of raw looked at at all; the crisis scan uses all of them
_SCAN_LIMIT = 2_000  # chars scanned for numbers, keywords and flare phrases

# --- normalisation ---------------------------------------------------------------------------

_APOSTROPHES = ascii_complete(
    str.maketrans(dict.fromkeys("\u2018\u2019\u201b\u02bc\u00b4`\u2032", "'"))
)
_HSPACE_RE = re.compile(r"[^\S\n]+")
_NEWLINES_RE = re.compile(r" ?\n[\n ]*")
_HALF_AFTER_DIGIT_RE = re.compile(r"(?<=\d) ?½")

# A reply header or signature: nothing from here on is the patient's new text.
_CRUFT_RE = re.compile(
    r"^[ \t]*(?:on\b[^\n]{0,300}\n?[^\n]{0,300}?\bwrote:"
    r"|-{2,}[ \t]*(?:original|forwarded) message"
    r"|_{10,}"
    r"|from:[ \t]+[^\n]*\n(?:[^\n]*\n)?[ \t]*(?:sent|date|to|subject):"
    r"|--[ \t]*$"
    r"|sent (?:from|via|with) (?:my\b|yahoo|outlook|aol|mail\b|gmail|samsung)"
    r"|get outlook for\b)",
    re.IGNORECASE | re.MULTILINE,
)
# SMS-to-email gateways often glue the device tail onto the same line ("STOP Sent from my...").
_DEVICE_TAIL_RE = re.compile(
    r"\bsent from my (?:iphone|ipad|android|galaxy|samsung|mobile|phone|smartphone|pixel"
    r"|blackberry|verizon|t-mobile)\b",
    re.IGNORECASE,
)
_QUOTED_LINE_RE = re.compile(r"^[ \t]*>[^\n]*\n?", re.MULTILINE)
_HAS_WORD_RE = re.compile(r"[^\W_]")
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_CLAUSE_END_RE = re.compile(r"[.!?;\n]")

# --- keywords --------------------------------------------------------------------------------

_MAX_CORE_WORDS = 16  # a whole-message command is never longer than this

_MSGS = r"(?:messages?|texts?|msgs?|emails?|reminders?|notifications?|sms)"
_CONTACTING = r"(?:texting|txting|messaging|sending|contacting|emailing|calling|bothering|spamming)"
_LIST = (
    r"(?:this |the |your |ur |that |all |these )?(?:mailing |texting |text |sms |contact )?"
    rf"(?:list|lists|program|programme|{_MSGS})"
)
_WANT = r"(?:i want to |i'd like to |i would like to |i wanna |i need to |can i |can we |let's )"

# Whole-message forms, matched after punctuation, emoji and polite fillers are stripped.
_WHOLE_MESSAGE: tuple[tuple[Keyword, re.Pattern[str]], ...] = tuple(
    (keyword, re.compile(pattern))
    for keyword, pattern in (
        (
            Keyword.STOP,
            rf"stop|stopall|stop all|stop it|end|quit|revoke|leave me alone|{_WANT}?"
            r"(?:unsubscribe|unsub|cancel|opt ?out|stop)"
            rf"(?: me| all| everything| (?:of|from) {_LIST})?"
            rf"|(?:stop|quit|cease) {_CONTACTING}(?: me)?(?: (?:these|this|the|your|any))?"
            rf"(?: {_MSGS})?(?: any ?more| again| ever)?"
            rf"|(?:remove|take) me(?: (?:off|from|out of) {_LIST})?|no more {_MSGS}"
            r"|(?:do not|don't|dont) (?:text|message|contact|email|msg) me(?: again| any ?more)?",
        ),
        (
            Keyword.START,
            r"start|unstop|yes|subscribe|resubscribe|re subscribe|opt ?in|start again"
            r"|sign me (?:back )?up",
        ),
        (Keyword.HELP, r"help|info|information|more info"),
        (
            Keyword.PAUSE,
            rf"pause(?: (?:it|this|them|everything|all|{_MSGS}))?(?: for (?:a )?(?:bit|while|week"
            rf"|few days|day|weekend))?|snooze|{_WANT}?take a break"
            rf"(?: from (?:the |these |this |your )?(?:{_MSGS}|program|programme))?",
        ),
        (
            Keyword.RESUME,
            rf"resume(?: {_MSGS})?|unpause|un pause|continue|i'm ready|im ready|i am ready"
            r"|ready to (?:resume|continue|start again)|i'm back|im back",
        ),
        (
            Keyword.SLOWER,
            rf"slower|slow down|slow it down|less often|less frequent(?:ly)?|fewer {_MSGS}"
            rf"|too many(?: {_MSGS})?|(?:text|message) me less(?: often)?|not so often",
        ),
        (Keyword.FLARE, r"flare|flares|flare up|flareup|flaring|flaring up"),
    )
)

# Unmistakable opt-out requests inside a longer message. They count only when addressed to us:
# nothing but lead-in words may precede them in their clause, so "please stop texting me"
# opts out but "I told my sister to stop texting me" and "don't stop texting me" do not.
_EMBEDDED_STOP: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        rf"\b(?:stop|quit|cease) {_CONTACTING} me\b",
        rf"\bstop sending (?:me )?(?:these |this |the |any |your |all )?{_MSGS}",
        r"\b(?:unsubscribe|opt) me\b",
        rf"\b(?:remove|take) me (?:off|from|out of) {_LIST}\b",
        r"\b(?:want|wish|like) to (?:unsubscribe|opt ?out)\b",
        r"\b(?:do not|don't|dont) (?:text|message|contact) me (?:again|any ?more)",
    )
)
_REQUEST_LEADS = wordset(
    "please pls plz kindly can could would will you u just hi hello hey hiya ok okay so and but"
    " now i i'd id i'm im really want need to guys team folks yes yeah sorry thanks thank"
    " seriously again also honestly pain"
)
_CLAUSE_OR_COMMA_RE = re.compile(r"[.!?;,\n]")
# Asking for fewer messages is low-stakes, so anywhere counts unless negated or conditional.
_EMBEDDED_SLOWER = re.compile(rf"\btoo many {_MSGS}|\b(?:text|message) me less\b|\bfewer {_MSGS}")
_REQUEST_GUARDS = wordset(
    "not never if why did when whether dont didnt cant wont doesnt shouldnt wouldnt"
)
_GUARD_WINDOW = 5  # words before a request searched for a guard

# --- flare phrases ---------------------------------------------------------------------------

_NEGATORS = wordset(
    "no not never without isn't isnt wasn't wasnt aren't arent weren't werent hasn't hasnt"
    " haven't havent didn't didnt don't dont doesn't doesnt"
)
_SUPERLATIVE_VERBS = frozenset({"felt", "been", "had", "seen", "feel"})

# ============================================================================================
# public API
# ============================================================================================


def parse_reply(raw: str, *, flare_phrases: Sequence[str] = DEFAULT_FLARE_PHRASES) -> ParsedReply:
    """Parse one reply; never raises, so one odd message cannot block the inbound queue."""
    if isinstance(flare_phrases, str):  # a bare str is a Sequence[str] of single letters
        flare_phrases = (flare_phrases,)
    body = _scan_form(_strip_cruft(raw[:_BODY_LIMIT]))[:_BODY_LIMIT]
    scan = body[:_SCAN_LIMIT]
    matched = _find_flare_phrases(scan, _compile_phrases(tuple(flare_phrases)))
    keywords = _detect_keywords(scan)
    if matched:
        keywords.add(Keyword.FLARE)
    return ParsedReply(
        raw=raw,
        text=" ".join(unicodedata.normalize("NFKC", raw).split()),
        pain_score=pain_score(scan),
        keywords=frozenset(keywords),
        flare_phrases=matched,
        crisis=mentions_crisis(body),
    )


# ============================================================================================
# normalisation
# ============================================================================================


def _strip_cruft(raw: str) -> str:
    """Cut quoted history and signatures; keep everything if nothing new would be left."""
    cut = len(raw)
    for pattern in (_CRUFT_RE, _DEVICE_TAIL_RE):
        match = pattern.search(raw)
        if match:
            cut = min(cut, match.start())
    body = _QUOTED_LINE_RE.sub("", raw[:cut])
    return body if _HAS_WORD_RE.search(body) else raw


def _scan_form(text: str) -> str:
    """Lowercase NFKC with straight apostrophes and single spaces; newlines end clauses."""
    text = _HALF_AFTER_DIGIT_RE.sub(".5", text).replace("½", " half ")
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    return _NEWLINES_RE.sub("\n", _HSPACE_RE.sub(" ", text)).strip()


def _clause_before(scan: str, start: int, chars: int = 80) -> str:
    return _CLAUSE_END_RE.split(scan[max(0, start - chars) : start])[-1]


# ============================================================================================
# keywords
# ============================================================================================


def _detect_keywords(scan: str) -> set[Keyword]:
    found = set()
    core = _core(scan)
    for keyword, pattern in _WHOLE_MESSAGE:
        if core and pattern.fullmatch(core):
            found.add(keyword)
    if any(_addressed_to_us(scan, m.start()) for p in _EMBEDDED_STOP for m in p.finditer(scan)):
        found.add(Keyword.STOP)
    if any(not _is_guarded(scan, m.start()) for m in _EMBEDDED_SLOWER.finditer(scan)):
        found.add(Keyword.SLOWER)
    return found


def _core(scan: str) -> str:
    """The message's words minus polite fillers at either end and repeats ("stop stop")."""
    words = _WORD_RE.findall(scan)
    if len(words) > _MAX_CORE_WORDS:
        return ""
    stripped = True
    while stripped and words:
        stripped = False
        for filler in FILLERS:
            size = len(filler)
            if tuple(words[:size]) == filler:
                words, stripped = words[size:], True
            elif tuple(words[-size:]) == filler:
                words, stripped = words[:-size], True
    return " ".join(w for i, w in enumerate(words) if i == 0 or w != words[i - 1])


def _addressed_to_us(scan: str, start: int) -> bool:
    """Only lead-ins ("hi, can you please ...") may precede an embedded opt-out request."""
    lead = _CLAUSE_OR_COMMA_RE.split(scan[max(0, start - 80) : start])[-1]
    return all(w in _REQUEST_LEADS or w.isdigit() for w in _WORD_RE.findall(lead))


def _is_guarded(scan: str, start: int) -> bool:
    """A request after a negation or condition ("if you stop texting me") is not one."""
    previous = _WORD_RE.findall(_clause_before(scan, start))[-_GUARD_WINDOW:]
    return any(w.replace("'", "") in _REQUEST_GUARDS for w in previous)


# ============================================================================================
# flare phrases
# ============================================================================================


@lru_cache(maxsize=64)
def _compile_phrases(phrases: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Label each pattern with the configured phrase, lowercased, so callers can look it up."""
    compiled = []
    for phrase in phrases:
        words = _scan_form(str(phrase)).split()
        if words:
            body = r"\s+".join(re.escape(w) for w in words)
            pattern = re.compile(rf"(?<![^\W_]){body}(?:e?s)?(?![^\W_])")
            compiled.append((str(phrase).lower(), pattern))
    return tuple(compiled)


def _find_flare_phrases(
    scan: str, compiled: tuple[tuple[str, re.Pattern[str]], ...]
) -> tuple[str, ...]:
    hits = sorted(
        (match.start(), phrase)
        for phrase, pattern in compiled
        for match in pattern.finditer(scan)
        if not _is_negated(scan, match.start())
    )
    return tuple(dict.fromkeys(phrase for _, phrase in hits))


def _is_negated(scan: str, start: int) -> bool:
    window = _WORD_RE.findall(_clause_before(scan, start))[-2:]
    if len(window) == 2 and window[0] == "never" and window[1] in _SUPERLATIVE_VERBS:
        return False  # "never felt worse" means very bad
    return any(w in _NEGATORS for w in window)
