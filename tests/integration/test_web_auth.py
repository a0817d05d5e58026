"""Log-in, CSRF, throttling and role checks over real HTTP."""

from __future__ import annotations

import httpx

from campaigns.enums import Role
from campaigns.runtime import Runtime
from tests.web_support import PASSWORD, csrf_from, login, make_user, web_server


def test_login_sets_a_session_and_logout_clears_it(rt: Runtime) -> None:
    account = make_user(rt)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        response = login(client, account.email)
        assert response.status_code == 303
        assert response.headers["location"] == "/patients"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        page = client.get("/login")
        logout = client.post("/logout", data={"csrf_token": csrf_from(page.text)})
        assert logout.status_code == 303
        assert client.get("/").headers["location"] == "/login"


def test_wrong_password_is_refused_and_repeated_failures_are_throttled(rt: Runtime) -> None:
    account = make_user(rt)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        for _ in range(5):
            assert login(client, account.email, "wrong password!!").status_code == 401
        throttled = login(client, account.email, PASSWORD)
    assert throttled.status_code == 429
    assert "Too many failed attempts" in throttled.text


def test_login_form_without_csrf_token_is_forbidden(rt: Runtime) -> None:
    account = make_user(rt)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        response = client.post("/login", data={"email": account.email, "password": PASSWORD})
    assert response.status_code == 403
    assert "CSRF" in response.text


def test_next_parameter_cannot_redirect_off_site(rt: Runtime) -> None:
    account = make_user(rt, role=Role.ADMIN)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        form = client.get("/login?next=//evil.example/")
        response = client.post(
            "/login",
            data={
                "email": account.email,
                "password": PASSWORD,
                "csrf_token": csrf_from(form.text),
                "next": "//evil.example/",
            },
        )
    assert response.headers["location"] == "/patients"


def test_pages_send_security_headers(rt: Runtime) -> None:
    with web_server(rt) as base:
        response = httpx.get(f"{base}/login")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
