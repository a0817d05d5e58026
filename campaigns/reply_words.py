"""Vocabulary shared by the reply parsers (commands in ``replies``, scores in ``pain_scores``)."""

from __future__ import annotations


def wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


#: Polite words stripped around a command ("stop please", "ok thanks"), never a score's context.
FILLERS: tuple[tuple[str, ...], ...] = (
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
FILLER_WORDS = frozenset(word for filler in FILLERS for word in filler)
