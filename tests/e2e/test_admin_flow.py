"""Admins in a real browser: edit a step with live preview, save a draft, publish.

Agreed contract: /admin/programs/{slug}/steps/{key} has the SMS template in
``<textarea name="sms.txt.j2" id="tpl-sms">``, a live preview ``#preview-sms`` and a segment
count ``#preview-segments``, a button "Save draft"; template errors after saving render as
``.template-error`` with ``data-file`` and ``data-line``. /admin/programs/{slug} has a button
"Publish", after which the page says "Published version 2".
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PROGRAM_SLUG, LiveApp, login_as, open_page, snap

pytestmark = pytest.mark.e2e

STEP = "d01-welcome"
STEP_URL = f"/admin/programs/{PROGRAM_SLUG}/steps/{STEP}"
PROGRAM_URL = f"/admin/programs/{PROGRAM_SLUG}"
MARKER = " Zebra-42 says hi."


def _append_to_sms(page: Page, text: str) -> None:
    """Type at the end of the SMS template, key by key, as a person would."""
    area = page.locator("#tpl-sms")
    area.click()
    area.press("Control+End")
    area.press_sequentially(text)


def test_programs_list(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.admin.email)
    open_page(page, "/admin/programs")
    expect(page.get_by_role("link", name=re.compile("Retrain the Alarm")).first).to_be_visible()
    snap(page, "programs-list")


def test_edit_step_preview_save_and_publish(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.admin.email)
    open_page(page, STEP_URL)
    area = page.locator("textarea#tpl-sms")
    expect(area).to_have_attribute("name", "sms.txt.j2")
    expect(area).to_have_value(re.compile("welcome to"))
    preview = page.locator("#preview-sms")
    expect(preview).not_to_contain_text(MARKER.strip())

    _append_to_sms(page, MARKER)
    expect(preview).to_contain_text(MARKER.strip())
    # The preview is rendered, not echoed: the Jinja expressions are filled in.
    expect(preview).not_to_contain_text("{{")
    expect(page.locator("#preview-segments")).to_have_text(re.compile(r"\d+"))
    snap(page, "step-editor-preview")

    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    expect(page.locator(".template-error")).to_have_count(0)
    # The draft is stored: a fresh load shows the edited text.
    open_page(page, STEP_URL)
    expect(page.locator("#tpl-sms")).to_have_value(re.compile(re.escape(MARKER.strip())))

    open_page(page, PROGRAM_URL)
    page.once("dialog", lambda dialog: dialog.accept())  # if Publish asks to confirm
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_text("Published version 2")).to_be_visible()
    snap(page, "program-after-publish")


def test_template_error_points_at_file_and_line(page: Page, live_app: LiveApp) -> None:
    login_as(page, live_app.admin.email)
    open_page(page, STEP_URL)
    _append_to_sms(page, " {{ patient.nope }}")
    page.get_by_role("button", name="Save draft").click()

    error = page.locator(".template-error").first
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-file", re.compile(r"sms\.txt\.j2$"))
    expect(error).to_have_attribute("data-line", re.compile(r"^[1-9]\d*$"))
    expect(error).to_contain_text("nope")
    snap(page, "template-error")
