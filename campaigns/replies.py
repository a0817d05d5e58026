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


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# --- limits: bound the work on pathological input; ``raw`` itself is never truncated ---------

_BODY_LIMIT = 10_000  # chars of raw looked at at all; the crisis scan uses all of them
_SCAN_LIMIT = 2_000  # chars scanned for numbers, keywords and flare phrases
_MAX_DIGITS = 4  # longer digit runs are never scores (and int() of them is not free)

# --- normalisation ---------------------------------------------------------------------------

_APOSTROPHES = str.maketrans(dict.fromkeys("\u2018\u2019\u201b\u02bc\u00b4`\u2032", "'"))
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
_FILLER_WORDS = frozenset(word for filler in _FILLERS for word in filler)
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
_REQUEST_LEADS = _wordset(
    "please pls plz kindly can could would will you u just hi hello hey hiya ok okay so and but"
    " now i i'd id i'm im really want need to guys team folks yes yeah sorry thanks thank"
    " seriously again also honestly pain"
)
_CLAUSE_OR_COMMA_RE = re.compile(r"[.!?;,\n]")
# Asking for fewer messages is low-stakes, so anywhere counts unless negated or conditional.
_EMBEDDED_SLOWER = re.compile(rf"\btoo many {_MSGS}|\b(?:text|message) me less\b|\bfewer {_MSGS}")
_REQUEST_GUARDS = _wordset(
    "not never if why did when whether dont didnt cant wont doesnt shouldnt wouldnt"
)
_GUARD_WINDOW = 5  # words before a request searched for a guard

# --- flare phrases ---------------------------------------------------------------------------

_NEGATORS = _wordset(
    "no not never without isn't isnt wasn't wasnt aren't arent weren't werent hasn't hasnt"
    " haven't havent didn't didnt don't dont doesn't doesnt"
)
_SUPERLATIVE_VERBS = frozenset({"felt", "been", "had", "seen", "feel"})

# --- crisis ----------------------------------------------------------------------------------

_SELF = r"my ?self"
_INJURE = r"hurt|hurting|cut|cutting|injure|injuring"
_NOT = r"(?:don't|dont|do not|didn't|didnt|doesn't|doesnt)"
# Accident contexts excuse "hurt/cut myself" (ordinary in a pain programme) unless intent is
# stated; time words ("last night") never do, and "on purpose" is not "on a can".
_HURT_ACCIDENT = (
    r"while|when|lifting|doing|playing|at|during|on (?:a|the|my|some)|in (?:a|the|my)|by"
    r"|gardening|cleaning|cooking|exercising|walking|running|working|falling|slipping|trying"
    r"|moving|carrying|reaching|bending|getting|tripping|accidentally"
)
_CUT_ACCIDENT = (
    r"while|when|shaving|cooking|chopping|slicing|gardening|opening|on (?:a|the|some)"
    r"|by accident|accidentally"
)
_SLACK = r"(?: (?:some|a little|a bit of|a)? ?(?:slack|break)| off)\b"  # self-compassion idiom
_INTENT = (
    r"want|wanna|wanted|going to|gonna|urge|urges|tempted|thinking (?:about|of)"
    r"|thought (?:about|of)|might|will|feel like|felt like|afraid|scared|plan|planning"
    r"|try to|trying to|tried to|need to|wish"
)
_CRISIS_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        r"\b(?:suicid|sucid|suicd|suiced|suisid)\w*|\bsewer ?slide\b",
        rf"\b(?:kill|killing|killed|unalive|unaliving) {_SELF}\b|\bunalive\b",
        r"\b(?:want|wants|wanted|wanna|ready|wish|wishing|like) (?:to )?(?:just )?die\b",
        r"\bfeel(?:ing)? like dying\b",
        r"\b(?:end|ending|ended|take|taking) (?:my|my own|own) life\b",
        r"\bend(?:ing)? it all\b",
        r"\bbetter off (?:dead|without me|if i (?:was|were|wasn't|weren't) (?:here|around|alive))",
        r"\bwish (?:i|i'd|id) (?:was|were|wasn't|weren't|could|would|had) (?:just )?"
        r"(?:dead|die|not alive|never been born|not been born|not here)",
        rf"\b{_NOT} want to (?:be alive|live|exist|wake up|go on|be here (?:any ?more|no more))",
        r"\b(?:no|not any|nothing|no more) (?:reasons?|point) (?:to|in|for) (?:live|living|go on"
        r"|going on|being alive|stay alive|staying alive)",
        r"\bnothing (?:left )?to live for\b",
        r"\bself[ -]?harm\w*|\bharm(?:ing|ed)? my ?self\b",
        rf"\b(?:{_INTENT})\b(?: \S+){{0,3}}?(?<!\bhave) (?:{_INJURE}) {_SELF}\b(?!{_SLACK})",
        rf"\b(?:hurt|hurting|injure|injuring) {_SELF}\b(?! (?:{_HURT_ACCIDENT})\b)",
        rf"\b(?:cut|cutting) {_SELF}\b(?! (?:{_CUT_ACCIDENT})\b)(?!{_SLACK})",
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
_LETTERS_RE = re.compile(r"[^\W\d_]+")
_ZERO_TO_TEN = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)
_NUMBER_WORDS = {word: value for value, word in enumerate(_ZERO_TO_TEN)}
_UNITS = _wordset(
    """
    min mins minute minutes hr hrs hour hours h sec secs second seconds day days week weeks wk
    wks month months year years yr yrs yo step steps km kms k mile miles mi meter meters metres
    m ft feet am pm o'clock times x percent lb lbs pound pounds kg kgs kilo kilos mg ml pill
    pills tablet tablets tabs dose doses cups glasses reps sets laps floors blocks walks flares
    sessions exercises kids children people nights naps of
    """
)
_DETERMINERS = _wordset(
    "all this that the a an per each every last next these those most some many few other"
)
_LABELS = _wordset(
    """
    day week wk month lesson module session step number exercise part chapter video episode
    page room track round class unit version iphone ios android covid apt suite ext
    jan feb mar apr jun jul aug sep sept oct nov dec january february march april may june
    july august september october november december
    """
)
_VERDICTS = _wordset(
    "bad good rough tough hard long better worse great ok okay decent terrible awful nice fine"
)
_PAIN_CUES = frozenset({"pain", "pains", "pain's", "score", "level", "rating", "rate", "rated"})
_SOFT_CUES = _wordset(
    """
    a an about around maybe like at is was im i'm its it's approx approximately roughly
    probably prob prolly solid say feeling feel still
    """
)
_CURRENT_CUES = frozenset({"now", "today", "today's", "currently", "atm", "tonight", "presently"})
_LATER_CUES = frozenset({"after", "afterwards", "later", "then"})
_PAST_BEFORE = frozenset({"was", "were", "yesterday", "earlier", "before", "ago", "last", "from"})
_PAST_AFTER = frozenset({"yesterday", "earlier", "before", "ago", "last"})
_CHANGE_LINKS = frozenset({("down", "to"), ("up", "to"), ("dropped", "to"), ("went", "to")})
_RANGE_LINKS = frozenset({("to",), ("or",), ("-",), ("and",)})
_ARROWS = frozenset({"->", "=>", "→"})
# What may follow a bare score mid-message ("a two today"), unlike "took 2 advil".
_SCORE_FOLLOWERS = _wordset(
    """
    today now tonight currently atm right this out or to and ish maybe i im i'm but though
    probably pain yesterday earlier so still again is was over thanks please pls lol tbh
    """
)
_MAX_RANGE_WIDTH = 3.0  # "3-6" is still a range, "2-8" is ambiguous
_CUE_GAP = 3  # words allowed between a "now/today" cue and its number


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int


@dataclass
class _Cand:
    """A number that may be the score; ``value`` is None when it cannot be a valid score."""

    value: float | None
    first: int  # token span, for looking at the words around it
    last: int
    tier: int = 0  # 2: pain cue or "/10"; 1: soft cue ("a 4", "4ish"); 0: bare
    past: bool = False
    current: bool = False
    is_word: bool = False
    flags: set[str] = field(default_factory=set)


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
        pain_score=_pain_score(scan),
        keywords=frozenset(keywords),
        flare_phrases=matched,
        crisis=_detect_crisis(body),
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
        for filler in _FILLERS:
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


# ============================================================================================
# crisis
# ============================================================================================


def _detect_crisis(body: str) -> bool:
    text = " ".join(body.split())
    return any(pattern.search(text) for pattern in _CRISIS_PATTERNS)


# ============================================================================================
# pain score: tokenise, read numbers with their tails, weigh cues, pick one or None
# ============================================================================================


def _pain_score(scan: str) -> float | None:
    tokens = [
        _Tok(m.lastgroup or "", m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(scan)
    ]
    candidates = [c for c in _candidates(tokens, scan) if _keep(c, tokens)]
    return _select(candidates, tokens)


def _is(tokens: Sequence[_Tok], index: int, kind: str, text: str | None = None) -> bool:
    if not 0 <= index < len(tokens) or tokens[index].kind != kind:
        return False
    return text is None or tokens[index].text == text


def _words_at(tokens: Sequence[_Tok], index: int, words: tuple[str, ...]) -> bool:
    return all(_is(tokens, index + k, "word", w) for k, w in enumerate(words))


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
    """A number (digits or a word) at token i, with its tails ("/10", "ish", "and a half")."""
    if i >= len(tokens):
        return None
    tok = tokens[i]
    if tok.kind == "word" and tok.text in _NUMBER_WORDS:
        cand = _Cand(float(_NUMBER_WORDS[tok.text]), i, i, is_word=True)
    elif tok.kind == "num":
        cand = _Cand(_parse_digits(tok.text), i, i)
        _check_glued(cand, tok, scan)
    else:
        return None
    _read_tails(cand, tokens)
    return cand


def _parse_digits(text: str) -> float | None:
    """Digits to a half-step score; lists ("1,2,3"), thousands and long runs are invalid."""
    parts = re.split(r"[.,]", text)
    if len(parts) > 2 or any(len(p) > _MAX_DIGITS for p in parts):
        return None
    frac = parts[1] if len(parts) == 2 else ""
    if "," in text and (len(parts[0]) > 2 or len(frac) != 1):
        return None  # only "6,5" is clearly a decimal comma; "1,000" and "3,45" are not
    if len(frac) > 2:
        return None
    return _to_score(int(parts[0]) * 100 + (int(frac.ljust(2, "0")) if frac else 0))


def _to_score(hundredths: int) -> float | None:
    """Hundredths to the nearest half, exact quarters up; None outside 0..10."""
    if not 0 <= hundredths <= 1000:
        return None
    return float((hundredths * 2 + 50) // 100) / 2


def _check_glued(cand: _Cand, tok: _Tok, scan: str) -> None:
    """Flag digits glued to letters, times, money, labels; a leading "-" makes it negative."""
    before = scan[max(0, tok.start - 2) : tok.start].rjust(2)
    after = scan[tok.end : tok.end + 2]
    letters = _LETTERS_RE.match(scan, tok.end)
    if (letters and letters.group() == "ish") or scan.startswith("-ish", tok.end):
        cand.flags.add("ish")
    elif letters or before[1].isalpha() or (before[1] in "-–" and before[0].isalpha()):
        cand.flags.add("drop")  # 20min, 3rd, 8am, b12, covid-19
    time_like = (after[:1] == ":" and after[1:].isdigit()) or (
        before[1] == ":" and before[0].isdigit()
    )
    if time_like or before[1] in "#$£€¥":
        cand.flags.add("drop")
    if before[1] in "-−" and not before[0].isalnum():
        cand.value = None  # "-2"


def _read_tails(cand: _Cand, tokens: Sequence[_Tok]) -> None:
    j = cand.last + 1
    if "ish" in cand.flags:
        j += 2 if _is(tokens, j, "dash") else 1
    if _words_at(tokens, j, ("and", "a", "half")):
        cand.value = None if cand.value is None else _to_score(round(cand.value * 100) + 50)
        j += 3
    cand.last = _read_denominator(cand, tokens, j) - 1


def _read_denominator(cand: _Cand, tokens: Sequence[_Tok], j: int) -> int:
    """Consume "/10", "out of 10", "of ten"; other fractions and dates are not scores."""
    if _is(tokens, j, "slash") and _is_number_token(tokens, j + 1):
        cand.flags.add("ten" if tokens[j + 1].text in ("10", "ten") else "drop")
        if _is(tokens, j + 2, "slash"):  # 5/10/2024 is a date
            cand.flags.add("drop")
        return j + 2
    for lead in (("out", "of"), ("of",)):
        k = j + len(lead)
        if _words_at(tokens, j, lead) and k < len(tokens) and tokens[k].text in ("10", "ten"):
            cand.flags.add("ten")
            return k + 1
    if _is(tokens, j, "other", "%"):
        cand.flags.add("drop")
    return j


def _is_number_token(tokens: Sequence[_Tok], j: int) -> bool:
    return _is(tokens, j, "num") or (_is(tokens, j, "word") and tokens[j].text in _NUMBER_WORDS)


def _read_range(tokens: Sequence[_Tok], first: _Cand, scan: str) -> tuple[list[_Cand], int]:
    """Merge "3-4", "3 to 4", "between 3 and 4"; split changes like "from 7 to 5"."""
    j = first.last + 1
    link: tuple[str, ...] = ()
    while len(link) < 2 and j < len(tokens) and tokens[j].kind in ("word", "dash", "arrow"):
        link += ("-" if tokens[j].kind == "dash" else tokens[j].text,)
        j += 1
        second = _read_number(tokens, j, scan)
        if second is not None:
            merged = _merge(tokens, first, second, link)
            if merged is not None:
                return merged, second.last + 1
    return [first], first.last + 1


def _merge(
    tokens: Sequence[_Tok], first: _Cand, second: _Cand, link: tuple[str, ...]
) -> list[_Cand] | None:
    before = tokens[first.first - 1].text if first.first else ""
    changing = before == "from" or link in _CHANGE_LINKS or link[-1] in _ARROWS
    if not changing and (link not in _RANGE_LINKS or (link == ("and",) and before != "between")):
        return None
    first.flags |= second.flags & {"drop", "ten"}
    second.flags |= first.flags & {"drop"}
    if changing or (link == ("to",) and _descending(first, second)):
        first.past, second.current = True, True
        return [first, second]
    if first.value in (0, 1) and second.value == 10:
        return []  # "on a scale of 1 to 10" names the scale, not a score
    first.value = _midpoint(first.value, second.value)
    first.last = second.last
    return [first]


def _descending(first: _Cand, second: _Cand) -> bool:
    return first.value is not None and second.value is not None and first.value > second.value


def _midpoint(low: float | None, high: float | None) -> float | None:
    if low is None or high is None or not 0 < high - low <= _MAX_RANGE_WIDTH:
        return low if low is not None and low == high else None
    return _to_score(round((low + high) * 50))


def _keep(cand: _Cand, tokens: Sequence[_Tok]) -> bool:
    """Drop counts and labels, then grade the cues around the number."""
    if "drop" in cand.flags or _is_count(cand, tokens) or _is_labelled(cand, tokens):
        return False
    before = _clause_words(tokens, cand.first, -1)
    after = _clause_words(tokens, cand.last, 1)
    if "ten" in cand.flags or _PAIN_CUES & set(before[:5]) or after[:1] == ["pain"]:
        cand.tier = 2
    elif "ish" in cand.flags or _has_soft_cue(before):
        cand.tier = 1
    cand.past = cand.past or bool(_PAST_BEFORE & set(before[:3]) or _PAST_AFTER & set(after[:1]))
    cand.current = cand.current or bool(_LATER_CUES & set(before))
    if cand.is_word and cand.first == cand.last:
        return _word_number_ok(cand, tokens, before, after)
    return cand.tier > 0 or _bare_ok(cand, tokens, after)


def _has_soft_cue(before: list[str]) -> bool:
    if before[:1] in (["a"], ["an"]):
        before = before[1:]
    return bool(before) and before[0] in _SOFT_CUES


def _clause_words(tokens: Sequence[_Tok], index: int, step: int) -> list[str]:
    """Words beside a token, nearest first, up to a clause break or another number."""
    words: list[str] = []
    j = index + step
    while 0 <= j < len(tokens) and len(words) < 6:
        tok = tokens[j]
        if tok.kind in ("sep", "num") or tok.text in _NUMBER_WORDS or tok.text == "but":
            break
        if tok.kind == "word":
            words.append(tok.text)
        j += step
    return words


def _is_count(cand: _Cand, tokens: Sequence[_Tok]) -> bool:
    """ "6 hours", "3 of the exercises", and "2 bad days" (one adjective before the noun)."""
    after = _clause_words(tokens, cand.last, 1)
    if after[:1] and after[0] in _UNITS:
        return True
    if len(after) < 2 or after[0] in _DETERMINERS or after[0] in _SCORE_FOLLOWERS:
        return False
    return after[1] in _UNITS and after[1].endswith("s")


def _is_labelled(cand: _Cand, tokens: Sequence[_Tok]) -> bool:
    """ "day 3", "week 2", "may 5"; but "bad day 6" is a verdict followed by a score."""
    if not _is(tokens, cand.first - 1, "word") or tokens[cand.first - 1].text not in _LABELS:
        return False
    return not _is(tokens, cand.first - 2, "word") or tokens[cand.first - 2].text not in _VERDICTS


def _bare_ok(cand: _Cand, tokens: Sequence[_Tok], after: list[str]) -> bool:
    """A bare number is a score when it leads the message or nothing unrelated follows it."""
    leads = not any(t.kind == "word" for t in tokens[: cand.first])
    return leads or not after or after[0] in _SCORE_FOLLOWERS or after[0] in _FILLER_WORDS


def _word_number_ok(
    cand: _Cand, tokens: Sequence[_Tok], before: list[str], after: list[str]
) -> bool:
    """Number words are ordinary English ("one of those days"); need a cue or a lone word."""
    if after[:1] and after[0] not in _SCORE_FOLLOWERS:
        return False
    lone = all(
        t.text in _FILLER_WORDS or t.kind not in ("word", "num") or i == cand.first
        for i, t in enumerate(tokens)
    )
    if lone:
        return True
    near = set(before[:2] + after[:2])
    return cand.tier > 0 or cand.past or cand.current or bool(_CURRENT_CUES & near)


def _select(cands: Sequence[_Cand], tokens: Sequence[_Tok]) -> float | None:
    """The current number if a change is described, else the single best-cued one."""
    if len(cands) <= 1:
        return cands[0].value if cands else None
    current = _resolve_current(cands, tokens)
    if current is not None:
        return current.value
    recent = [c for c in cands if not c.past]
    if 0 < len(recent) < len(cands):
        return recent[-1].value
    top = max(c.tier for c in cands)
    values = {c.value for c in cands if c.tier == top}
    return values.pop() if len(values) == 1 else None


def _resolve_current(cands: Sequence[_Cand], tokens: Sequence[_Tok]) -> _Cand | None:
    """The number tied to the last "now/today/currently/at the moment" cue, else a change."""
    present = [c for c in cands if not c.past]
    for cue in reversed(_current_cues(tokens)):
        chosen = _nearest(present, tokens, cue)
        if chosen is not None:
            return chosen
    changed = [c for c in present if c.current]
    return changed[-1] if changed else None


def _current_cues(tokens: Sequence[_Tok]) -> list[int]:
    return [
        i
        for i, tok in enumerate(tokens)
        if (tok.kind == "word" and tok.text in _CURRENT_CUES)
        or (tok.text == "moment" and _words_at(tokens, i - 2, ("at", "the")))
    ]


def _nearest(cands: Sequence[_Cand], tokens: Sequence[_Tok], cue: int) -> _Cand | None:
    """Closest number in the cue's clause; on a tie the later one ("was 7 now 5")."""
    options: list[tuple[int, int, _Cand]] = []
    after = next((c for c in cands if c.first > cue), None)
    before = next((c for c in reversed(cands) if c.last < cue), None)
    if after is not None:
        gap = _gap(tokens, cue, after.first)
        if gap is not None:
            options.append((gap, 0, after))
    if before is not None:
        gap = _gap(tokens, before.last, cue)
        if gap is not None:
            options.append((gap, 1, before))
    options = [o for o in options if o[0] <= _CUE_GAP]
    return min(options, key=lambda o: (o[0], o[1]))[2] if options else None


def _gap(tokens: Sequence[_Tok], left: int, right: int) -> int | None:
    """Words strictly between two token indexes, or None across a clause break."""
    between = tokens[left + 1 : right]
    if any(t.kind == "sep" for t in between):
        return None
    return sum(1 for t in between if t.kind == "word")
