"""Staff in a real browser: the patient list, enrolling a patient, the pain chart, alerts.

Written against the agreed page contract: /patients/new has inputs named first_name,
last_name, email, phone, timezone, channel (select), send_time, consent (checkbox) and
program (select) and a button "Enrol patient"; field errors are
``<span class="field-error" data-field="...">``; success redirects to /patients/{id}, whose
page has ``<section id="pain-chart">`` (an SVG) and ``<section id="timeline">``.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import LiveApp, login_as, open_page, snap

pytestmark = pytest.mark.e2e

NEW_PATIENT = {
    "first_name": "Grace",
    "last_name": "Okafor",
    "email": "grace.okafor@example.org",
    "timezone": "America/Chicago",
    "send_time": "09:30",
}
GOOD_PHONE = "+1 650 253 0000"
BAD_PHONE = "555-12"


def _fill_or_select(page: Page, name: str, value: str) -> None:
    field = page.locator(f"[name='{name}']")
    if field.evaluate("el => el.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def _choose_program(page: Page, program_name: str) -> None:
    """Pick the program by its visible name, whatever the option values are."""
    select = page.locator("select[name=program]")
    option = select.locator("option", has_text=program_name).first
    value = option.get_attribute("value")
    assert value, f"no program option named {program_name!r}"
    select.select_option(value)


def _fill_enrol_form(page: Page, phone: str) -> None:
    for name, value in NEW_PATIENT.items():
        _fill_or_select(page, name, value)
    page.locator("input[name=phone]").fill(phone)
    page.locator("select[name=channel]").select_option("sms")
    page.locator("input[name=consent]").check()
    _choose_program(page, "Retrain the Alarm")


def test_patient_list_shows_enrolled_patients(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.staff.email)
    open_page(page, "/patients")
    expect(page.get_by_role("link", name=re.compile(live_app.patient_name))).to_be_visible()
    snap(page, "patient-list")


def test_enrol_a_patient_fixing_a_bad_phone(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.staff.email)
    open_page(page, "/patients/new")
    _fill_enrol_form(page, BAD_PHONE)
    page.get_by_role("button", name="Enrol patient").click()

    error = page.locator("span.field-error[data-field=phone]")
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    expect(page).not_to_have_url(re.compile(r"/patients/\d+$"))
    # The form comes back filled in: only the phone needs fixing.
    expect(page.locator("input[name=first_name]")).to_have_value(NEW_PATIENT["first_name"])
    expect(page.locator("input[name=email]")).to_have_value(NEW_PATIENT["email"])
    snap(page, "enrol-form-with-error")

    page.locator("input[name=phone]").fill(GOOD_PHONE)
    page.locator("input[name=consent]").check()  # consent is asked again, never assumed
    page.get_by_role("button", name="Enrol patient").click()

    expect(page).to_have_url(re.compile(r"/patients/\d+$"))
    expect(page.locator("span.field-error")).to_have_count(0)
    name = f"{NEW_PATIENT['first_name']} {NEW_PATIENT['last_name']}"
    expect(page.get_by_text(name).first).to_be_visible()
    expect(page.locator("section#pain-chart")).to_be_visible()
    expect(page.locator("section#timeline")).to_be_visible()
    snap(page, "enrolled-patient")


def test_patient_page_shows_the_pain_chart(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.staff.email)
    open_page(page, f"/patients/{live_app.patient_id}")
    expect(page.get_by_text(live_app.patient_name).first).to_be_visible()
    chart = page.locator("#pain-chart svg")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 50 and box["height"] > 20, box
    expect(page.locator("section#timeline")).to_be_visible()
    # The seeded replies are on the timeline, raw text as the patient wrote it.
    expect(page.locator("section#timeline")).to_contain_text("better than last week")
    snap(page, "patient-page")


def test_alerts_page(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.staff.email)
    open_page(page, "/alerts")
    heading = page.get_by_role("heading", name=re.compile("Alerts", re.IGNORECASE)).first
    expect(heading).to_be_visible()
    snap(page, "alerts")


def test_staff_cannot_open_admin_pages(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.staff.email)
    response = page.goto("/admin/programs")
    assert response is not None and response.status == 403
