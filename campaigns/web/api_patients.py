"""The staff JSON API: patients, their pacing actions and export, CSV import, alerts.

Errors follow FastAPI's own shape, so a client handles one format: 401 without a user,
404 for an unknown id, 409 when an action does not apply in the current state, and 422 with
``detail[].loc`` naming the field and ``detail[].msg`` saying why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, File, HTTPException, Path, Query, UploadFile, status
from sqlalchemy.orm import Session

from campaigns import alert_inbox, patient_export, patient_views, staff
from campaigns.csv_import import FileRejected, import_csv
from campaigns.enums import AlertStatus, EnrollmentState
from campaigns.models import Alert, Enrollment, Patient, utcnow
from campaigns.schemas import (
    ActionIn,
    AlertOut,
    EnrolledOut,
    EnrolmentIn,
    ExportOut,
    ImportReportOut,
    PacingOut,
    PatientDetailOut,
    RowEnrolledOut,
    RowErrorOut,
)
from campaigns.web.deps import RuntimeDep, SessionDep
from campaigns.web.security import ApiCsrf, StaffUser

router = APIRouter(prefix="/api", tags=["staff"])
MAX_ID = 2**31 - 1  # the id columns are 32-bit integers
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No session or API token"},
    404: {"description": "No such patient or alert"},
}
_ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    403: {"description": "Missing CSRF header on a session-cookie call"},
    409: {"description": "The action does not apply in the current state"},
}


def unprocessable(errors: Mapping[str, str]) -> HTTPException:
    detail = [{"loc": ["body", f], "msg": m, "type": "value_error"} for f, m in errors.items()]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def get_patient(session: Session, patient_id: Id) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such patient")
    return patient


def get_enrollment(session: Session, patient_id: Id) -> Enrollment:
    get_patient(session, patient_id)
    enrollment = staff.current_enrollment(session, patient_id)
    if enrollment is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "the patient has no enrollment")
    return enrollment


def pacing_out(enrollment: Enrollment) -> PacingOut:
    view = patient_views.pacing_view(enrollment, enrollment.patient)
    local = view.next_due_local
    return PacingOut(
        enrollment_id=enrollment.id,
        program=view.program,
        version=view.version,
        state=view.state,
        step=view.step,
        steps=view.steps,
        cadence_days=view.cadence_days,
        next_due_at=enrollment.next_due_at,
        next_due_local=local.isoformat() if local else None,
    )


@router.get("/patients", responses=_ERRORS)
def list_patients(
    session: SessionDep,
    user: StaffUser,
    q: Annotated[str, Query(max_length=100, description="name, external ref or phone last 4")] = "",
    program: Annotated[str, Query(max_length=64)] = "",
    state: EnrollmentState | None = None,
    in_flare: bool = False,
    needs_attention: bool = False,
) -> list[patient_views.PatientRow]:
    filters = patient_views.PatientFilters(
        q=q,
        program=program,
        state=state.value if state else "",
        in_flare=in_flare,
        needs_attention=needs_attention,
    )
    return patient_views.find_patients(session, filters)


@router.post(
    "/patients",
    status_code=status.HTTP_201_CREATED,
    dependencies=[ApiCsrf],
    responses={**_ACTION_ERRORS, 422: {"description": "A field is missing or invalid"}},
)
def create_patient(
    session: SessionDep, rt: RuntimeDep, user: StaffUser, body: EnrolmentIn
) -> EnrolledOut:
    try:
        data = staff.validate_enrolment(body.model_dump())
        enrollment = staff.enrol(session, data, user, rt.window, source="api", now=utcnow())
    except staff.EnrolmentRejected as exc:
        raise unprocessable(exc.errors) from None
    session.commit()
    return EnrolledOut(patient_id=enrollment.patient_id, enrollment_id=enrollment.id)


@router.get("/patients/{patient_id}", responses=_ERRORS)
def patient_detail(session: SessionDep, user: StaffUser, patient_id: Id) -> PatientDetailOut:
    patient = get_patient(session, patient_id)
    enrollment = staff.current_enrollment(session, patient_id)
    return PatientDetailOut(
        id=patient.id,
        first_name=patient.first_name,
        last_name=patient.last_name,
        email=patient.email,
        phone=patient.phone_e164,
        timezone=patient.timezone,
        channel=patient.preferred_channel,
        send_time=patient.send_time,
        external_ref=patient.external_ref,
        created_at=patient.created_at,
        pacing=pacing_out(enrollment) if enrollment else None,
    )


def _action(name: str) -> Any:
    act = {"pause": staff.pause, "resume": staff.resume, "withdraw": staff.withdraw}[name]

    def endpoint(
        session: SessionDep,
        user: StaffUser,
        patient_id: Id,
        body: Annotated[ActionIn | None, Body()] = None,
    ) -> PacingOut:
        enrollment = get_enrollment(session, patient_id)
        note = body.note if body else ""
        try:
            act(session, enrollment, user, note=note, now=utcnow())
        except staff.ActionRefused as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        session.commit()
        return pacing_out(enrollment)

    endpoint.__name__ = f"{name}_patient"
    endpoint.__doc__ = f"{name.title()} the patient's current enrollment (audited)."
    return endpoint


for _name in ("pause", "resume", "withdraw"):
    router.post(
        f"/patients/{{patient_id}}/{_name}", dependencies=[ApiCsrf], responses=_ACTION_ERRORS
    )(_action(_name))


@router.get("/patients/{patient_id}/export", responses=_ERRORS)
def export_patient(session: SessionDep, user: StaffUser, patient_id: Id) -> ExportOut:
    """Everything stored about the patient (data-subject request); the export is audited."""
    patient = get_patient(session, patient_id)
    data = patient_export.export_patient(session, patient, user, now=utcnow())
    session.commit()
    return ExportOut(**data)


@router.post(
    "/patients/import",
    dependencies=[ApiCsrf],
    responses={**_ACTION_ERRORS, 422: {"description": "The file was refused as a whole"}},
)
def import_patients(
    session: SessionDep,
    rt: RuntimeDep,
    user: StaffUser,
    file: Annotated[UploadFile, File(description="CSV; see campaigns.csv_import")],
) -> ImportReportOut:
    """Enrol each good row in its own transaction; report every rejected row by field."""
    session.commit()  # release the request's transaction: each row commits on its own
    try:
        report = import_csv(file.file.read(), rt.session, user.id, rt.window, now=utcnow())
    except FileRejected as exc:
        raise unprocessable({"file": str(exc)}) from None
    return ImportReportOut(
        total=report.total,
        enrolled=[RowEnrolledOut(**vars(r)) for r in report.enrolled],
        rejected=[RowErrorOut(**vars(r)) for r in report.rejected],
    )


@router.get("/alerts", responses=_ERRORS)
def list_alerts(
    session: SessionDep,
    user: StaffUser,
    status_: Annotated[AlertStatus | None, Query(alias="status")] = None,
) -> list[AlertOut]:
    alerts = alert_inbox.alert_inbox(session, status_.value if status_ else "")
    return [AlertOut.model_validate(a) for a in alerts]


def _alert_action(name: str) -> Any:
    def endpoint(session: SessionDep, user: StaffUser, alert_id: Id) -> AlertOut:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert")
        try:
            alert_inbox.update_alert(session, alert, name, user, now=utcnow())
        except staff.ActionRefused as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        session.commit()
        return AlertOut.model_validate(alert)

    endpoint.__name__ = f"{name}_alert"
    endpoint.__doc__ = f"{name.title()} an alert (audited)."
    return endpoint


for _name in ("acknowledge", "resolve"):
    router.post(f"/alerts/{{alert_id}}/{_name}", dependencies=[ApiCsrf], responses=_ACTION_ERRORS)(
        _alert_action(_name)
    )
