"""Log-in and log-out for staff and admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from campaigns.accounts import LoginThrottled, authenticate
from campaigns.audit import audit
from campaigns.models import utcnow
from campaigns.web.deps import SessionDep
from campaigns.web.pages import render
from campaigns.web.security import CSRF_FIELD, SESSION_USER, OptionalUser, check_csrf

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a log-in link must not bounce people to another site."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/patients"


@router.get("/")
def home(user: OptionalUser) -> RedirectResponse:
    return RedirectResponse("/patients" if user else "/login", status.HTTP_303_SEE_OTHER)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": _safe_next(next), "email": None})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    check_csrf(request, csrf)
    now = utcnow()
    context = {"next": _safe_next(next), "email": email}
    try:
        user = authenticate(session, email, password, now=now)
    except LoginThrottled:
        context["error"] = "Too many failed attempts. Wait 15 minutes and try again."
        return render(request, "login.html", context, status_code=status.HTTP_429_TOO_MANY_REQUESTS)
    if user is None:
        context["error"] = "Email or password is not right."
        return render(request, "login.html", context, status_code=status.HTTP_401_UNAUTHORIZED)
    request.session.clear()
    request.session[SESSION_USER] = user.id
    audit(session, user, "login", "user", user.id, now=now)
    return RedirectResponse(_safe_next(next), status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(
    request: Request,
    csrf: Annotated[str | None, Form(alias=CSRF_FIELD)] = None,
) -> RedirectResponse:
    check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
