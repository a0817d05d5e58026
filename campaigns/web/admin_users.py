"""Admin pages for accounts: list, create (admin or staff), deactivate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from campaigns.accounts import AccountError, create_user
from campaigns.audit import audit
from campaigns.enums import Role
from campaigns.models import User, utcnow
from campaigns.web.deps import SessionDep
from campaigns.web.pages import render
from campaigns.web.security import CSRF_FIELD, AdminUser, check_csrf

router = APIRouter(prefix="/admin/users", include_in_schema=False)
Csrf = Annotated[str | None, Form(alias=CSRF_FIELD)]


def _page(
    request: Request, session: SessionDep, *, status_code: int = 200, **extra: object
) -> Response:
    users = session.scalars(select(User).order_by(User.active.desc(), User.email)).all()
    context = {"users": users, "roles": list(Role), "form": {}, **extra}
    return render(request, "admin/users.html", context, status_code=status_code)


@router.get("", response_class=HTMLResponse)
def users_page(request: Request, session: SessionDep, _user: AdminUser) -> Response:
    return _page(request, session, done=request.query_params.get("done"))


@router.post("")
def create(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    email: Annotated[str, Form()],
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    role: Annotated[Role, Form()],
    csrf: Csrf = None,
) -> Response:
    check_csrf(request, csrf)
    now = utcnow()
    try:
        new = create_user(session, email=email, name=name, password=password, role=role, now=now)
    except AccountError as exc:
        form = {"email": email, "name": name, "role": role.value}
        return _page(request, session, status_code=422, error=str(exc), form=form)
    audit(
        session,
        user,
        "user.create",
        "user",
        new.id,
        now=now,
        after={"email": new.email, "role": new.role.value},
    )
    session.commit()  # before the redirect: the session dependency commits after the response
    return RedirectResponse("/admin/users?done=created", status.HTTP_303_SEE_OTHER)


@router.post("/{user_id}/deactivate")
def deactivate(
    request: Request,
    user_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: SessionDep,
    user: AdminUser,
    csrf: Csrf = None,
) -> Response:
    check_csrf(request, csrf)
    target = session.get(User, user_id)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    if target.id == user.id:
        return _page(request, session, status_code=422, error="You cannot deactivate yourself.")
    if target.active:
        target.active = False
        audit(
            session,
            user,
            "user.deactivate",
            "user",
            target.id,
            now=utcnow(),
            before={"active": True},
            after={"active": False},
        )
    session.commit()
    return RedirectResponse("/admin/users?done=deactivated", status.HTTP_303_SEE_OTHER)
