"""A patient's pain chart for the staff page, drawn by the same code as the demo report.

The demo report already reads a patient's scores, flares, pacing changes and messages back
from the database and draws them as an accessible inline SVG; staff see the identical
picture, so one drawing is kept (in ``demo_report``) and reused here.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from campaigns.demo_report import Chart, collect
from campaigns.enrollments import shape_of
from campaigns.models import Enrollment

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
