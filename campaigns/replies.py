"""Parse what patients text or email back: opt-outs, commands, pain scores, flares, crisis.

Everything here is deliberately conservative. An opt-out or command fires only when it is the
whole message (or an unmistakable request), because unsubscribing someone who wrote "the pain
won't stop" is a real harm. A pain score is returned only when one number clearly is the score;
anything ambiguous is ``None`` so a human or a follow-up question can resolve it. Crisis
detection leans the other way: a missed alert is worse than a false one, and a person reviews
every alert.

Decisions on the ambiguous cases (tests pin each one):

* Pain scores are rounded to the nearest half, halves rounding up (toward more pain, so a
  flare is never under-reported): ``4.25`` -> 4.5, ``4.75`` -> 5.0, "3-4" -> 3.5. Anything
  above 10 before rounding (``10.2``) is out of range, hence ``None``.
* A range ("3-4", "3 to 4", "3 or 4", "between 3 and 4") gives its midpoint only when it is
  ascending and at most 3 points wide; wider or descending dashes are ambiguous (``None``).
  "from 7 to 5", "7 -> 5", "7 down to 5" and descending "7 to 5" describe a change -> 5.
* Numbers glued to letters (``20min``, ``3rd``, ``8am``, ``covid-19``), followed by a unit or
  count noun ("6 hours", "2 bad days"), labelled ("day 3", "week 2", "#4") or part of a time,
  date, percentage or money amount are not scores at all. Out-of-range numbers (``11``,
  ``-2``) still count as candidates, so they make a message ambiguous rather than vanish.
  "at the end of the day 4" is therefore ``None`` ("day 4" reads as a programme day).
* Number words ("seven") count only with a cue ("a seven", "pain seven", "seven/10", "seven
  today") or as the whole message, so "one of those days" is not a score of 1.
* Flare phrases match whole words, plus a plural "s"/"es" ("flares", "bad days"). So
  "worsening" does NOT match "worse" and "flared" only matches when configured (it is by
  default). Callers who want stems add them to ``flare_phrases``.
* A flare phrase with no/not/never/without/isn't/wasn't/didn't/don't... in the two words
  before it is negated ("no flares this week"), except the superlative "never felt/been worse".
* Crisis: negated mentions ("I'm not suicidal", "don't want to die") are STILL flagged, since a
  human reviews every alert and negation parsing is exactly where a regex would fail someone.
  "hurt/cut myself" followed by an accident context ("hurt myself lifting", "cut myself
  shaving") is not flagged unless an intent word precedes it ("want to hurt myself").
* Email cruft (quoted lines, "On ... wrote:", "Sent from my iPhone", signatures) is removed
  before scanning, so the clinic's own quoted footer cannot trigger keywords or crisis alerts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache


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
    """One inbound reply; ``raw`` is kept byte-for-byte for audit and human review."""

    raw: str
    text: str
    pain_score: float | None
    keywords: frozenset[Keyword]
    flare_phrases: tuple[str, ...]
    crisis: bool

    @property
    def is_flare_signal(self) -> bool:
        return Keyword.FLARE in self.keywords or bool(self.flare_phrases)


# --- limits: bound the work on pathological inputs; ``raw`` is never truncated -------------

_BODY_LIMIT = 10_000  # chars of raw considered at all (crisis scan uses all of them)
_SCAN_LIMIT = 2_000  # chars scanned for numbers, keywords and flare phrases
_MAX_DIGITS = 4  # longer digit runs are never scores (and int() of them is not free)

# --- normalisation ---------------------------------------------------------------------------

_APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019\u201b\u02bc\u00b4`\u2032", "'"))
_HSPACE_RE = re.compile(r"[^\S\n]+")
_NEWLINES_RE = re.compile(r" ?\n[\n ]*")
_HALF_AFTER_DIGIT_RE = re.compile(r"(?<=\d) ?½")

# A reply header or device signature: everything from here on is not the patient's new text.
_CRUFT_RE = re.compile(
    r"^[ \t]*(?:on\b[^\n]{0,300}\n?[^\n]{0,300}?\bwrote:"
    r"|-{2,}[ \t]*(?:original|forwarded) message"
    r"|_{10,}"
    r"|from:[ \t]+\S"
    r"|--[ \t]*$"
    r"|sent (?:from|via|with) (?:my\b|yahoo|outlook|aol|mail\b|gmail|samsung)"
    r"|get outlook for\b)",
    re.IGNORECASE | re.MULTILINE,
)
_DEVICE_TAIL_RE = re.compile(
    r"\bsent from my (?:iphone|ipad|android|galaxy|samsung|mobile|phone|smartphone|pixel"
    r"|blackberry|verizon|t-mobile)\b",
    re.IGNORECASE,
)
_QUOTED_LINE_RE = re.compile(r"^[ \t]*>[^\n]*\n?", re.MULTILINE)
_HAS_WORD_RE = re.compile(r"[^\W_]")

# --- keywords --------------------------------------------------------------------------------

_CORE_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_FILLERS: tuple[tuple[str, ...], ...] = (
    ("thank", "you"),
    ("for", "now"),
    ("right", "now"),
    ("please",),
    ("pls",),
    ("plz",),
    ("thanks",),
    ("thankyou",),
    ("thx",),
    ("ty",),
    ("now",),
    ("ok",),
    ("okay",),
)
_MAX_CORE_WORDS = 16

_MSGS = r"(?:messages?|texts?|msgs?|emails?|reminders?|notifications?|sms)"
_CONTACTING = r"(?:texting|txting|messaging|sending|contacting|emailing|calling|bothering|spamming)"
_LIST = (
    r"(?:this |the |your |ur |that |all |these )?(?:mailing |texting |text |sms |contact )?"
    rf"(?:list|lists|program|programme|{_MSGS})"
)

# Whole-message forms (after punctuation, emoji and filler words are stripped).
_WHOLE_MESSAGE: tuple[tuple[Keyword, re.Pattern[str]], ...] = tuple(
    (keyword, re.compile(pattern))
    for keyword, pattern in (
        (
            Keyword.STOP,
            r"stop|stopall|stop all|stop it|end|quit|revoke|leave me alone"
            r"|(?:i want to |i'd like to |i would like to |i wanna )?"
            rf"(?:unsubscribe|unsub|cancel|opt ?out|stop)(?: me| all| everything| (?:of|from) {_LIST})?"
            rf"|(?:stop|quit|cease) {_CONTACTING}(?: me)?(?: (?:these|this|the|your|any))?"
            rf"(?: {_MSGS})?(?: any ?more| again| ever)?"
            rf"|(?:remove|take) me(?: (?:off|from|out of) {_LIST})?"
            rf"|no more {_MSGS}"
            rf"|(?:do not|don't|dont) (?:text|message|contact|email|msg) me"
            r"(?: again| any ?more| ever again)?",
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
            r"|few days|day|weekend))?|snooze"
            r"|(?:can we |can i |let's |lets |i'd like to |i want to |i need to |i wanna )?"
            rf"take a break(?: from (?:the |these |this |your )?(?:{_MSGS}|program|programme))?",
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

# Unmistakable requests that may sit inside a longer message, unless negated or conditional.
_EMBEDDED_REQUESTS: tuple[tuple[Keyword, re.Pattern[str]], ...] = (
    (Keyword.STOP, re.compile(rf"\b(?:stop|quit|cease) {_CONTACTING} me\b")),
    (Keyword.STOP, re.compile(rf"\bstop sending (?:me )?(?:these |this |the |any |your )?{_MSGS}")),
    (Keyword.STOP, re.compile(r"\b(?:unsubscribe|opt) me\b")),
    (Keyword.STOP, re.compile(rf"\b(?:remove|take) me (?:off|from|out of) {_LIST}\b")),
    (Keyword.STOP, re.compile(r"\b(?:want|wish|like) to (?:unsubscribe|opt ?out)\b")),
    (
        Keyword.STOP,
        re.compile(r"\b(?:do not|don't|dont) (?:text|message|contact) me (?:again|any ?more)"),
    ),
    (Keyword.SLOWER, re.compile(rf"\btoo many {_MSGS}")),
    (Keyword.SLOWER, re.compile(rf"\b(?:text|message) me less\b|\bfewer {_MSGS}")),
)
_REQUEST_GUARDS = frozenset(
    [
        "not",
        "never",
        "if",
        "why",
        "did",
        "when",
        "whether",
        "dont",
        "didnt",
        "cant",
        "wont",
        "doesnt",
        "shouldnt",
        "wouldnt",
    ]
)
_CLAUSE_END_RE = re.compile(r"[.!?;\n]")

# --- flare phrases ---------------------------------------------------------------------------

_NEGATORS = frozenset(
    [
        "no",
        "not",
        "never",
        "without",
        "isn't",
        "isnt",
        "wasn't",
        "wasnt",
        "aren't",
        "arent",
        "weren't",
        "werent",
        "hasn't",
        "hasnt",
        "haven't",
        "havent",
        "didn't",
        "didnt",
        "don't",
        "dont",
        "doesn't",
        "doesnt",
    ]
)
_SUPERLATIVE_VERBS = frozenset({"felt", "been", "had", "seen", "feel"})

# --- crisis ----------------------------------------------------------------------------------

_NOT = r"(?:don't|dont|do not|didn't|didnt|doesn't|doesnt)"
_SELF = r"my ?self"
_ACCIDENT = (
    r"while|when|lifting|doing|playing|at|during|on|in|gardening|cleaning|cooking|shaving"
    r"|chopping|slicing|exercising|walking|running|working|yesterday|earlier|last|this|by"
    r"|falling|slipping|trying|moving|carrying|reaching|bending|getting|tripping"
)
_INTENT = (
    r"want|wanna|wanted|going|gonna|urge|urges|tempted|thinking|thought|think|might|may|will"
    r"|could|like|afraid|scared|plan|planning|try|trying|tried|need|wish"
)
_CRISIS_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        r"\b(?:su(?:i|ic)?c?id\w*|suicde|suiside\w*|suisid\w*|suicial)",
        rf"\b(?:kill|killing|killed|unalive|unaliving) {_SELF}\b|\bunalive\b",
        r"\b(?:want|wants|wanted|wanna|ready|wish|wishing|like) (?:to )?(?:just )?die\b",
        r"\bfeel(?:ing)? like dying\b",
        r"\b(?:end|ending|ended|take|taking) (?:my|my own|own) life\b",
        r"\bend(?:ing)? it all\b",
        r"\bbetter off (?:dead|without me|if i (?:was|were|wasn't|weren't) (?:here|around|alive))",
        r"\bwish (?:i|i'd|id) (?:was|were|wasn't|weren't|could|would|had) (?:just )?"
        r"(?:dead|die|not alive|never been born|not been born|not here)",
        rf"\b{_NOT} want to (?:be alive|live|exist|wake up|go on|be here any ?more)",
        rf"\b{_NOT} want to be here (?:any ?more|no more)",
        r"\b(?:no|not any|nothing|no more) (?:reason|point|reasons) (?:to|in|for) (?:live|living|go on"
        r"|going on|being alive|stay alive|staying alive)",
        r"\bnothing (?:left )?to live for\b",
        r"\bself[ -]?harm\w*|\bharm(?:ing|ed)? my ?self\b",
        rf"\b(?:{_INTENT})\b(?: \S+){{0,3}}? (?:hurt|hurting|cut|cutting|injure) {_SELF}\b",
        rf"\b(?:hurt|hurting|cut|cutting|injure|injuring) {_SELF}\b(?! (?:{_ACCIDENT})\b)",
        r"\boverdos\w*",
        r"\b(?:take|taking|took|swallow|swallowing|swallowed) (?:all|every one|the whole bottle)"
        r" (?:of )?(?:my|the|these|those)? ?(?:pills|meds|medications?|tablets|painkillers|bottle)",
        r"\bcan't go on (?:like this|any ?more|living)",
    )
)

# --- pain scores -----------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"(?P<num>\d+(?:[.,]\d+)*)"
    r"|(?P<word>[^\W\d_]+(?:'[^\W\d_]+)*)"
    r"|(?P<arrow>->|=>|→)"
    r"|(?P<dash>[-–—])"
    r"|(?P<slash>/)"
    r"|(?P<sep>[.!?;,\n])"
    r"|(?P<other>[%#$£€¥:+])"
)
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
}
_UNITS = frozenset(
    [
        "min",
        "mins",
        "minute",
        "minutes",
        "hr",
        "hrs",
        "hour",
        "hours",
        "h",
        "sec",
        "secs",
        "second",
        "seconds",
        "day",
        "days",
        "week",
        "weeks",
        "wk",
        "wks",
        "month",
        "months",
        "year",
        "years",
        "yr",
        "yrs",
        "yo",
        "step",
        "steps",
        "km",
        "kms",
        "k",
        "mile",
        "miles",
        "mi",
        "meter",
        "meters",
        "metres",
        "m",
        "ft",
        "feet",
        "am",
        "pm",
        "o'clock",
        "times",
        "time",
        "x",
        "%",
        "percent",
        "lb",
        "lbs",
        "pound",
        "pounds",
        "kg",
        "kgs",
        "kilo",
        "kilos",
        "mg",
        "ml",
        "pill",
        "pills",
        "tablet",
        "tablets",
        "tabs",
        "dose",
        "doses",
        "cup",
        "cups",
        "glass",
        "glasses",
        "rep",
        "reps",
        "set",
        "sets",
        "lap",
        "laps",
        "floor",
        "floors",
        "block",
        "blocks",
        "walk",
        "walks",
        "flare",
        "flares",
        "session",
        "sessions",
        "exercise",
        "exercises",
        "kid",
        "kids",
        "child",
        "children",
        "people",
        "nights",
        "night",
        "hrs'",
        "minutes'",
        "naps",
        "nap",
    ]
)
_LABELS = frozenset(
    [
        "day",
        "week",
        "wk",
        "month",
        "lesson",
        "module",
        "session",
        "step",
        "number",
        "no",
        "exercise",
        "part",
        "chapter",
        "video",
        "episode",
        "page",
        "room",
        "track",
        "round",
        "class",
        "unit",
        "version",
        "iphone",
        "ios",
        "android",
        "covid",
        "apt",
        "suite",
        "ext",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ]
)
_PAIN_CUES = frozenset({"pain", "pains", "pain's", "score", "level", "rating", "rate", "rated"})
_SOFT_CUES = frozenset(
    [
        "a",
        "an",
        "about",
        "around",
        "maybe",
        "like",
        "at",
        "is",
        "was",
        "im",
        "i'm",
        "its",
        "it's",
        "approx",
        "approximately",
        "roughly",
        "probably",
        "prob",
        "solid",
        "say",
        "feeling",
        "feel",
        "still",
        "prolly",
    ]
)
_CURRENT_CUES = frozenset({"now", "today", "today's", "currently", "atm", "tonight", "presently"})
_PAST_BEFORE = frozenset({"was", "were", "yesterday", "earlier", "before", "ago", "last", "from"})
_PAST_AFTER = frozenset({"yesterday", "earlier", "before", "ago", "last"})
_CHANGE_LINKS = frozenset({("down", "to"), ("up", "to"), ("dropped", "to"), ("went", "to")})
_RANGE_LINKS = frozenset({("to",), ("or",), ("-",), ("and",)})
# Words that may follow a number word that is a score ("a two today"), unlike "one of those".
_WORD_NUMBER_FOLLOWERS = frozenset(
    [
        "today",
        "now",
        "tonight",
        "currently",
        "atm",
        "right",
        "this",
        "out",
        "or",
        "to",
        "and",
        "ish",
        "maybe",
        "i",
        "im",
        "i'm",
        "but",
        "though",
        "probably",
        "pain",
        "yesterday",
        "earlier",
        "so",
        "still",
        "again",
        "is",
        "was",
        "over",
        "thanks",
        "please",
        "pls",
    ]
)
_MAX_RANGE_WIDTH = 300  # hundredths: "3-6" is still a range, "2-8" is ambiguous
_CUE_GAP = 3  # words allowed between a "now/today" cue and its number


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int


@dataclass
class _Cand:
    """A number that may be the score; ``value`` is None when it is no valid score."""

    value: float | None
    first: int  # token index span, used for cue look-ups
    last: int
    tier: int = 0  # 2: pain cue or /10, 1: soft cue ("a 4", "4ish"), 0: bare
    past: bool = False
    current: bool = False
    is_word: bool = False
    flags: set[str] = field(default_factory=set)


# ============================================================================================
# public API
# ============================================================================================


def parse_reply(raw: str, *, flare_phrases: Sequence[str] = DEFAULT_FLARE_PHRASES) -> ParsedReply:
    """Parse one reply; never raises, so a strange message can't block the inbound queue."""
    if isinstance(flare_phrases, str):  # a bare str is a Sequence[str] of single letters
        flare_phrases = (flare_phrases,)
    body = _scan_form(_strip_cruft(raw[:_BODY_LIMIT]))
    scan = body[:_SCAN_LIMIT]
    matched = _find_flare_phrases(scan, _compile_phrases(tuple(flare_phrases)))
    keywords = _detect_keywords(scan)
    if matched:
        keywords.add(Keyword.FLARE)
    return ParsedReply(
        raw=raw,
        text=" ".join(unicodedata.normalize("NFKC", raw).split()),
        pain_score=_pain_score(scan),
        keywords=frozenset(keywords),
        flare_phrases=matched,
        crisis=_detect_crisis(body),
    )


# ============================================================================================
# normalisation
# ============================================================================================


def _strip_cruft(raw: str) -> str:
    """Cut quoted history and signatures; fall back to everything if nothing new is left."""
    cut = len(raw)
    for pattern in (_CRUFT_RE, _DEVICE_TAIL_RE):
        match = pattern.search(raw)
        if match:
            cut = min(cut, match.start())
    body = _QUOTED_LINE_RE.sub("", raw[:cut])
    return body if _HAS_WORD_RE.search(body) else raw


def _scan_form(text: str) -> str:
    """Lowercase, NFKC, straight apostrophes, single spaces; newlines kept as clause breaks."""
    text = _HALF_AFTER_DIGIT_RE.sub(".5", text).replace("½", " half ")
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = _NEWLINES_RE.sub("\n", _HSPACE_RE.sub(" ", text))
    return text.strip()


# ============================================================================================
# keywords
# ============================================================================================


def _detect_keywords(scan: str) -> set[Keyword]:
    found = set()
    core = _core(scan)
    for keyword, pattern in _WHOLE_MESSAGE:
        if core and pattern.fullmatch(core):
            found.add(keyword)
    for keyword, pattern in _EMBEDDED_REQUESTS:
        if any(not _is_guarded(scan, m.start()) for m in pattern.finditer(scan)):
            found.add(keyword)
    return found


def _core(scan: str) -> str:
    """The message's words minus polite fillers at either end and repeats ("stop stop")."""
    words = _CORE_WORD_RE.findall(scan)
    if len(words) > _MAX_CORE_WORDS:
        return ""
    stripped = True
    while stripped and words:
        stripped = False
        for filler in _FILLERS:
            size = len(filler)
            if tuple(words[:size]) == filler:
                words, stripped = words[size:], True
            elif tuple(words[-size:]) == filler:
                words, stripped = words[:-size], True
    deduped = [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]
    return " ".join(deduped)


def _is_guarded(scan: str, start: int) -> bool:
    """A request preceded by negation or a condition ("if you stop texting me") is not one."""
    clause = _CLAUSE_END_RE.split(scan[max(0, start - 80) : start])[-1]
    previous = [w.replace("'", "") for w in _CORE_WORD_RE.findall(clause)[-5:]]
    return any(w in _REQUEST_GUARDS for w in previous)


# ============================================================================================
# flare phrases
# ============================================================================================


@lru_cache(maxsize=64)
def _compile_phrases(phrases: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    compiled = []
    for phrase in phrases:
        words = _scan_form(str(phrase)).split()
        if words:
            body = r"\s+".join(re.escape(w) for w in words)
            pattern = re.compile(rf"(?<![^\W_]){body}(?:e?s)?(?![^\W_])")
            compiled.append((" ".join(words), pattern))
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
    clause = _CLAUSE_END_RE.split(scan[max(0, start - 60) : start])[-1]
    window = _CORE_WORD_RE.findall(clause)[-2:]
    if len(window) == 2 and window[0] == "never" and window[1] in _SUPERLATIVE_VERBS:
        return False  # "never felt worse" means very bad, not "not bad"
    return any(w in _NEGATORS for w in window)


# ============================================================================================
# crisis
# ============================================================================================


def _detect_crisis(body: str) -> bool:
    text = " ".join(body.split())
    return any(pattern.search(text) for pattern in _CRISIS_PATTERNS)


# ============================================================================================
# pain score
# ============================================================================================


def _pain_score(scan: str) -> float | None:
    tokens = [
        _Tok(m.lastgroup or "", m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(scan)
    ]
    candidates = [c for c in _candidates(tokens, scan) if _keep_candidate(c, tokens)]
    return _select(candidates, tokens)


def _tokens_kind(tokens: Sequence[_Tok], index: int, kind: str, text: str | None = None) -> bool:
    if not 0 <= index < len(tokens) or tokens[index].kind != kind:
        return False
    return text is None or tokens[index].text == text


def _candidates(tokens: Sequence[_Tok], scan: str) -> Iterator[_Cand]:
    i = 0
    while i < len(tokens):
        first = _read_number(tokens, i, scan)
        if first is None:
            i += 1
            continue
        cands, i = _read_range(tokens, first, scan)
        yield from cands


def _read_number(tokens: Sequence[_Tok], i: int, scan: str) -> _Cand | None:
    """Read a number and its tails ("/10", "out of ten", "ish", "and a half") at token i."""
    tok = tokens[i]
    if tok.kind == "word" and tok.text in _NUMBER_WORDS:
        cand = _Cand(float(_NUMBER_WORDS[tok.text]), i, i, is_word=True)
    elif tok.kind == "num":
        cand = _Cand(_parse_digits(tok.text), i, i)
        _check_attachments(cand, tok, scan)
    else:
        return None
    _read_tails(cand, tokens, scan)
    return cand


def _parse_digits(text: str) -> float | None:
    """Digits to a half-step score; lists ("1,2,3"), thousands and long runs are invalid."""
    parts = re.split(r"[.,]", text)
    if len(parts) > 2 or any(len(p) > _MAX_DIGITS for p in parts):
        return None
    whole, frac = int(parts[0]), parts[1] if len(parts) == 2 else ""
    if "," in text and (len(parts[0]) > 2 or len(frac) != 1):
        return None  # only "6,5" is clearly a decimal comma
    if len(frac) > 2:
        return None
    hundredths = whole * 100 + (int(frac.ljust(2, "0")) if frac else 0)
    return _hundredths_to_score(hundredths)


def _hundredths_to_score(hundredths: int) -> float | None:
    if not 0 <= hundredths <= 1000:
        return None
    return float((hundredths * 2 + 50) // 100) / 2  # nearest half, halves round up


def _check_attachments(cand: _Cand, tok: _Tok, scan: str) -> None:
    """Flag numbers glued to letters, times, money, labels and negative signs."""
    before = scan[tok.start - 1] if tok.start else ""
    before2 = scan[tok.start - 2] if tok.start > 1 else ""
    after = scan[tok.end] if tok.end < len(scan) else ""
    letters = re.match(r"[^\W\d_]+", scan[tok.end :])
    if (letters and letters.group() == "ish") or scan.startswith("-ish", tok.end):
        cand.flags.add("ish")
    elif letters or before.isalpha() or (before in "-–" and before2.isalpha() and before):
        cand.flags.add("drop")
    if (after == ":" and scan[tok.end + 1 : tok.end + 2].isdigit()) or (
        before == ":" and before2.isdigit()
    ):
        cand.flags.add("drop")  # a time like 3:30
    if before and before in "#$£€¥":
        cand.flags.add("drop")
    if before == "-" and not before2.isalnum():
        cand.value = None  # "-2": negative, so out of range


def _read_tails(cand: _Cand, tokens: Sequence[_Tok], scan: str) -> None:
    j = cand.last + 1
    if cand.flags & {"ish"} and _tokens_kind(tokens, j, "dash"):
        j += 2  # "4-ish"
    if _tokens_kind(tokens, j, "word", "and") and _word_seq(tokens, j + 1, ("a", "half")):
        cand.value = None if cand.value is None else _add_half(cand.value)
        j += 3
    if _tokens_kind(tokens, j, "slash") and (
        _tokens_kind(tokens, j + 1, "num") or _tokens_kind(tokens, j + 1, "word")
    ):
        cand.flags.add("ten" if tokens[j + 1].text in ("10", "ten") else "drop")
        j += 2
        if _tokens_kind(tokens, j, "slash"):  # 5/10/2024 is a date
            cand.flags.add("drop")
    elif _word_seq(tokens, j, ("out", "of")) or _word_seq(tokens, j, ("outta",)):
        k = j + (2 if tokens[j].text == "out" else 1)
        if k < len(tokens) and tokens[k].text in ("10", "ten"):
            cand.flags.add("ten")
            j = k + 1
    elif _tokens_kind(tokens, j, "other", "%"):
        cand.flags.add("drop")
    cand.last = j - 1


def _add_half(value: float) -> float | None:
    return value + 0.5 if value + 0.5 <= 10 else None


def _word_seq(tokens: Sequence[_Tok], j: int, words: tuple[str, ...]) -> bool:
    return all(_tokens_kind(tokens, j + k, "word", w) for k, w in enumerate(words))


def _read_range(tokens: Sequence[_Tok], first: _Cand, scan: str) -> tuple[list[_Cand], int]:
    """Merge "3-4", "3 to 4", "between 3 and 4" and changes like "from 7 to 5"."""
    j = first.last + 1
    link: tuple[str, ...] = ()
    while j < len(tokens) and len(link) < 2 and tokens[j].kind in ("word", "dash", "arrow"):
        link += (tokens[j].text if tokens[j].kind != "dash" else "-",)
        j += 1
        second = _read_number(tokens, j, scan) if j < len(tokens) else None
        if second is not None:
            merged = _merge_range(tokens, first, second, link)
            if merged is not None:
                return merged, second.last + 1
    return [first], first.last + 1


def _merge_range(
    tokens: Sequence[_Tok], first: _Cand, second: _Cand, link: tuple[str, ...]
) -> list[_Cand] | None:
    before = tokens[first.first - 1].text if first.first else ""
    changing = before == "from" or link in _CHANGE_LINKS or link[-1] in ("->", "=>", "→")
    if not changing and link not in _RANGE_LINKS:
        return None
    if link == ("and",) and before != "between":
        return None
    first.flags |= second.flags & {"drop", "ten"}
    second.flags |= first.flags & {"drop"}
    if changing or (_descending(first, second) and link == ("to",)):
        first.past, second.current = True, True
        return [first, second]
    if first.value in (0, 1) and second.value == 10:
        return []  # "on a scale of 1 to 10": the scale, not a score
    first.value = _midpoint(first.value, second.value)
    first.last = second.last
    first.is_word = first.is_word and second.is_word
    return [first]


def _descending(first: _Cand, second: _Cand) -> bool:
    return first.value is not None and second.value is not None and first.value > second.value


def _midpoint(low: float | None, high: float | None) -> float | None:
    if low is None or high is None or low > high or (high - low) * 100 > _MAX_RANGE_WIDTH:
        return None
    return _hundredths_to_score(round((low + high) * 50))


def _keep_candidate(cand: _Cand, tokens: Sequence[_Tok]) -> bool:
    """Apply context: drop unit counts and labels, then grade the cues around the number."""
    if "drop" in cand.flags or _followed_by_unit(cand, tokens) or _labelled(cand, tokens):
        return False
    before, after = _clause_words(tokens, cand.first, -1), _clause_words(tokens, cand.last, 1)
    if "ten" in cand.flags or _PAIN_CUES & set(before[:5]) or after[:1] == ["pain"]:
        cand.tier = 2
    elif "ish" in cand.flags or _soft_cue(before) or after[:1] == ["ish"]:
        cand.tier = 1
    cand.past = cand.past or bool(_PAST_BEFORE & set(before[:3]) or _PAST_AFTER & set(after[:2]))
    if cand.is_word:
        return _word_number_ok(cand, tokens, before, after)
    return True


def _soft_cue(before: list[str]) -> bool:
    if before[:1] and before[0] in ("a", "an"):
        before = before[1:]
    return bool(before[:1]) and before[0] in _SOFT_CUES


def _clause_words(tokens: Sequence[_Tok], index: int, step: int) -> list[str]:
    """Words next to a token, nearest first, up to a clause break or another number."""
    words = []
    j = index + step
    while 0 <= j < len(tokens) and len(words) < 6:
        tok = tokens[j]
        if tok.kind in ("sep", "num") or tok.text in _NUMBER_WORDS:
            break
        if tok.kind == "word":
            words.append(tok.text)
        j += step
    return words


def _followed_by_unit(cand: _Cand, tokens: Sequence[_Tok]) -> bool:
    """True for "6 hours", "20%", and "2 bad days" (one adjective before the unit)."""
    after = _clause_words(tokens, cand.last, 1)
    if after[:1] and after[0] in _UNITS:
        return True
    cue_words = _CURRENT_CUES | _PAST_AFTER | _PAIN_CUES | {"out", "or", "to", "and"}
    return len(after) > 1 and after[0] not in cue_words and after[1] in _UNITS


def _labelled(cand: _Cand, tokens: Sequence[_Tok]) -> bool:
    before = _clause_words(tokens, cand.first, -1)
    return bool(before[:1]) and before[0] in _LABELS and _adjacent(tokens, cand.first)


def _adjacent(tokens: Sequence[_Tok], index: int) -> bool:
    return index > 0 and tokens[index - 1].kind == "word"


def _word_number_ok(
    cand: _Cand, tokens: Sequence[_Tok], before: list[str], after: list[str]
) -> bool:
    """Number words are common English ("one of those days"); require a cue or a lone word."""
    if after[:1] and after[0] not in _WORD_NUMBER_FOLLOWERS:
        return False
    lone = all(
        t.kind == "sep" or t.kind == "other" or i == cand.first for i, t in enumerate(tokens)
    )
    cued = cand.tier > 0 or cand.past or cand.current or cand.first != cand.last
    return lone or cued or bool(_CURRENT_CUES & set(before[:2] + after[:2]))


def _select(cands: Sequence[_Cand], tokens: Sequence[_Tok]) -> float | None:
    """Pick the score: the current one when a change is described, else the best-cued one."""
    if len(cands) <= 1:
        return cands[0].value if cands else None
    current = _resolve_current(cands, tokens)
    if current is not None:
        return current.value
    recent = [c for c in cands if not c.past]
    if recent and len(recent) < len(cands):
        return recent[-1].value
    top = max(c.tier for c in cands)
    values = {c.value for c in cands if c.tier == top}
    return values.pop() if len(values) == 1 else None


def _resolve_current(cands: Sequence[_Cand], tokens: Sequence[_Tok]) -> _Cand | None:
    """The number tied to the last "now"/"today"/"currently"/"at the moment" cue."""
    for cue in reversed(_current_cue_positions(tokens)):
        chosen = _nearest(cands, tokens, cue)
        if chosen is not None:
            return chosen
    forced = [c for c in cands if c.current]
    return forced[-1] if forced else None


def _current_cue_positions(tokens: Sequence[_Tok]) -> list[int]:
    positions = []
    for i, tok in enumerate(tokens):
        if (tok.kind == "word" and tok.text in _CURRENT_CUES) or (
            tok.text == "moment" and _word_seq(tokens, i - 2, ("at", "the"))
        ):
            positions.append(i)
    return positions


def _nearest(cands: Sequence[_Cand], tokens: Sequence[_Tok], cue: int) -> _Cand | None:
    """Closest candidate in the cue's clause; on a tie the later one ("was 7 now 5")."""
    after = [(_gap(tokens, cue, c.first), c) for c in cands if c.first > cue]
    before = [(_gap(tokens, c.last, cue), c) for c in cands if c.last < cue]
    options = [
        g for g in (min(after, key=_key, default=None), max(before, key=_rkey, default=None)) if g
    ]
    options = [(gap, c) for gap, c in options if gap is not None and gap <= _CUE_GAP]
    if not options:
        return None
    return min(options, key=lambda o: (o[0], -o[1].first))[1]


def _key(option: tuple[int | None, _Cand]) -> int:
    return option[1].first


def _rkey(option: tuple[int | None, _Cand]) -> int:
    return option[1].last


def _gap(tokens: Sequence[_Tok], left: int, right: int) -> int | None:
    """Words strictly between two token indexes, or None across a clause break."""
    between = tokens[left + 1 : right]
    if any(t.kind == "sep" for t in between):
        return None
    return sum(1 for t in between if t.kind == "word")
