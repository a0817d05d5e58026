"""What staff do to patients: enrol them, pause/resume/withdraw them and move them to another
version. Every change is audited with before and after (what staff see is in
``campaigns.patient_views``).

The web pages, the JSON API and the CSV import all go through these functions, so a rule
(consent for the chosen channel, no shared phone numbers) holds whichever door is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import pacing
from campaigns.audit import audit
from campaigns.enrollments import apply_outcome, enroll, pacing_state
from campaigns.enums import (
    Channel,
    EnrollmentState,
)
from campaigns.models import (
    Enrollment,
    Patient,
    Program,
    ProgramVersion,
    User,
)
from campaigns.patients import (
    PatientInput,
    create_patient,
    field_of,
    missing_consent,
    normalize_phone,
    record_consent,
)
from campaigns.sendwindow import SendWindow
from campaigns.version_moves import landing, move

S = EnrollmentState


class Enrolment(PatientInput):
    """A patient plus the program (by slug) they start on."""

    program: str = Field(min_length=1, max_length=64)


class EnrolmentRejected(ValueError):
    """Input that cannot be enrolled; ``errors`` maps each field to why."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


class ActionRefused(ValueError):
    """A patient or alert action that does not apply in the current state."""


# --- enrolling -----------------------------------------------------------------------------


def validate_enrolment(raw: Mapping[str, Any]) -> Enrolment:
    """Parse and check input without touching the database; all field errors at once."""
    errors: dict[str, str] = {}
    try:
        data: Enrolment | None = Enrolment.model_validate(dict(raw))
    except ValidationError as exc:
        data = None
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "missing" or (err["type"] == "string_too_short" and not err["input"]):
                message = "this field is required"
            errors.setdefault(field_of(tuple(err["loc"]), message), message)
    phone = raw.get("phone")
    if "phone" not in errors and isinstance(phone, str) and phone.strip():
        try:
            normalize_phone(phone.strip())
        except ValueError as exc:
            errors["phone"] = str(exc)
    if data is not None and not errors and (missing := missing_consent(data)):
        errors[missing[0]] = missing[1]
    if errors or data is None:
        raise EnrolmentRejected(errors or {"form": "invalid input"})
    return data


def latest_version(session: Session, slug: str) -> ProgramVersion | None:
    return session.scalar(
        select(ProgramVersion)
        .join(Program)
        .where(Program.slug == slug)
        .order_by(ProgramVersion.version.desc())
        .limit(1)
    )


def check_duplicates(session: Session, data: Enrolment) -> dict[str, str]:
    """Replies are matched to patients by phone and email, so two patients cannot share one."""
    errors: dict[str, str] = {}
    checks = (
        ("external_ref", data.external_ref, lambda v: Patient.external_ref == v),
        ("phone", data.phone, Patient.has_phone),
        ("email", data.email, Patient.has_email),
    )
    for name, value, matches in checks:
        if value and session.scalar(select(Patient.id).where(matches(value)).limit(1)):
            errors[name] = f"another patient already has this {name.replace('_', ' ')}"
    return errors


def enrol(
    session: Session,
    data: Enrolment,
    user: User,
    window: SendWindow,
    *,
    source: str,
    now: datetime,
) -> Enrollment:
    """Create the patient, record consent (who, when, how) and enrol: all or nothing.

    Every check runs before the first write, and the caller's transaction commits the lot.
    """
    version = latest_version(session, data.program)
    errors = check_duplicates(session, data)
    if version is None:
        errors["program"] = f"there is no program {data.program!r}"
    if errors:
        raise EnrolmentRejected(errors)
    assert version is not None
    basics = data.model_copy(update={"consent_sms": False, "consent_email": False})
    patient = create_patient(session, basics, by=user.email, now=now)
    for channel, granted in ((Channel.SMS, data.consent_sms), (Channel.EMAIL, data.consent_email)):
        if granted:
            record_consent(
                session, patient, channel, granted=True, method=source, by=user.email, now=now
            )
    enrollment = enroll(session, patient, version, window, by=user.email, now=now)
    audit(
        session,
        user,
        "enrol",
        "patient",
        patient.id,
        now=now,
        after={
            "enrollment_id": enrollment.id,
            "program": data.program,
            "version": version.version,
            "channel": data.channel.value,
            "consent_sms": data.consent_sms,
            "consent_email": data.consent_email,
            "source": source,
        },
    )
    return enrollment


# --- patient actions -----------------------------------------------------------------------


def current_enrollment(session: Session, patient_id: int) -> Enrollment | None:
    """The newest enrollment is the one staff act on."""
    return session.scalar(
        select(Enrollment)
        .where(Enrollment.patient_id == patient_id)
        .order_by(Enrollment.id.desc())
        .limit(1)
    )


def snapshot(enrollment: Enrollment) -> dict[str, Any]:
    """The audit's before/after of an enrollment."""
    due = enrollment.next_due_at
    return {
        "state": enrollment.state.value,
        "version_id": enrollment.version_id,
        "main_position": enrollment.main_position,
        "next_due_at": due.isoformat() if due else None,
    }


def _act(
    session: Session,
    enrollment: Enrollment,
    user: User,
    action: str,
    outcome: pacing.Outcome,
    *,
    now: datetime,
) -> Enrollment:
    if not outcome.events:
        raise ActionRefused(f"cannot {action} an enrollment that is {enrollment.state.value}")
    before = snapshot(enrollment)
    apply_outcome(session, enrollment, outcome, actor=user.email, now=now)
    session.flush()
    audit(
        session, user, action, "enrollment", enrollment.id, now=now, before=before,
        after=snapshot(enrollment),
    )  # fmt: skip
    return enrollment


def _reason(action: str, user: User, note: str) -> str:
    return f"{action} by staff ({user.email})" + (f": {note}" if note else "")


def pause(
    session: Session, enrollment: Enrollment, user: User, *, note: str = "", now: datetime
) -> Enrollment:
    outcome = pacing.pause(pacing_state(enrollment), _reason("paused", user, note))
    return _act(session, enrollment, user, "pause", outcome, now=now)


def resume(
    session: Session, enrollment: Enrollment, user: User, *, note: str = "", now: datetime
) -> Enrollment:
    outcome = pacing.resume(pacing_state(enrollment), _reason("resumed", user, note), now=now)
    return _act(session, enrollment, user, "resume", outcome, now=now)


def withdraw(
    session: Session, enrollment: Enrollment, user: User, *, note: str = "", now: datetime
) -> Enrollment:
    outcome = pacing.withdraw(pacing_state(enrollment), _reason("withdrawn", user, note))
    return _act(session, enrollment, user, "withdraw", outcome, now=now)


@dataclass(frozen=True)
class MovePreview:
    """Where a patient lands on another version: same main position, clamped to its length."""

    from_version: int
    to_version: int
    to_version_id: int
    position: int
    main_steps: int
    next_step: str | None

    @property
    def clamped(self) -> bool:
        return self.position >= self.main_steps


def other_versions(session: Session, enrollment: Enrollment) -> list[ProgramVersion]:
    return list(
        session.scalars(
            select(ProgramVersion)
            .where(
                ProgramVersion.program_id == enrollment.version.program_id,
                ProgramVersion.id != enrollment.version_id,
            )
            .order_by(ProgramVersion.version)
        )
    )


def preview_move(session: Session, enrollment: Enrollment, version_id: int) -> MovePreview:
    target = session.get(ProgramVersion, version_id)
    if target is None or target.program_id != enrollment.version.program_id:
        raise ActionRefused("choose another version of the same program")
    if target.id == enrollment.version_id:
        raise ActionRefused("the patient is already on this version")
    if enrollment.state.is_final:
        raise ActionRefused(f"cannot move an enrollment that is {enrollment.state.value}")
    where = landing(enrollment, target)
    return MovePreview(
        from_version=enrollment.version.version,
        to_version=target.version,
        to_version_id=target.id,
        position=where.position,
        main_steps=where.main_steps,
        next_step=where.next_step.title if where.next_step else None,
    )


def move_to_version(
    session: Session, enrollment: Enrollment, version_id: int, user: User, *, now: datetime
) -> MovePreview:
    preview = preview_move(session, enrollment, version_id)
    before = snapshot(enrollment)
    reason = (
        f"moved from version {preview.from_version} to {preview.to_version} by staff "
        f"({user.email}); main step {preview.position + 1}/{preview.main_steps}"
    )
    target = session.get_one(ProgramVersion, version_id)
    move(session, enrollment, target, actor=user.email, reason=reason, now=now)
    session.flush()
    audit(
        session, user, "move-version", "enrollment", enrollment.id, now=now, before=before,
        after=snapshot(enrollment),
    )  # fmt: skip
    return preview
