"""The log-in form in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import LiveApp, login_as, snap

pytestmark = pytest.mark.e2e


def test_login_page_renders(page: Page, live_app: LiveApp) -> None:
    page.goto("/login")
    expect(page).to_have_title(re.compile("Log in"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("input[name=email]")).to_be_visible()
    expect(page.locator("input[name=password]")).to_have_attribute("type", "password")
    expect(page.locator("input[name=csrf_token]")).to_have_count(1)
    snap(page, "login")


def test_staff_logs_in_and_lands_on_patients(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.staff.email)
    expect(page).to_have_url(f"{live_app.base_url}/patients")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "campaigns_session" in cookies
    assert cookies["campaigns_session"]["httpOnly"]
    assert cookies["campaigns_session"]["sameSite"] == "Lax"
    expect(page.locator(".error")).to_have_count(0)


def test_wrong_password_shows_the_error(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.staff.email, "not the password")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("alert")).to_have_text("Email or password is not right.")
    # The email is kept, the password is not.
    expect(page.locator("input[name=email]")).to_have_value(live_app.staff.email)
    expect(page.locator("input[name=password]")).to_have_value("")
    snap(page, "wrong-password")
