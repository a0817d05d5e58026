"""The staff alert inbox: crises and long flares, worked from open to resolved."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from campaigns import alert_inbox, staff
from campaigns.enums import AlertStatus
from campaigns.models import Alert, Patient, utcnow
from campaigns.web.api_patients import Id
from campaigns.web.deps import SessionDep
from campaigns.web.pages import render
from campaigns.web.security import CSRF_FIELD, StaffUser, check_csrf

router = APIRouter(include_in_schema=False)


@router.get("/alerts", response_class=HTMLResponse)
def inbox(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    wanted: Annotated[str, Query(alias="status")] = "",
) -> Response:
    wanted = wanted if wanted in {s.value for s in AlertStatus} else ""
    alerts = alert_inbox.alert_inbox(session, wanted)
    ids = {a.patient_id for a in alerts}
    names = {
        p.id: p.display_name for p in session.scalars(select(Patient).where(Patient.id.in_(ids)))
    }
    context = {
        "alerts": alerts,
        "names": names,
        "status": wanted,
        "statuses": [s.value for s in AlertStatus],
    }
    return render(request, "alerts/inbox.html", context)


@router.post("/alerts/{alert_id}/{action}")
def update(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    alert_id: Id,
    action: str,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> Response:
    check_csrf(request, csrf)
    alert = session.get(Alert, alert_id)
    if alert is None or action not in ("acknowledge", "resolve"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alert or action")
    try:
        alert_inbox.update_alert(session, alert, action, user, now=utcnow())
    except staff.ActionRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    session.commit()
    return RedirectResponse("/alerts", status.HTTP_303_SEE_OTHER)
