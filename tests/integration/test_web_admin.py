"""Admin pages over real HTTP: programs, the step editor, publishing, diff, migration, users."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from campaigns.enums import Role
from campaigns.models import AuditEntry, Enrollment, OutboxMessage, ProgramVersion, User
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment
from tests.web_support import csrf_from, login, make_user, web_server

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # Monday, 00:00 in New York
STEP = "/admin/programs/mini/steps/d1-hello"


def _templates(page: str) -> dict[str, str]:
    found = re.findall(r'<textarea name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S)
    return {name: html.unescape(text) for name, text in found}


def _save(client: httpx.Client, **changes: str) -> httpx.Response:
    page = client.get(STEP).text
    form = {**_templates(page), **changes, "csrf_token": csrf_from(page)}
    return client.post(STEP, data=form)


@contextmanager
def _admin_client(rt: Runtime, base: str) -> Iterator[httpx.Client]:
    make_user(rt, "admin@clinic.example", role=Role.ADMIN)
    with httpx.Client(base_url=base) as client:
        login(client, "admin@clinic.example")
        yield client


def test_staff_and_anonymous_users_cannot_reach_admin_pages(rt: Runtime) -> None:
    load_program(rt)
    staff = make_user(rt)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        assert client.get("/admin/programs").headers["location"] == "/login?next=/admin/programs"
        login(client, staff.email)
        for path in ("/admin/programs", "/admin/programs/mini", STEP, "/admin/users"):
            assert client.get(path).status_code == 403, path
        token = csrf_from(client.get("/login").text)
        assert (
            client.post("/admin/programs/mini/publish", data={"csrf_token": token}).status_code
            == 403
        )


def test_edit_publish_and_patients_stay_on_their_version(rt: Runtime) -> None:
    v1 = load_program(rt)
    _, enrollment_id = make_enrollment(rt, v1, now=NOW)
    with web_server(rt) as base, _admin_client(rt, base) as client:
        listing = client.get("/admin/programs")
        assert "Mini Program" in listing.text and "none" in listing.text
        page = client.get(STEP)
        assert 'name="sms.txt.j2" id="tpl-sms"' in page.text
        assert 'id="preview-sms">Hi Alexandria, mini step d1-hello' in page.text
        assert 'id="preview-segments">1 segments (GSM-7)' in page.text
        assert '<iframe id="preview-email"' in page.text and 'sandbox=""' in page.text
        assert "Save draft" in page.text and "/static/editor.js" in page.text
        no_csrf = client.post(STEP, data=_templates(page.text))
        assert no_csrf.status_code == 403
        saved = _save(client, **{"sms.txt.j2": "New day one for {{ patient.first_name }}."})
        assert saved.status_code == 303
        assert "Draft saved" in client.get(saved.headers["location"]).text
        program = client.get("/admin/programs/mini")
        assert "Unpublished changes" in program.text and ">Publish</button>" in program.text
        published = client.post(
            "/admin/programs/mini/publish", data={"csrf_token": csrf_from(program.text)}
        )
        assert published.status_code == 303
        assert "Published version 2" in client.get(published.headers["location"]).text
        diff = client.get("/admin/programs/mini/diff?a=1&b=2")
        assert "+New day one for {{ patient.first_name }}." in html.unescape(diff.text)
        assert client.get("/admin/programs/mini/diff?a=1&b=9").status_code == 404
    tick(rt, now=NOW + timedelta(hours=10))
    with rt.session() as session:
        assert session.get_one(Enrollment, enrollment_id).version_id == v1
        body = session.scalars(select(OutboxMessage.body_text)).one()
        actions = set(session.scalars(select(AuditEntry.action)))
    assert "mini step d1-hello" in body and "New day one" not in body
    assert {"draft.open", "draft.template", "program.publish"} <= actions


def test_template_errors_show_file_and_line_and_nothing_is_saved(rt: Runtime) -> None:
    load_program(rt)
    with web_server(rt) as base, _admin_client(rt, base) as client:
        syntax = _save(client, **{"sms.txt.j2": "Hello\n{{ patient.first_name }\n"})
        assert syntax.status_code == 422 and '<div class="template-error"' in syntax.text
        assert 'role="alert" data-file="steps/d1-hello/sms.txt.j2" data-line="2"' in syntax.text
        assert "2 | {{ patient.first_name }" in html.unescape(syntax.text)
        sandbox = _save(client, **{"email.txt.j2": "{{ patient.__class__.__mro__ }}"})
        assert sandbox.status_code == 422
        assert 'data-file="steps/d1-hello/email.txt.j2" data-line="1"' in sandbox.text
        undefined = _save(client, **{"subject.txt.j2": "Hi {{ patient.nickname }}"})
        assert 'data-file="steps/d1-hello/subject.txt.j2"' in undefined.text
        too_long = _save(client, **{"sms.txt.j2": "A long message. " * 30})
        assert too_long.status_code == 422 and "segments" in too_long.text
        script = _save(client, **{"sms.txt.j2": "<script>alert(1)</script> {{ nope }}"})
        assert "<script>alert(1)" not in script.text
        assert "mini step d1-hello" in client.get(STEP).text


def test_publish_refuses_a_draft_with_problems(rt: Runtime) -> None:
    load_program(rt)
    with web_server(rt) as base, _admin_client(rt, base) as client:
        page = client.get("/admin/programs/mini")
        token = csrf_from(page.text)
        # A new main step with a starter template is valid; pacing with a bad value is not.
        added = client.post(
            "/admin/programs/mini/steps",
            data={
                "key": "d5-more",
                "title": "More",
                "track": "main",
                "kind": "education",
                "day": "5",
                "csrf_token": token,
            },
        )
        assert added.status_code == 303
        program = client.get("/admin/programs/mini")
        assert "d5-more" in program.text
        dupe = client.post(
            "/admin/programs/mini/steps",
            data={
                "key": "d5-more",
                "title": "Again",
                "track": "main",
                "kind": "education",
                "day": "6",
                "csrf_token": token,
            },
        )
        assert dupe.status_code == 422 and "duplicate step keys" in dupe.text
        moved = client.post(
            "/admin/programs/mini/steps/d5-more/move", data={"offset": "-1", "csrf_token": token}
        )
        assert moved.status_code == 303
        removed = client.post(
            "/admin/programs/mini/steps/d2-write/remove", data={"csrf_token": token}
        )
        assert (
            removed.status_code == 303 and "d2-write" not in client.get("/admin/programs/mini").text
        )
        pacing = {
            "cadence_days": "1",
            "flare_score_threshold": "11",
            "flare_rise_points": "3",
            "baseline_window": "5",
            "flare_keywords": "flare, worse",
            "flare_cadence_days": "2",
            "resume_after_settled_reports": "2",
            "resume_after_days": "4",
            "long_flare_alert_days": "6",
            "slower_max_cadence_days": "4",
            "csrf_token": token,
        }
        bad = client.post("/admin/programs/mini/pacing", data=pacing)
        assert bad.status_code == 422 and "flare_score_threshold" in bad.text
        good = client.post(
            "/admin/programs/mini/pacing", data={**pacing, "flare_score_threshold": "8"}
        )
        assert good.status_code == 303
        assert 'name="flare_score_threshold" value="8.0"' in client.get("/admin/programs/mini").text
    with rt.session() as session:
        from campaigns.models import ProgramDraft

        draft = session.scalars(select(ProgramDraft)).one()
        draft.files = {**draft.files, "steps/d1-hello/sms.txt.j2": "{{ broken"}
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        login(client, "admin@clinic.example")
        page = client.get("/admin/programs/mini")
        refused = client.post(
            "/admin/programs/mini/publish", data={"csrf_token": csrf_from(page.text)}
        )
        assert refused.status_code == 422
        assert "Not published" in refused.text
        assert 'data-file="steps/d1-hello/sms.txt.j2" data-line="1"' in refused.text
    with rt.session() as session:
        assert len(session.scalars(select(ProgramVersion)).all()) == 1


def test_migration_preview_then_confirm(rt: Runtime) -> None:
    v1 = load_program(rt)
    _, enrollment_id = make_enrollment(rt, v1, now=NOW)
    with web_server(rt) as base, _admin_client(rt, base) as client:
        _save(client, **{"sms.txt.j2": "Version two for {{ patient.first_name }}."})
        page = client.get("/admin/programs/mini")
        client.post("/admin/programs/mini/publish", data={"csrf_token": csrf_from(page.text)})
        program = client.get("/admin/programs/mini")
        assert "/admin/programs/mini/migrate?from=1&amp;to=2" in program.text
        preview = client.get("/admin/programs/mini/migrate?from=1&to=2")
        assert "Hello" in preview.text and "Move 1 enrollment(s)" in preview.text
        assert client.get("/admin/programs/mini/migrate?from=2&to=2").status_code == 422
        done = client.post(
            "/admin/programs/mini/migrate",
            data={"from_version": "1", "to_version": "2", "csrf_token": csrf_from(preview.text)},
        )
        assert done.status_code == 303
        assert "Moved 1 enrollment(s)" in client.get(done.headers["location"]).text
    tick(rt, now=NOW + timedelta(hours=10))
    with rt.session() as session:
        assert session.get_one(Enrollment, enrollment_id).version_id != v1
        assert session.scalars(select(OutboxMessage.body_text)).one() == "Version two for Sam."


def test_what_if_calendar_and_unknown_program(rt: Runtime) -> None:
    load_program(rt)
    with web_server(rt) as base, _admin_client(rt, base) as client:
        page = client.get("/admin/programs/mini?pattern=long-flare&source=latest")
        assert page.status_code == 200
        assert 'class="cal-flare"' in page.text and 'class="cal-alert"' in page.text
        assert "Flares are normal" in page.text
        bad = client.get("/admin/programs/mini?pattern=nope")
        assert "unknown reply pattern" in bad.text
        assert client.get("/admin/programs/nope").status_code == 404
        assert client.get("/admin/programs/mini/steps/nope").status_code == 404


def test_admin_creates_and_deactivates_users(rt: Runtime) -> None:
    with web_server(rt) as base, _admin_client(rt, base) as client:
        page = client.get("/admin/users")
        token = csrf_from(page.text)
        form = {
            "email": "new@clinic.example",
            "name": "New",
            "password": "long enough password",
            "role": "staff",
            "csrf_token": token,
        }
        assert client.post("/admin/users", data={**form, "csrf_token": ""}).status_code == 403
        created = client.post("/admin/users", data=form)
        assert created.status_code == 303
        again = client.post("/admin/users", data=form)
        assert again.status_code == 422 and "already exists" in again.text
        short = client.post(
            "/admin/users", data={**form, "email": "x@clinic.example", "password": "short"}
        )
        assert short.status_code == 422 and "at least 12" in short.text
        with rt.session() as session:
            new = session.scalars(select(User).where(User.email == "new@clinic.example")).one()
            me = session.scalars(select(User).where(User.email == "admin@clinic.example")).one()
        assert (
            client.post(f"/admin/users/{new.id}/deactivate", data={"csrf_token": token}).status_code
            == 303
        )
        assert (
            client.post(f"/admin/users/{me.id}/deactivate", data={"csrf_token": token}).status_code
            == 422
        )
        assert (
            client.post("/admin/users/999/deactivate", data={"csrf_token": token}).status_code
            == 404
        )
    with rt.session() as session:
        assert session.get_one(User, new.id).active is False
        assert "user.deactivate" in set(session.scalars(select(AuditEntry.action)))
