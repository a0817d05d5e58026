"""The pain score in a reply: tokenise, read numbers with their tails, weigh cues, and pick one
number or ``None`` when it is ambiguous (the decisions are listed in ``replies``)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from campaigns.reply_words import FILLER_WORDS, wordset

_TOKEN_RE = re.compile(
    r"(?P<num>\d+(?:[.,]\d+)*)"
    r"|(?P<word>[^\W\d_]+(?:'[^\W\d_]+)*)"
    r"|(?P<arrow>->|=>|→)"
    r"|(?P<dash>[-–—])"
    r"|(?P<slash>/)"
    r"|(?P<sep>[.!?;,\n])"
    r"|(?P<other>[%#$£€¥:+])"
)
_MAX_DIGITS = 4  # longer digit runs are never scores (and int() of them is not free)
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
_UNITS = wordset(
    """
    min mins minute minutes hr hrs hour hours h sec secs second seconds day days week weeks wk
    wks month months year years yr yrs yo step steps km kms k mile miles mi meter meters metres
    m ft feet am pm o'clock times x percent lb lbs pound pounds kg kgs kilo kilos mg ml pill
    pills tablet tablets tabs dose doses cups glasses reps sets laps floors blocks walks flares
    sessions exercises kids children people nights naps of
    """
)
_DETERMINERS = wordset(
    "all this that the a an per each every last next these those most some many few other"
)
_LABELS = wordset(
    """
    day week wk month lesson module session step number exercise part chapter video episode
    page room track round class unit version iphone ios android covid apt suite ext
    jan feb mar apr jun jul aug sep sept oct nov dec january february march april may june
    july august september october november december
    """
)
_VERDICTS = wordset(
    "bad good rough tough hard long better worse great ok okay decent terrible awful nice fine"
)
_PAIN_CUES = frozenset({"pain", "pains", "pain's", "score", "level", "rating", "rate", "rated"})
_SOFT_CUES = wordset(
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
_SCORE_FOLLOWERS = wordset(
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


def pain_score(scan: str) -> float | None:
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
    return leads or not after or after[0] in _SCORE_FOLLOWERS or after[0] in FILLER_WORDS


def _word_number_ok(
    cand: _Cand, tokens: Sequence[_Tok], before: list[str], after: list[str]
) -> bool:
    """Number words are ordinary English ("one of those days"); need a cue or a lone word."""
    if after[:1] and after[0] not in _SCORE_FOLLOWERS:
        return False
    lone = all(
        t.text in FILLER_WORDS or t.kind not in ("word", "num") or i == cand.first
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
