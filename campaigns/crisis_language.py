"""Crisis language in a patient's reply. Leans towards flagging: a missed alert is worse than a
false one, and a person reviews every alert (the decisions are listed in ``replies``)."""

from __future__ import annotations

import re

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


def mentions_crisis(body: str) -> bool:
    text = " ".join(body.split())
    return any(pattern.search(text) for pattern in _CRISIS_PATTERNS)
