"""Who is asking: session log-in for people, bearer tokens for integrations, CSRF for forms.

Pages and the JSON API share one rule: no user, 401 (pages redirect to the log-in form);
wrong role, 403. Forms carry a per-session CSRF token; bearer requests carry no cookies, so
they need none.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from campaigns.accounts import user_for_token
from campaigns.enums import Role
from campaigns.models import User, utcnow
from campaigns.web.deps import SessionDep

SESSION_USER = "user_id"
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
_bearer = HTTPBearer(auto_error=False, description="API token from `campaigns users token`")


class LoginRequired(Exception):
    """Raised for pages (not the API): the app turns it into a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def csrf_token(request: Request) -> str:
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get(SESSION_CSRF)
    if not (isinstance(expected, str) and submitted and hmac.compare_digest(expected, submitted)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or invalid CSRF token")


def _session_user(request: Request, session: SessionDep) -> User | None:
    user_id = request.session.get(SESSION_USER)
    if not isinstance(user_id, int):
        return None
    user = session.get(User, user_id)
    return user if user is not None and user.active else None


def optional_user(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User | None:
    if credentials is not None:
        user = user_for_token(session, credentials.credentials, now=utcnow())
        if user is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid or revoked API token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        request.state.user, request.state.auth = user, "bearer"
        return user
    user = _session_user(request, session)
    request.state.user, request.state.auth = user, "session"
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _require(role: Role) -> Callable[[Request, User | None], User]:
    def dependency(request: Request, user: OptionalUser) -> User:
        if user is None:
            if _is_api(request):
                raise HTTPException(
                    status.HTTP_401_UNAUTHORIZED,
                    "authentication required",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            raise LoginRequired(request.url.path)
        if role == Role.ADMIN and user.role != Role.ADMIN:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")
        return user

    return dependency


StaffUser = Annotated[User, Depends(_require(Role.STAFF))]
AdminUser = Annotated[User, Depends(_require(Role.ADMIN))]


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def api_csrf(request: Request, user: OptionalUser) -> None:
    """Browser calls to the JSON API ride on the session cookie, so they must echo the CSRF
    token in ``X-CSRF-Token``; bearer-token clients send no cookies and need none."""
    if request.method in _UNSAFE and getattr(request.state, "auth", None) == "session" and user:
        check_csrf(request, request.headers.get("X-CSRF-Token"))


ApiCsrf = Depends(api_csrf)
