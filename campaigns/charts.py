"""The pain chart: an accessible inline SVG of one enrollment's timeline, drawn the same
way for the staff patient page and the demo report."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from campaigns.enrollments import shape_of
from campaigns.models import (
    Enrollment,
)
from campaigns.patient_timeline import Timeline, collect

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


#: The inline styles the chart's classes need (the demo report inlines the same rules).
CHART_CSS = """
svg.chart{width:100%;height:auto;display:block}
svg.chart .grid{stroke:#e4e4e4}svg.chart .tick{font-size:11px;fill:#444}
svg.chart .mid{text-anchor:middle}svg.chart .lane{font-size:10px;fill:#666;text-anchor:end}
svg.chart .pain{fill:none;stroke:#222;stroke-width:1.5}
svg.chart .bang{font-size:9px;font-weight:bold;text-anchor:middle}
"""


def pain_chart_svg(session: Session, enrollment: Enrollment, *, now: datetime) -> str:
    """The SVG for one enrollment, on its program-day axis in the patient's local time."""
    tz = ZoneInfo(enrollment.patient.timezone)
    day1 = enrollment.enrolled_at.astimezone(tz).date()
    planned = shape_of(enrollment.version).main_steps * max(enrollment.cadence_days, 1)
    elapsed = (now.astimezone(tz).date() - day1).days + 1
    days = max(planned, elapsed, 7)
    timeline = collect(session, 0, enrollment.version.program.name, enrollment.id, day1)
    return Chart(timeline, days, enrollment.id).svg()
