"""Browser tests: real Chromium (Debian's package) against the app under real uvicorn.

The browser is Debian's ``chromium`` at /usr/bin/chromium, driven by Playwright's sync API
(the driver ships inside the ``playwright`` wheel; no browser is ever downloaded). Locally a
missing Chromium skips these tests; with ``CI=true`` it fails them.

Every test gets a fresh SQLite database with the bundled program, an admin, a staff user and
one enrolled patient who has replied with pain scores, served on a free port. Screenshots go to
``test-artifacts/screenshots/<test-name>-<step>.png`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from campaigns.db import migrate
from campaigns.enums import Role
from campaigns.inbound import receive_reply
from campaigns.models import Patient, utcnow
from campaigns.runtime import Runtime
from tests.conftest import IN_CI, REPO
from tests.factories import load_program, make_enrollment
from tests.web_support import PASSWORD, Account, make_user, web_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROGRAM = REPO / "templates" / "programs" / "retrain-the-alarm"
PROGRAM_SLUG = "retrain-the-alarm"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
TIMEOUT_MS = 10_000  # a page that is not there should fail fast, not after 30 s
# The seeded patient's replies, oldest first: a chart with several points.
PAIN_REPLIES = ("pain is 6", "5 today", "pain 4", "3", "4 - better than last week")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the browser tests exercise pages, the backends are covered elsewhere."""
    url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"Chromium is required when CI=true: {message}")
        pytest.skip(message)
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@dataclass(frozen=True)
class LiveApp:
    base_url: str
    rt: Runtime
    admin: Account
    staff: Account
    version_id: int
    patient_id: int  # enrolled, with pain scores
    patient_name: str


def _seed_pain_scores(rt: Runtime, version_id: int) -> int:
    start = utcnow() - timedelta(days=len(PAIN_REPLIES) + 1)
    patient_id, _ = make_enrollment(rt, version_id, now=start, first_name="Ada")
    for day, text in enumerate(PAIN_REPLIES, start=1):
        with rt.session() as session:
            patient = session.get_one(Patient, patient_id)
            receive_reply(
                rt,
                session,
                patient,
                text,
                channel=patient.preferred_channel,
                now=start + timedelta(days=day, hours=3),
            )
    return patient_id


@pytest.fixture
def live_app(rt: Runtime) -> Iterator[LiveApp]:
    version_id = load_program(rt, PROGRAM)
    admin = make_user(rt, "admin@clinic.example", Role.ADMIN)
    staff = make_user(rt, "staff@clinic.example", Role.STAFF)
    patient_id = _seed_pain_scores(rt, version_id)
    with web_server(rt) as base_url:
        yield LiveApp(base_url, rt, admin, staff, version_id, patient_id, "Ada Rivera")


@pytest.fixture
def context(browser: Browser, live_app: LiveApp) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=live_app.base_url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.set_default_navigation_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page in a fresh context (no cookies) for each test; a screenshot on failure."""
    (SCREENSHOTS / f"{_test_name()}-FAILED.png").unlink(missing_ok=True)  # a stale one misleads
    page = context.new_page()
    yield page
    if request.node.stash.get(_FAILED, False):
        # The page may be gone; the test's own error is what matters.
        with contextlib.suppress(Exception):
            snap(page, "FAILED")


def login_as(page: Page, email: str, password: str = PASSWORD) -> None:
    """Log in through the real form, as a person would."""
    page.goto("/login")
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password]").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def open_page(page: Page, path: str) -> None:
    """Navigate and insist the server answered 2xx (after redirects)."""
    response = page.goto(path)
    assert response is not None, f"no response for {path}"
    assert response.ok, f"GET {path} -> {response.status} {response.status_text}"


def _test_name() -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST", "unknown::unknown (call)")
    name = current.split("::")[-1].rsplit(" ", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def snap(page: Page, name: str) -> Path:
    """Full-page screenshot to test-artifacts/screenshots/<test-name>-<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{_test_name()}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
