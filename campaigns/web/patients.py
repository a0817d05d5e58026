"""Staff pages for patients: the list, enrolment (one or a CSV), and the patient page with
its timeline, pain chart, pacing state and actions. Rules live in ``campaigns.staff``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import patient_export, patient_views, staff
from campaigns.charts import CHART_CSS, pain_chart_svg
from campaigns.csv_import import COLUMNS, MAX_ROWS, REQUIRED, FileRejected, import_csv
from campaigns.enums import AlertStatus, Channel, EnrollmentState
from campaigns.models import Alert, Patient, Program, utcnow
from campaigns.web.api_patients import MAX_ID, Id
from campaigns.web.deps import RuntimeDep, SessionDep
from campaigns.web.pages import render
from campaigns.web.security import CSRF_FIELD, StaffUser, check_csrf

router = APIRouter(include_in_schema=False)
CsrfForm = Annotated[str | None, Form(alias=CSRF_FIELD)]
Text = Annotated[str, Form()]
MESSAGES = {
    "pause": "Paused: nothing will be sent until resumed.",
    "resume": "Resumed.",
    "withdraw": "Withdrawn from the program.",
    "move": "Moved to the new version.",
}


def _programs(session: Session) -> list[Program]:
    return list(
        session.scalars(select(Program).where(Program.versions.any()).order_by(Program.name))
    )


def _patient(session: Session, patient_id: Id) -> Patient:
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such patient")
    return patient


@router.get("/patients", response_class=HTMLResponse)
def patient_list(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    q: str = "",
    program: str = "",
    state: str = "",
    in_flare: bool = False,
    needs_attention: bool = False,
) -> Response:
    state = state if state in {s.value for s in EnrollmentState} else ""
    filters = patient_views.PatientFilters(q[:100], program[:64], state, in_flare, needs_attention)
    context = {
        "rows": patient_views.find_patients(session, filters),
        "filters": filters,
        "programs": _programs(session),
        "states": [s.value for s in EnrollmentState],
    }
    return render(request, "patients/list.html", context)


# --- enrolling -----------------------------------------------------------------------------

FORM_FIELDS = ("first_name", "last_name", "email", "phone", "timezone", "channel", "send_time")


def _form_input(values: dict[str, str], consent: bool) -> dict[str, Any]:
    """Form text to enrolment input: empty means not given; the one consent box is for the
    channel chosen."""
    raw: dict[str, Any] = {k: v for k, v in values.items() if v.strip()}
    raw.setdefault("first_name", "")
    raw.setdefault("timezone", "")
    raw.setdefault("channel", "")
    raw.setdefault("program", "")
    raw["consent_sms"] = consent and values.get("channel") == Channel.SMS
    raw["consent_email"] = consent and values.get("channel") == Channel.EMAIL
    return raw


def _new_form(
    request: Request, session: Session, values: dict[str, str], errors: dict[str, str], code: int
) -> Response:
    context = {
        "values": values,
        "errors": errors,
        "programs": _programs(session),
        "channels": [c.value for c in Channel],
    }
    return render(request, "patients/new.html", context, status_code=code)


@router.get("/patients/new", response_class=HTMLResponse)
def new_patient_form(request: Request, session: SessionDep, user: StaffUser) -> Response:
    values = {"send_time": "10:00", "channel": "sms", "consent": ""}
    return _new_form(request, session, values, {}, status.HTTP_200_OK)


@router.post("/patients/new")
def new_patient(
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    user: StaffUser,
    csrf: CsrfForm = None,
    first_name: Text = "",
    last_name: Text = "",
    email: Text = "",
    phone: Text = "",
    timezone: Text = "",
    channel: Text = "",
    send_time: Text = "",
    external_ref: Text = "",
    program: Text = "",
    consent: Annotated[str | None, Form()] = None,
) -> Response:
    check_csrf(request, csrf)
    values = {
        "first_name": first_name,
        "last_name": last_name,
        "email": email,
        "phone": phone,
        "timezone": timezone,
        "channel": channel,
        "send_time": send_time,
        "external_ref": external_ref,
        "program": program,
    }
    try:
        data = staff.validate_enrolment(_form_input(values, consent is not None))
        enrollment = staff.enrol(session, data, user, rt.window, source="staff form", now=utcnow())
    except staff.EnrolmentRejected as exc:
        errors = {("consent" if k.startswith("consent_") else k): v for k, v in exc.errors.items()}
        values["consent"] = "on" if consent is not None else ""
        return _new_form(request, session, values, errors, status.HTTP_422_UNPROCESSABLE_CONTENT)
    session.commit()  # before the redirect: the next request must see the patient
    return RedirectResponse(f"/patients/{enrollment.patient_id}", status.HTTP_303_SEE_OTHER)


@router.get("/patients/import", response_class=HTMLResponse)
def import_form(request: Request, user: StaffUser) -> Response:
    return render(request, "patients/import.html", _import_context(None, None))


def _import_context(report: Any, error: str | None) -> dict[str, Any]:
    return {
        "report": report,
        "error": error,
        "columns": COLUMNS,
        "required": REQUIRED,
        "max_rows": MAX_ROWS,
    }


@router.post("/patients/import")
def import_upload(
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    user: StaffUser,
    file: Annotated[UploadFile, File()],
    csrf: CsrfForm = None,
) -> Response:
    check_csrf(request, csrf)
    session.commit()  # release the request's transaction: each row commits on its own
    try:
        report = import_csv(file.file.read(), rt.session, user.id, rt.window, now=utcnow())
    except FileRejected as exc:
        context = _import_context(None, str(exc))
        return render(request, "patients/import.html", context, status_code=422)
    return render(request, "patients/import.html", _import_context(report, None))


# --- one patient ---------------------------------------------------------------------------


def _detail(
    request: Request, session: Session, patient: Patient, *, message: str = "", code: int = 200
) -> Response:
    now = utcnow()
    enrollment = staff.current_enrollment(session, patient.id)
    alerts = session.scalars(
        select(Alert)
        .where(Alert.patient_id == patient.id, Alert.status != AlertStatus.RESOLVED)
        .order_by(Alert.created_at.desc())
    ).all()
    context = {
        "patient": patient,
        "enrollment": enrollment,
        "pacing": patient_views.pacing_view(enrollment, patient) if enrollment else None,
        "chart": pain_chart_svg(session, enrollment, now=now) if enrollment else "",
        "chart_css": CHART_CSS,
        "timeline": patient_views.timeline(session, patient),
        "versions": staff.other_versions(session, enrollment) if enrollment else [],
        "alerts": alerts,
        "message": message,
    }
    return render(request, "patients/detail.html", context, status_code=code)


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient_page(
    request: Request, session: SessionDep, user: StaffUser, patient_id: Id, done: str = ""
) -> Response:
    return _detail(request, session, _patient(session, patient_id), message=MESSAGES.get(done, ""))


def _page_action(name: str) -> Any:
    act = {"pause": staff.pause, "resume": staff.resume, "withdraw": staff.withdraw}[name]

    def endpoint(
        request: Request,
        session: SessionDep,
        user: StaffUser,
        patient_id: Id,
        csrf: CsrfForm = None,
        note: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        check_csrf(request, csrf)
        patient = _patient(session, patient_id)
        enrollment = staff.current_enrollment(session, patient_id)
        try:
            if enrollment is None:
                raise staff.ActionRefused("the patient has no enrollment")
            act(session, enrollment, user, note=note.strip(), now=utcnow())
        except staff.ActionRefused as exc:
            return _detail(request, session, patient, message=str(exc), code=409)
        session.commit()
        return RedirectResponse(f"/patients/{patient_id}?done={name}", status.HTTP_303_SEE_OTHER)

    endpoint.__name__ = f"{name}_patient_page"
    return endpoint


for _name in ("pause", "resume", "withdraw"):
    router.post(f"/patients/{{patient_id}}/{_name}")(_page_action(_name))


@router.get("/patients/{patient_id}/move", response_class=HTMLResponse)
def move_preview(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    patient_id: Id,
    version_id: Annotated[int, Query(ge=1, le=MAX_ID)],
) -> Response:
    patient = _patient(session, patient_id)
    enrollment = staff.current_enrollment(session, patient_id)
    try:
        if enrollment is None:
            raise staff.ActionRefused("the patient has no enrollment")
        preview = staff.preview_move(session, enrollment, version_id)
    except staff.ActionRefused as exc:
        return _detail(request, session, patient, message=str(exc), code=409)
    context = {"patient": patient, "preview": preview}
    return render(request, "patients/move.html", context)


@router.post("/patients/{patient_id}/move")
def move(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    patient_id: Id,
    version_id: Annotated[int, Form(ge=1, le=MAX_ID)],
    csrf: CsrfForm = None,
) -> Response:
    check_csrf(request, csrf)
    patient = _patient(session, patient_id)
    enrollment = staff.current_enrollment(session, patient_id)
    try:
        if enrollment is None:
            raise staff.ActionRefused("the patient has no enrollment")
        staff.move_to_version(session, enrollment, version_id, user, now=utcnow())
    except staff.ActionRefused as exc:
        return _detail(request, session, patient, message=str(exc), code=409)
    session.commit()
    return RedirectResponse(f"/patients/{patient_id}?done=move", status.HTTP_303_SEE_OTHER)


@router.post("/patients/{patient_id}/export")
def export(
    request: Request, session: SessionDep, user: StaffUser, patient_id: Id, csrf: CsrfForm = None
) -> Response:
    check_csrf(request, csrf)
    data = patient_export.export_patient(session, _patient(session, patient_id), user, now=utcnow())
    session.commit()
    return Response(
        json.dumps(data, indent=2, ensure_ascii=False),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="patient-{patient_id}.json"'},
    )
