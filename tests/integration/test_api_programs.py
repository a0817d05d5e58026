"""The programs JSON API: auth and roles, reads, preview, saving, publishing, what-if."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from campaigns.enums import Role
from campaigns.models import Enrollment, OutboxMessage
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment
from tests.web_support import api_token, csrf_from, login, make_user, web_server

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
SAVE = "/api/programs/mini/draft/steps/d1-hello"


def _admin(rt: Runtime) -> dict[str, str]:
    account = make_user(rt, "admin@clinic.example", role=Role.ADMIN)
    return {"Authorization": f"Bearer {api_token(rt, account)}"}


def test_no_auth_is_401_and_staff_is_403(rt: Runtime) -> None:
    load_program(rt)
    staff = {"Authorization": f"Bearer {api_token(rt, make_user(rt))}"}
    calls = [
        ("GET", "/api/programs", None),
        ("GET", "/api/programs/mini", None),
        ("GET", "/api/programs/mini/versions/1", None),
        ("GET", "/api/programs/mini/diff?a=1&b=1", None),
        ("POST", "/api/programs/mini/preview", {"step": "d1-hello"}),
        ("PUT", SAVE, {"files": {"sms.txt.j2": "x"}}),
        ("POST", "/api/programs/mini/publish", None),
        ("POST", "/api/programs/mini/simulate", {}),
    ]
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        for method, path, body in calls:
            assert client.request(method, path, json=body).status_code == 401, path
            assert client.request(method, path, json=body, headers=staff).status_code == 403, path
        bad = {"Authorization": "Bearer cmp_nope"}
        assert client.get("/api/programs", headers=bad).status_code == 401


def test_reads_and_404s(rt: Runtime) -> None:
    load_program(rt)
    headers = _admin(rt)
    with web_server(rt) as base, httpx.Client(base_url=base, headers=headers) as client:
        listing = client.get("/api/programs").json()
        assert listing == [
            {
                "slug": "mini",
                "name": "Mini Program",
                "latest_version": 1,
                "live_enrollments": 0,
                "has_draft": False,
            }
        ]
        detail = client.get("/api/programs/mini").json()
        assert [s["key"] for s in detail["steps"]][:2] == ["d1-hello", "d2-write"]
        assert detail["pacing_rules"]["baseline_window"] == 5
        version = client.get("/api/programs/mini/versions/1").json()
        assert "steps/d1-hello/sms.txt.j2" in version["files"]
        assert client.get("/api/programs/nope").status_code == 404
        assert client.get("/api/programs/mini/versions/7").status_code == 404
        assert client.get("/api/programs/mini/diff?a=1&b=7").status_code == 404
        assert client.get("/api/programs/mini/diff?a=0&b=1").status_code == 422
        assert client.post("/api/programs/nope/preview", json={"step": "x"}).status_code == 404
        assert client.post("/api/programs/mini/preview", json={"step": "nope"}).status_code == 404
        assert (
            client.put(
                "/api/programs/mini/draft/steps/nope", json={"files": {"sms.txt.j2": "x"}}
            ).status_code
            == 404
        )


def test_preview_reports_segments_and_problems(rt: Runtime) -> None:
    load_program(rt)
    headers = _admin(rt)
    with web_server(rt) as base, httpx.Client(base_url=base, headers=headers) as client:
        ok = client.post(
            "/api/programs/mini/preview",
            json={"step": "d1-hello", "files": {"sms.txt.j2": "Hi {{ patient.first_name }} ✓"}},
        )
        assert ok.status_code == 200
        data = ok.json()
        assert data["sms"] == "Hi Alexandria ✓"
        assert data["segments"] == {"encoding": "UCS-2", "units": 15, "segments": 1}
        assert data["subject"] and "<p>" in data["email_html"] and data["problems"] == []
        bad = client.post(
            "/api/programs/mini/preview",
            json={"step": "d1-hello", "files": {"sms.txt.j2": "a\n{% if %}"}},
        ).json()
        assert bad["sms"] is None
        assert bad["problems"][0]["file"] == "steps/d1-hello/sms.txt.j2"
        assert bad["problems"][0]["line"] == 2
        assert client.post("/api/programs/mini/preview", json={"nope": 1}).status_code == 422


def test_save_publish_and_enrolled_patient_keeps_version_text(rt: Runtime) -> None:
    v1 = load_program(rt)
    _, enrollment_id = make_enrollment(rt, v1, now=NOW)
    headers = _admin(rt)
    with web_server(rt) as base, httpx.Client(base_url=base, headers=headers) as client:
        refused = client.put(SAVE, json={"files": {"sms.txt.j2": "{{ patient.__class__ }}"}})
        assert refused.status_code == 422
        problem = refused.json()["detail"]["problems"][0]
        assert problem["file"] == "steps/d1-hello/sms.txt.j2" and problem["line"] == 1
        undefined = client.put(SAVE, json={"files": {"sms.txt.j2": "Hi {{ patient.nick }}"}})
        assert undefined.status_code == 422
        too_long = client.put(SAVE, json={"files": {"sms.txt.j2": "✓" * 200}})
        assert "segments" in too_long.json()["detail"]["problems"][0]["message"]
        unknown = client.put(SAVE, json={"files": {"evil.j2": "x"}})
        assert unknown.status_code == 422
        assert client.put(SAVE, json={"files": {}}).status_code == 422
        saved = client.put(SAVE, json={"files": {"sms.txt.j2": "V2 for {{ patient.first_name }}."}})
        assert saved.json() == {"step": "d1-hello", "saved": ["sms.txt.j2"]}
        assert client.get("/api/programs/mini").json()["has_draft"] is True
        published = client.post("/api/programs/mini/publish")
        assert published.json() == {"version": 2, "created": True}
        again = client.post("/api/programs/mini/publish")
        assert again.status_code == 422 and "no draft" in again.text
        diff = client.get("/api/programs/mini/diff?a=1&b=2").json()
        assert diff["files"][0]["name"] == "steps/d1-hello/sms.txt.j2"
        assert "+V2 for {{ patient.first_name }}." in diff["files"][0]["lines"]
        detail = client.get("/api/programs/mini").json()
        assert [v["live_enrollments"] for v in detail["versions"]] == [0, 1]
    tick(rt, now=NOW + timedelta(hours=10))
    with rt.session() as session:
        assert session.get_one(Enrollment, enrollment_id).version_id == v1
        body = session.scalars(select(OutboxMessage.body_text)).one()
    assert body.startswith("Hi Sam, mini step d1-hello")


def test_simulate_returns_a_calendar(rt: Runtime) -> None:
    load_program(rt)
    headers = _admin(rt)
    with web_server(rt) as base, httpx.Client(base_url=base, headers=headers) as client:
        result = client.post(
            "/api/programs/mini/simulate", json={"pattern": "mid-flare", "start": "2026-03-02"}
        )
        assert result.status_code == 200
        kinds = {e["kind"] for e in result.json()["calendar"]}
        assert {"main", "flare", "reply"} <= kinds
        draft = client.post("/api/programs/mini/simulate", json={"source": "draft"})
        assert draft.status_code == 200
        assert client.post("/api/programs/mini/simulate", json={"pattern": "x"}).status_code == 422
        assert client.post("/api/programs/mini/simulate", json={"source": "x"}).status_code == 422
        assert client.post("/api/programs/mini/simulate", json={"source": "9"}).status_code == 404


def test_browser_session_needs_the_csrf_header_on_writes(rt: Runtime) -> None:
    load_program(rt)
    make_user(rt, "admin@clinic.example", role=Role.ADMIN)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        login(client, "admin@clinic.example")
        token = csrf_from(client.get("/admin/programs/mini/steps/d1-hello").text)
        body = {"step": "d1-hello", "files": {"sms.txt.j2": "hi"}}
        assert client.get("/api/programs").status_code == 200
        assert client.post("/api/programs/mini/preview", json=body).status_code == 403
        ok = client.post("/api/programs/mini/preview", json=body, headers={"X-CSRF-Token": token})
        assert ok.status_code == 200 and ok.json()["sms"] == "hi"
