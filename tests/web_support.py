"""Helpers for web tests: accounts, a logged-in httpx client against the real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from campaigns.accounts import create_user, issue_token
from campaigns.enums import Role
from campaigns.models import utcnow
from campaigns.runtime import Runtime
from campaigns.web.app import create_app
from tests.servers import serve

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    role: Role


def make_user(rt: Runtime, email: str = "staff@clinic.example", role: Role = Role.STAFF) -> Account:
    with rt.session() as session:
        user = create_user(
            session,
            email=email,
            name=email.split("@")[0].title(),
            password=PASSWORD,
            role=role,
            now=utcnow(),
        )
        return Account(user.id, user.email, role)


def api_token(rt: Runtime, account: Account) -> str:
    from campaigns.models import User

    with rt.session() as session:
        return issue_token(session, session.get_one(User, account.id), "tests", now=utcnow()).secret


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def login(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    form = client.get("/login")
    return client.post(
        "/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_from(form.text),
            "next": "/patients",
        },
    )


@contextmanager
def web_server(rt: Runtime) -> Iterator[str]:
    """The whole app under real uvicorn; yields its base URL."""
    with serve(create_app(rt)) as base:
        yield base
