"""The demo's report: what the database says happened to each patient, as one HTML file.

Facts are read back from the database (not from the driver's memory), so the report shows
what the system actually stored and sent. The page is self-contained (inline CSS and SVG, no
scripts, fonts or network) so it can be mailed or opened offline, and every chart has a text
alternative: an SVG title and description plus a table of the same events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from rich import box
from rich.table import Table

from campaigns.charts import Chart, describe
from campaigns.demo_scripts import Pattern
from campaigns.patient_timeline import PatientSummary, Timeline

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
