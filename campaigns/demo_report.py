"""The demo's report: what the database says happened to each patient, as one HTML file.

Facts are read back from the database (not from the driver's memory), so the report shows
what the system actually stored and sent. The page is self-contained (inline CSS and SVG, no
scripts, fonts or network) so it can be mailed or opened offline, and every chart has a text
alternative: an SVG title and description plus a table of the same events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from zoneinfo import ZoneInfo

from rich import box
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.demo_scripts import Pattern
from campaigns.enums import AlertKind, MessagePurpose, MessageStatus, StepKind, Track
from campaigns.models import (
    Alert,
    Enrollment,
    Event,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
    ProgramStep,
)


@dataclass(frozen=True)
class PatientSummary:
    """One row of the summary table; also what ``run_demo`` returns for tests to check."""

    index: int
    patient_id: int
    enrollment_id: int
    name: str
    pattern: str
    timezone: str
    channel: str
    state: str
    main_sent: int
    main_total: int
    flare_sent: int
    resume_sent: int
    flares: int
    alerts: int
    replies: int
    last_score: float | None


@dataclass(frozen=True)
class Mark:
    """Something at a point in program time: ``x`` is the fractional local program day."""

    x: float
    kind: str
    label: str
    value: float = 0.0


@dataclass(frozen=True)
class Timeline:
    summary: PatientSummary
    scores: tuple[Mark, ...]
    flares: tuple[tuple[float, float | None], ...]
    changes: tuple[Mark, ...]
    messages: tuple[Mark, ...]
    #: (program day, local time, what, detail), oldest first.
    log: tuple[tuple[int, datetime, str, str], ...]


# --- reading the database ------------------------------------------------------------------

CHANGE_KINDS = (
    "flare-start",
    "flare-end",
    "pause",
    "resume",
    "slower",
    "opt-out",
    "opt-in",
    "complete",
    "long-flare-alert",
)
#: "resume" is both a pacing event (un-pause) and a message kind (welcome back): tell apart.
RENAMED = {"resume": "resumed"}


@dataclass(frozen=True)
class _Clock:
    tz: ZoneInfo
    day1: date

    def x(self, at: datetime) -> float:
        """Program day as a number: day 1 spans [1, 2) in the patient's own wall-clock time."""
        local = at.astimezone(self.tz).replace(tzinfo=None)
        midnight = datetime.combine(self.day1, datetime.min.time())
        return (local - midnight).total_seconds() / 86400 + 1

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.tz)


@dataclass(frozen=True)
class _Facts:
    """The rows one patient left behind, oldest first."""

    patient: Patient
    enrollment: Enrollment
    steps: dict[int, ProgramStep]
    sent: Sequence[OutboxMessage]
    replies: Sequence[InboundReply]
    scores: Sequence[tuple[float, datetime, str]]
    events: Sequence[Event]
    alerts: Sequence[Alert]


def _read(session: Session, enrollment_id: int) -> _Facts:
    enrollment = session.get_one(Enrollment, enrollment_id)
    pid = enrollment.patient_id
    return _Facts(
        patient=session.get_one(Patient, pid),
        enrollment=enrollment,
        steps={s.id: s for s in enrollment.version.steps},
        sent=session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.patient_id == pid, OutboxMessage.status == MessageStatus.SENT)
            .order_by(OutboxMessage.sent_at, OutboxMessage.id)
        ).all(),
        replies=session.scalars(
            select(InboundReply)
            .where(InboundReply.patient_id == pid)
            .order_by(InboundReply.received_at, InboundReply.id)
        ).all(),
        scores=session.execute(
            select(PainReport.score, PainReport.reported_at, InboundReply.raw_text)
            .join(InboundReply, PainReport.reply_id == InboundReply.id)
            .where(PainReport.patient_id == pid)
            .order_by(PainReport.reported_at)
        )
        .tuples()
        .all(),
        events=session.scalars(
            select(Event).where(Event.enrollment_id == enrollment.id).order_by(Event.id)
        ).all(),
        alerts=session.scalars(
            select(Alert).where(Alert.patient_id == pid).order_by(Alert.created_at)
        ).all(),
    )


def collect(session: Session, index: int, pattern: str, enrollment_id: int, day1: date) -> Timeline:
    """Everything stored about one enrolled patient, placed on their program-day axis."""
    facts = _read(session, enrollment_id)
    clock = _Clock(ZoneInfo(facts.patient.timezone), day1)
    messages = [_message_mark(clock, row, facts.steps) for row in facts.sent]
    changes = [
        Mark(clock.x(e.at), RENAMED.get(e.kind, e.kind), e.reason)
        for e in facts.events
        if e.kind in CHANGE_KINDS
    ]
    # The long-flare alert is already marked by its pacing event; other alerts are not.
    changes += [
        Mark(clock.x(a.created_at), "alert", f"staff alert: {a.summary}")
        for a in facts.alerts
        if a.kind != AlertKind.LONG_FLARE
    ]
    return Timeline(
        summary=_summary(index, pattern, facts, [m.kind for m in messages]),
        scores=tuple(
            Mark(clock.x(at), "score", f"{score:g}/10: “{text}”", score)
            for score, at, text in facts.scores
        ),
        flares=_flare_spans(changes),
        changes=tuple(changes),
        messages=tuple(messages),
        log=tuple(
            (int(clock.x(at)), clock.local(at), kind, text) for at, kind, text in _log(facts)
        ),
    )


def _summary(index: int, pattern: str, facts: _Facts, kinds: list[str]) -> PatientSummary:
    patient, enrollment = facts.patient, facts.enrollment
    return PatientSummary(
        index=index,
        patient_id=patient.id,
        enrollment_id=enrollment.id,
        name=patient.display_name,
        pattern=pattern,
        timezone=patient.timezone,
        channel=patient.preferred_channel.value,
        state=enrollment.state.value,
        main_sent=kinds.count("main"),
        main_total=sum(1 for s in facts.steps.values() if s.track == Track.MAIN),
        flare_sent=kinds.count("flare"),
        resume_sent=kinds.count("resume"),
        flares=sum(1 for e in facts.events if e.kind == "flare-start"),
        alerts=len(facts.alerts),
        replies=len(facts.replies),
        last_score=facts.scores[-1][0] if facts.scores else None,
    )


def _log(facts: _Facts) -> list[tuple[datetime, str, str]]:
    """Pacing decisions, messages, replies and alerts interleaved in time."""
    log = [(e.at, e.kind, e.reason) for e in facts.events if not e.kind.startswith("send-")]
    log += [
        (r.sent_at, f"sent {r.channel.value}", _message_title(r, facts.steps))
        for r in facts.sent
        if r.sent_at is not None
    ]
    log += [(r.received_at, "reply", r.raw_text) for r in facts.replies]
    log += [(a.created_at, f"alert ({a.kind.value})", a.summary) for a in facts.alerts]
    return sorted(log, key=_first)


def _first(item: tuple[datetime, str, str]) -> datetime:
    return item[0]


def _message_title(row: OutboxMessage, steps: dict[int, ProgramStep]) -> str:
    step = steps.get(row.step_id) if row.step_id is not None else None
    if step is not None:
        return step.title
    return f"{row.purpose.value}: {row.subject or row.body_text}"


def _message_mark(clock: _Clock, row: OutboxMessage, steps: dict[int, ProgramStep]) -> Mark:
    step = steps.get(row.step_id) if row.step_id is not None else None
    if row.purpose != MessagePurpose.PROGRAM or step is None:
        kind = "auto"
    elif step.kind == StepKind.RESUME:
        kind = "resume"
    else:
        kind = step.track.value
    assert row.sent_at is not None
    return Mark(clock.x(row.sent_at), kind, _message_title(row, steps))


def _flare_spans(changes: Iterable[Mark]) -> tuple[tuple[float, float | None], ...]:
    """Pair each flare start with the next flare end; an unfinished flare stays open."""
    spans: list[tuple[float, float | None]] = []
    start: float | None = None
    for mark in sorted(changes, key=lambda m: m.x):
        if mark.kind == "flare-start" and start is None:
            start = mark.x
        elif mark.kind == "flare-end" and start is not None:
            spans.append((start, mark.x))
            start = None
    if start is not None:
        spans.append((start, None))
    return tuple(spans)


# --- drawing -------------------------------------------------------------------------------

#: kind -> (legend label, shape, colour). Okabe-Ito colours, and every kind its own shape.
STYLES: dict[str, tuple[str, str, str]] = {
    "score": ("Pain score (0-10)", "circle", "#222222"),
    "main": ("Main-track message", "circle", "#0072B2"),
    "flare": ("Flare-support message", "triangle-up", "#D55E00"),
    "resume": ("Welcome-back message", "diamond", "#009E73"),
    "auto": ("Automatic reply", "ring", "#666666"),
    "flare-start": ("Flare starts", "star", "#D55E00"),
    "flare-end": ("Flare ends", "triangle-down", "#009E73"),
    "pause": ("Paused", "square", "#CC79A7"),
    "resumed": ("Resumed", "triangle-right", "#CC79A7"),
    "slower": ("Slower pace", "plus", "#B07800"),
    "opt-out": ("Opted out (STOP)", "cross", "#000000"),
    "opt-in": ("Opted back in", "hexagon", "#000000"),
    "complete": ("Completed", "check", "#009E73"),
    "long-flare-alert": ("Staff alert", "warning", "#000000"),
    "alert": ("Staff alert", "warning", "#000000"),
}
LEGEND_ROWS = (
    ("score", "flare-period", "main", "flare", "resume"),
    ("auto", "flare-start", "flare-end", "pause", "resumed"),
    ("slower", "opt-out", "opt-in", "complete", "long-flare-alert"),
)
LEGEND_X, LEGEND_COLUMN = 24, 150
W, L, R = 780, 56, 760
TOP_LANE, PLOT_TOP, PLOT_BOTTOM, MSG_LANE, AUTO_LANE, AXIS_Y, LEGEND_Y = (
    20,
    38,
    208,
    226,
    238,
    258,
    292,
)
H = LEGEND_Y + 22 * len(LEGEND_ROWS)


def shape(name: str, x: float, y: float, colour: str, r: float = 5.0) -> str:
    """One marker; shapes differ as well as colours, so nothing relies on colour alone."""
    fill = f'fill="{colour}" stroke="#fff" stroke-width="0.8"'
    line = f'fill="none" stroke="{colour}" stroke-width="2.2"'
    pts: Sequence[tuple[float, float]]
    if name == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r * 0.8:.1f}" {fill}/>'
    if name == "ring":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r * 0.7:.1f}" {line}/>'
    if name == "square":
        return (
            f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" '
            f'height="{2 * r:.1f}" {fill}/>'
        )
    if name in ("plus", "cross", "check"):
        d = {
            "plus": f"M{x - r},{y}H{x + r}M{x},{y - r}V{y + r}",
            "cross": f"M{x - r},{y - r}L{x + r},{y + r}M{x - r},{y + r}L{x + r},{y - r}",
            "check": f"M{x - r},{y}L{x - r / 3},{y + r * 0.8}L{x + r},{y - r}",
        }[name]
        return f'<path d="{d}" {line}/>'
    if name == "warning":
        tri = _poly([(x, y - r * 1.3), (x + r * 1.2, y + r), (x - r * 1.2, y + r)])
        return (
            f'<polygon points="{tri}" fill="#F0E442" stroke="#000" stroke-width="1"/>'
            f'<text x="{x:.1f}" y="{y + r * 0.8:.1f}" class="bang">!</text>'
        )
    pts = _points(name, x, y, r)
    return f'<polygon points="{_poly(pts)}" {fill}/>'


def _points(name: str, x: float, y: float, r: float) -> list[tuple[float, float]]:
    if name == "star":
        return [
            (
                x + (r * 1.3 if k % 2 == 0 else r * 0.55) * math.sin(k * math.pi / 5),
                y - (r * 1.3 if k % 2 == 0 else r * 0.55) * math.cos(k * math.pi / 5),
            )
            for k in range(10)
        ]
    if name == "hexagon":
        return [
            (x + r * math.cos(k * math.pi / 3), y + r * math.sin(k * math.pi / 3)) for k in range(6)
        ]
    return {
        "diamond": [(x, y - r * 1.2), (x + r, y), (x, y + r * 1.2), (x - r, y)],
        "triangle-up": [(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)],
        "triangle-down": [(x, y + r), (x + r, y - r * 0.8), (x - r, y - r * 0.8)],
        "triangle-right": [(x + r, y), (x - r * 0.8, y - r), (x - r * 0.8, y + r)],
    }[name]


def _poly(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


class Chart:
    """One patient's chart: x is the program day, y the pain score."""

    def __init__(self, timeline: Timeline, days: int, uid: int) -> None:
        self.t, self.days, self.uid = timeline, days, uid

    def sx(self, day: float) -> float:
        day = min(max(day, 1.0), self.days + 1.0)
        return L + (R - L) * (day - 1) / self.days

    @staticmethod
    def sy(score: float) -> float:
        return PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * score / 10

    def svg(self) -> str:
        s = self.t.summary
        return "\n".join(
            [
                f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
                f'aria-labelledby="chart-{self.uid}-title chart-{self.uid}-desc">',
                f'<title id="chart-{self.uid}-title">Pain scores and messages for '
                f"{escape(s.name)} over {self.days} program days</title>",
                f'<desc id="chart-{self.uid}-desc">{escape(describe(self.t))}</desc>',
                f'<defs><pattern id="hatch-{self.uid}" width="6" height="6" '
                'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
                '<rect width="6" height="6" fill="#FBE3D6"/>'
                '<line x1="0" y1="0" x2="0" y2="6" stroke="#E8A07A" stroke-width="2"/>'
                "</pattern></defs>",
                *self._flares(),
                *self._grid(),
                *self._changes(),
                *self._scores(),
                *self._messages(),
                *self._legend(),
                "</svg>",
            ]
        )

    def _flares(self) -> list[str]:
        out = []
        for start, end in self.t.flares:
            x0, x1 = self.sx(start), self.sx(end if end is not None else self.days + 1)
            label = f"Flare from day {start:.1f} to " + (f"day {end:.1f}" if end else "the end")
            out.append(
                f'<rect class="flare-period" x="{x0:.1f}" y="{PLOT_TOP}" '
                f'width="{max(x1 - x0, 1):.1f}" height="{PLOT_BOTTOM - PLOT_TOP}" '
                f'fill="url(#hatch-{self.uid})"><title>{label}</title></rect>'
            )
        return out

    def _grid(self) -> list[str]:
        out = [
            f'<text x="{L - 8}" y="{TOP_LANE + 4}" class="lane">changes</text>',
            f'<text x="{L - 8}" y="{MSG_LANE + 4}" class="lane">sent</text>',
        ]
        for score in range(0, 11, 2):
            y = self.sy(score)
            out.append(
                f'<line x1="{L}" x2="{R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                f'<text x="{L - 8}" y="{y + 4:.1f}" class="tick">{score}</text>'
            )
        for day in range(1, self.days + 2, 7):
            x = self.sx(day)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PLOT_TOP}" y2="{PLOT_BOTTOM}" '
                f'class="grid"/>'
                f'<text x="{x:.1f}" y="{AXIS_Y}" class="tick mid">{day}</text>'
            )
        out.append(
            f'<text x="{(L + R) / 2}" y="{AXIS_Y + 14}" class="tick mid">program day '
            "(patient's local time)</text>"
        )
        out.append(
            f'<text x="14" y="{(PLOT_TOP + PLOT_BOTTOM) / 2}" class="tick mid" '
            f'transform="rotate(-90 14 {(PLOT_TOP + PLOT_BOTTOM) / 2})">pain (0-10)</text>'
        )
        return out

    def _changes(self) -> list[str]:
        out = []
        for m in self.t.changes:
            label, name, colour = STYLES[m.kind]
            x = self.sx(m.x)
            out.append(
                f'<g class="change"><title>{escape(label)}, day {m.x:.1f}: '
                f"{escape(m.label)}</title>"
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP_LANE + 6}" y2="{PLOT_BOTTOM}" '
                f'stroke="{colour}" stroke-dasharray="3 3"/>'
                f"{shape(name, x, TOP_LANE, colour)}</g>"
            )
        return out

    def _scores(self) -> list[str]:
        pts = [(self.sx(m.x), self.sy(m.value)) for m in self.t.scores]
        out = (
            [f'<polyline points="{_poly(pts)}" class="pain" fill="none"/>'] if len(pts) > 1 else []
        )
        for (x, y), m in zip(pts, self.t.scores, strict=True):
            out.append(
                f"<g><title>Day {m.x:.1f}: {escape(m.label)}</title>"
                f"{shape('circle', x, y, STYLES['score'][2], 4)}</g>"
            )
        return out

    def _messages(self) -> list[str]:
        out = []
        for m in self.t.messages:
            label, name, colour = STYLES[m.kind]
            y = AUTO_LANE if m.kind == "auto" else MSG_LANE  # answers sit under what they answer
            out.append(
                f"<g><title>{escape(label)}, day {m.x:.1f}: {escape(m.label)}</title>"
                f"{shape(name, self.sx(m.x), y, colour, 4.5)}</g>"
            )
        return out

    def _legend(self) -> list[str]:
        out = ['<g class="legend">']
        for row, kinds in enumerate(LEGEND_ROWS):
            y = LEGEND_Y + 22 * row
            for col, kind in enumerate(kinds):
                x = LEGEND_X + col * LEGEND_COLUMN
                if kind == "flare-period":
                    out.append(
                        f'<rect class="flare-key" x="{x - 6}" y="{y - 6}" width="12" '
                        f'height="12" fill="url(#hatch-{self.uid})"/>'
                    )
                    label = "Flare period"
                else:
                    label, name, colour = STYLES[kind]
                    out.append(shape(name, x, y, colour, 5))
                out.append(f'<text x="{x + 10}" y="{y + 4}" class="tick">{label}</text>')
        return [*out, "</g>"]


def describe(t: Timeline) -> str:
    s = t.summary
    last = f"{s.last_score:g}" if s.last_score is not None else "none"
    return (
        f"{s.pattern}: {len(t.scores)} pain scores, last {last}; {s.main_sent} of "
        f"{s.main_total} main steps, {s.flare_sent} flare-support messages, {s.flares} "
        f"flare(s), {s.alerts} staff alert(s); final state {s.state}."
    )


# --- the page ------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#fafafa;line-height:1.45}
main{max-width:60rem;margin:0 auto;padding:1.5rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;background:#fff}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1.5rem 0}
svg.chart{width:100%;height:auto;display:block}
.grid{stroke:#e4e4e4}.tick{font-size:11px;fill:#444}.mid{text-anchor:middle}
.lane{font-size:10px;fill:#666;text-anchor:end}
.pain{fill:none;stroke:#222;stroke-width:1.5}
.bang{font-size:9px;font-weight:bold;text-anchor:middle}
.log{max-height:24rem;overflow:auto}
"""


def render_html(timelines: Sequence[Timeline], *, days: int, intro: Sequence[str]) -> str:
    """The whole page; every string that came from a patient or the database is escaped."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Campaigns demo: simulated patients</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>Campaigns demo: simulated patients</h1>",
        *(f"<p>{escape(p)}</p>" for p in intro),
        "<h2>Summary</h2>",
        summary_table(timelines),
        "<h2>Patients</h2>",
    ]
    for uid, t in enumerate(timelines):
        parts.append(_section(t, days, uid))
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


SUMMARY_HEAD = (
    "Patient",
    "Pattern",
    "Time zone",
    "Channel",
    "Final state",
    "Main steps",
    "Flare msgs",
    "Flares",
    "Alerts",
    "Replies",
    "Last score",
)


def summary_cells(s: PatientSummary) -> tuple[str, ...]:
    last = f"{s.last_score:g}" if s.last_score is not None else "-"
    return (
        s.name,
        s.pattern,
        s.timezone,
        s.channel,
        s.state,
        f"{s.main_sent}/{s.main_total}",
        str(s.flare_sent),
        str(s.flares),
        str(s.alerts),
        str(s.replies),
        last,
    )


def summary_table(timelines: Sequence[Timeline]) -> str:
    head = "".join(f'<th scope="col">{h}</th>' for h in SUMMARY_HEAD)
    rows = []
    for uid, t in enumerate(timelines):
        name, *rest = summary_cells(t.summary)
        cells = "".join(
            f'<td class="num">{escape(c)}</td>' if i >= 4 else f"<td>{escape(c)}</td>"
            for i, c in enumerate(rest)
        )
        rows.append(
            f'<tr><th scope="row"><a href="#patient-{uid}">{escape(name)}</a></th>{cells}</tr>'
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _section(t: Timeline, days: int, uid: int) -> str:
    s = t.summary
    log_rows = "".join(
        f"<tr><td>{day}</td><td>{at:%a %d %b %H:%M}</td><td>{escape(kind)}</td>"
        f"<td>{escape(text)}</td></tr>"
        for day, at, kind, text in t.log
    )
    return (
        f'<section id="patient-{uid}" aria-labelledby="patient-{uid}-h">'
        f'<h3 id="patient-{uid}-h">{escape(s.name)}: {escape(s.pattern)}</h3>'
        f"<p>{escape(s.timezone)}, by {escape(s.channel)}. {escape(describe(t))}</p>"
        f"{Chart(t, days, uid).svg()}"
        f"<details><summary>Everything that happened ({len(t.log)} entries, local time)"
        f'</summary><div class="log"><table><thead><tr><th scope="col">Day</th>'
        f'<th scope="col">Local time</th>'
        f'<th scope="col">What</th><th scope="col">Detail</th></tr></thead>'
        f"<tbody>{log_rows}</tbody></table></div></details></section>"
    )


def intro(patients: int, days: int, seed: int, start: datetime) -> list[str]:
    """The report's opening paragraphs: what was simulated and how to read the charts."""
    return [
        f"{patients} fictional patients on the bundled program, simulated for {days} days from "
        f"{start:%A %d %B %Y} (UTC) with seed {seed}. Names, numbers and replies are "
        "invented; every message went through the real scheduler, pacing engine, templates "
        "and outbox into files, and every reply through the real parser.",
        "Each patient follows a scripted reply pattern (steady improvement, a mid-program "
        "flare, a long flare that alerts staff, an opt-out, or slowing down and pausing). They "
        "answer the messages they actually receive, mostly in the evening, in their own "
        "time zone; the clocks change in New York, London and Sydney during these weeks.",
        "In each chart the line is the pain score (0-10) against the program day in the "
        "patient's local time. Hatched bands are flares. The top lane marks pacing changes "
        "and staff alerts; the bottom lane marks every message sent. Hover a marker for "
        "details, or open the table under each chart for the full log.",
    ]


# --- the terminal --------------------------------------------------------------------------

#: (header, minimum width): short so the table fits a terminal; the HTML uses long headers.
CONSOLE_HEAD = (
    ("patient", 7),
    ("pattern", 10),
    ("channel", None),
    ("state", None),
    ("main", None),
    ("flare\nmsgs", None),
    ("flares", None),
    ("alerts", None),
    ("last\nscore", None),
)


def console_table(timelines: Sequence[Timeline]) -> Table:
    """The summary for the terminal: names and numbers never wrap mid-word."""
    table = Table(
        title="Demo patients",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for i, (head, min_width) in enumerate(CONSOLE_HEAD):
        table.add_column(
            head, justify="right" if i >= 4 else "left", no_wrap=i >= 2, min_width=min_width
        )
    for t in timelines:
        name, pattern, _zone, *rest, _replies, last = summary_cells(t.summary)
        short = next((p.short for p in Pattern if p.value == pattern), pattern)
        # 80 columns: the HTML report has full names, zones and reply counts
        table.add_row(name.split()[0], short, *rest, last)
    return table
