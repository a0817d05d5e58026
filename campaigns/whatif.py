"""What if: a program's pacing over a chosen pattern of replies, as a calendar admins read
before publishing a rule change. Runs the real pacing engine through the simulator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from campaigns.drafts import get_version, peek_draft, spec_of, versions_of
from campaigns.enrollments import rules_of as version_rules
from campaigns.enrollments import shape_of as version_shape
from campaigns.enums import Track
from campaigns.models import Program, ProgramVersion
from campaigns.pacing import PacingRules, PlannedSend, ProgramShape
from campaigns.programs import (
    ProgramSpec,
)
from campaigns.programs import (
    shape_of as spec_shape,
)
from campaigns.replies import ParsedReply, parse_reply
from campaigns.sendwindow import PatientClock, SendWindow
from campaigns.simulation import simulate

# --- what if: a program's pacing over a pattern of replies -----------------------------------

PATTERNS = {
    "steady": "Replies 4/10 every day",
    "mid-flare": "Steady, then a flare halfway through that settles after a few days",
    "long-flare": "A flare from day 3 that does not settle for two weeks",
}


@dataclass(frozen=True)
class CalendarEntry:
    on: date
    kind: str  # "main", "flare", "resume", "reply" or "alert"
    key: str | None
    title: str


def replies_for(
    pattern: str, start: datetime, days: int, main_days: int
) -> list[tuple[datetime, ParsedReply]]:
    """A reply each afternoon, its words chosen by ``pattern``."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown reply pattern {pattern!r}; use one of {', '.join(PATTERNS)}")
    flare_from, flare_days = {
        "steady": (days + 1, 0),
        "mid-flare": (max(main_days // 2, 1), 3),
        "long-flare": (2, 14),
    }[pattern]
    out = []
    for day in range(days):
        text = "flare 9" if flare_from <= day < flare_from + flare_days else "4"
        out.append((start + timedelta(days=day, hours=15), parse_reply(text)))
    return out


def what_if(
    steps: Mapping[Track, list[tuple[str, str]]],
    rules: PacingRules,
    shape: ProgramShape,
    pattern: str,
    *,
    start: date,
) -> list[CalendarEntry]:
    """Simulate one patient (10:00 UTC send time) and lay out what reaches them, day by day."""
    begin = datetime.combine(start, time(0, 0), tzinfo=UTC)
    days = shape.main_steps * rules.cadence_days + 21
    clock = PatientClock(ZoneInfo("UTC"), time(10, 0), SendWindow())
    replies = replies_for(pattern, begin, days, shape.main_steps)
    result = simulate(rules, shape, clock, start=begin, days=days, replies=replies)
    entries = [_sent(t.send, steps) for t in result.sends]
    entries += [
        CalendarEntry(at.date(), "reply", None, r.raw)
        for at, r in replies
        if result.completed_at is None or at < result.completed_at
    ]
    entries += [CalendarEntry(a.at.date(), "alert", None, a.alert.summary) for a in result.alerts]
    order = {"main": 0, "flare": 0, "resume": 0, "reply": 1, "alert": 2}
    return sorted(entries, key=lambda e: (e.on, order[e.kind]))


def _sent(send: PlannedSend, steps: Mapping[Track, list[tuple[str, str]]]) -> CalendarEntry:
    track = steps[send.track]
    key, title = track[send.index] if send.index < len(track) else (None, "?")
    kind = "resume" if send.resume else send.track.value
    return CalendarEntry(send.local_date, kind, key, title)


def outline_of_spec(spec: ProgramSpec) -> dict[Track, list[tuple[str, str]]]:
    return {t: [(s.key, s.title) for s in spec.ordered(t)] for t in Track}


def outline_of_version(version: ProgramVersion) -> dict[Track, list[tuple[str, str]]]:
    ordered = sorted(version.steps, key=lambda s: s.position)
    return {t: [(s.key, s.title) for s in ordered if s.track == t] for t in Track}


def calendar_for(
    session: Session, program: Program, source: str, pattern: str, *, start: date
) -> list[CalendarEntry]:
    """What-if for the draft (``"draft"``), the latest version or a version number."""
    if source == "draft":
        spec = spec_of(peek_draft(session, program))
        return what_if(outline_of_spec(spec), spec.rules(), spec_shape(spec), pattern, start=start)
    if source == "latest":
        versions = versions_of(session, program)
        if not versions:
            raise LookupError(f"{program.slug} has no published version")
        version = versions[0]
    elif source.isdigit():
        version = get_version(session, program, int(source))
    else:
        raise ValueError("source must be 'draft', 'latest' or a version number")
    rules, shape = version_rules(version), version_shape(version)
    return what_if(outline_of_version(version), rules, shape, pattern, start=start)
