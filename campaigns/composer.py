"""Builds the template context for one patient and renders their next message."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy.orm import Session

from campaigns.claims import DueEnrollment, DuePatient
from campaigns.enrollments import step_for
from campaigns.enums import Channel, Track
from campaigns.models import Enrollment, Patient, ProgramStep, ProgramVersion
from campaigns.pacing import PlannedSend
from campaigns.prefetch import TREND_SCORES
from campaigns.rendering import RenderedMessage, trend_of
from campaigns.reply_queries import recent_scores
from campaigns.runtime import Runtime
from campaigns.tokens import unsubscribe_token


def unsubscribe_url(rt: Runtime, patient_id: int, channel: Channel) -> str:
    token = unsubscribe_token(rt.settings.signing_key, patient_id, channel)
    return f"{rt.settings.public_base_url.rstrip('/')}/unsubscribe/{token}"


def base_context(rt: Runtime, patient: Patient | DuePatient, channel: Channel) -> dict[str, Any]:
    return {
        "patient": {"first_name": patient.first_name},
        "clinic": {"name": rt.settings.clinic_name, "phone": rt.settings.clinic_phone},
        "unsubscribe_url": unsubscribe_url(rt, patient.id, channel),
        "channel": channel.value,
    }


#: Main-track days per loaded version: published versions never change, and scanning every
#: step for every message was a measurable share of the tick.
_MAIN_DAYS: WeakKeyDictionary[ProgramVersion, list[int | None]] = WeakKeyDictionary()


def _main_days(version: ProgramVersion) -> list[int | None]:
    days = _MAIN_DAYS.get(version)
    if days is None:
        days = _MAIN_DAYS[version] = [s.day for s in version.steps if s.track == Track.MAIN]
    return days


def program_day(version: ProgramVersion, enrollment: Enrollment | DueEnrollment) -> int:
    """Flare and resume messages carry the day of the main step the patient is held on."""
    main = _main_days(version)
    index = min(max(enrollment.main_position - 1, 0), len(main) - 1)
    return main[index] or 1 if main else 1


#: The last main-track day per loaded version, for the same reason as ``_MAIN_DAYS``.
_TOTAL_DAYS: WeakKeyDictionary[ProgramVersion, int | None] = WeakKeyDictionary()


def _total_days(version: ProgramVersion) -> int | None:
    if version not in _TOTAL_DAYS:
        _TOTAL_DAYS[version] = max((d or 0 for d in _main_days(version)), default=None)
    return _TOTAL_DAYS[version]


def program_context(version: ProgramVersion, day: int) -> dict[str, Any]:
    total = _total_days(version)
    if total is None:
        total = day
    return {
        "name": version.program.name,
        "day": day,
        "week": (day - 1) // 7 + 1,
        "total_days": total,
    }


def compose_step(
    rt: Runtime,
    session: Session,
    enrollment: Enrollment | DueEnrollment,
    send: PlannedSend,
    channel: Channel,
    scores: list[float] | None = None,
) -> tuple[ProgramStep, RenderedMessage]:
    """``scores``: the patient's recent scores when the caller fetched them for a batch."""
    version = enrollment.version
    step = step_for(version, send.track, send.index)
    day = step.day if step.track == Track.MAIN and step.day else program_day(version, enrollment)
    context = base_context(rt, enrollment.patient, channel)
    context["program"] = program_context(version, day)
    if scores is None:
        scores = recent_scores(session, enrollment.patient_id, limit=TREND_SCORES)
    context["trend"] = trend_of(scores).as_context()
    message = rt.templates.render_step(version.id, version.files, step.key, channel, context)
    return step, message


def compose_system(rt: Runtime, patient: Patient, name: str, channel: Channel) -> RenderedMessage:
    return rt.templates.render_system(name, channel, base_context(rt, patient, channel))
