"""The staff JSON API over real HTTP: enrol, find, act on and export patients; work alerts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from campaigns.enums import AlertKind, AlertPriority, AlertStatus, EnrollmentState
from campaigns.models import Alert, AuditEntry, Consent, Enrollment, Patient, utcnow
from campaigns.runtime import Runtime
from tests.factories import load_program
from tests.web_support import api_token, csrf_from, login, make_user, web_server

GOOD: dict[str, Any] = {
    "first_name": "Ada",
    "last_name": "Byrne",
    "email": "ada@example.org",
    "phone": "+16502530001",
    "timezone": "America/Chicago",
    "channel": "sms",
    "send_time": "09:30",
    "consent_sms": True,
    "external_ref": "MRN-1",
    "program": "mini",
}


@contextmanager
def api(rt: Runtime) -> Iterator[httpx.Client]:
    load_program(rt)
    token = api_token(rt, make_user(rt))
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def enrol(client: httpx.Client, **changes: Any) -> int:
    response = client.post("/api/patients", json={**GOOD, **changes})
    assert response.status_code == 201, response.text
    patient_id: int = response.json()["patient_id"]
    return patient_id


def fields_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {str(d["loc"][-1]): d["msg"] for d in response.json()["detail"]}


def add_alert(rt: Runtime, patient_id: int, kind: AlertKind, age_hours: int = 0) -> int:
    with rt.session() as session:
        alert = Alert(
            patient_id=patient_id,
            kind=kind,
            priority=AlertPriority.HIGH if kind == AlertKind.CRISIS else AlertPriority.NORMAL,
            status=AlertStatus.OPEN,
            summary=f"{kind.value} alert",
            created_at=utcnow() - timedelta(hours=age_hours),
        )
        session.add(alert)
        session.flush()
        return alert.id


def test_enrol_records_consent_and_audit_then_patient_is_found(rt: Runtime) -> None:
    with api(rt) as client:
        patient_id = enrol(client)
        listed = client.get("/api/patients", params={"q": "0001"}).json()
        by_ref = client.get("/api/patients", params={"q": "mrn-1", "program": "mini"}).json()
        detail = client.get(f"/api/patients/{patient_id}").json()
        assert client.get("/api/patients", params={"q": "nobody"}).json() == []
        flare = client.get("/api/patients", params={"in_flare": "true"}).json()
    assert [p["id"] for p in listed] == [patient_id] == [p["id"] for p in by_ref]
    assert listed[0]["phone_last4"] == "0001" and listed[0]["state"] == "active"
    assert flare == []
    assert detail["phone"] == "+16502530001"
    assert detail["pacing"]["state"] == "active" and detail["pacing"]["steps"] == 4
    assert detail["pacing"]["next_due_local"].endswith(("-05:00", "-06:00"))
    with rt.session() as session:
        consent = session.scalars(select(Consent).where(Consent.patient_id == patient_id)).one()
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "enrol")).one()
    assert (consent.channel, consent.recorded_by, consent.method) == (
        "sms",
        "staff@clinic.example",
        "api",
    )
    assert entry.after is not None and entry.after["consent_sms"] is True


def test_bad_enrolment_is_422_naming_each_field_and_stores_nothing(rt: Runtime) -> None:
    with api(rt) as client:
        bad_phone = fields_of(client.post("/api/patients", json={**GOOD, "phone": "+1555"}))
        bad_zone = fields_of(client.post("/api/patients", json={**GOOD, "timezone": "Mars/Base"}))
        no_consent = fields_of(client.post("/api/patients", json={**GOOD, "consent_sms": False}))
        no_program = fields_of(client.post("/api/patients", json={**GOOD, "program": "nope"}))
        missing = fields_of(client.post("/api/patients", json={"first_name": "A"}))
        bad_email = fields_of(client.post("/api/patients", json={**GOOD, "email": "not-an-email"}))
        enrol(client)
        duplicate = fields_of(client.post("/api/patients", json=GOOD))
    assert "not a valid number" in bad_phone["phone"]
    assert "IANA" in bad_zone["timezone"]
    assert "consent" in no_consent["consent_sms"]
    assert "no program" in no_program["program"]
    assert {"timezone", "channel", "program"} <= set(missing)
    assert "email" in bad_email
    assert {"phone", "email", "external_ref"} == set(duplicate)
    with rt.session() as session:
        assert len(session.scalars(select(Patient)).all()) == 1


def test_pause_resume_withdraw_are_audited_and_refused_when_not_applicable(rt: Runtime) -> None:
    with api(rt) as client:
        pid = enrol(client)
        paused = client.post(f"/api/patients/{pid}/pause", json={"note": "on holiday"})
        again = client.post(f"/api/patients/{pid}/pause")
        resumed = client.post(f"/api/patients/{pid}/resume")
        withdrawn = client.post(f"/api/patients/{pid}/withdraw")
        after = client.post(f"/api/patients/{pid}/resume")
        unknown = client.post("/api/patients/999999/pause")
        bad_note = client.post(f"/api/patients/{pid}/pause", json={"note": "x" * 201})
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert paused.json()["next_due_at"] is None
    assert again.status_code == 409 and "paused" in again.json()["detail"]
    assert resumed.json()["state"] == "active"
    assert withdrawn.json()["state"] == "withdrawn"
    assert after.status_code == 409
    assert unknown.status_code == 404
    assert fields_of(bad_note)["note"]
    with rt.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.entity == "enrollment").order_by(AuditEntry.id)
        ).all()
        enrollment = session.scalars(select(Enrollment)).one()
    assert [e.action for e in entries] == ["pause", "resume", "withdraw"]
    assert entries[0].before is not None and entries[0].before["state"] == "active"
    assert entries[0].after is not None and entries[0].after["state"] == "paused"
    assert enrollment.state == EnrollmentState.WITHDRAWN and enrollment.ended_at is not None


def test_export_holds_every_section_and_is_audited(rt: Runtime) -> None:
    with api(rt) as client:
        pid = enrol(client)
        add_alert(rt, pid, AlertKind.CRISIS)
        response = client.get(f"/api/patients/{pid}/export")
        missing = client.get("/api/patients/424242/export")
    data = response.json()
    assert response.status_code == 200 and missing.status_code == 404
    assert data["patient"]["phone_e164"] == "+16502530001"
    assert len(data["consents"]) == 1 and len(data["enrollments"]) == 1
    assert len(data["alerts"]) == 1 and data["events"][0]["kind"] == "enrolled"
    for section in ("outbox", "replies", "pain_reports"):
        assert data[section] == []
    with rt.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "export")).one()
    assert entry.after == {
        "consents": 1,
        "enrollments": 1,
        "outbox": 0,
        "replies": 0,
        "pain_reports": 0,
        "events": 1,
        "alerts": 1,
    }


def test_csv_import_over_the_api_returns_the_row_report(rt: Runtime) -> None:
    csv_text = (
        "first_name,last_name,email,phone,timezone,channel,consent_sms,consent_email,program\n"
        "Bo,Lee,bo@example.org,+16502530002,Europe/London,sms,yes,no,mini\n"
        "Cy,Lee,cy@example.org,+16502530003,Nowhere/Zone,sms,yes,no,mini\n"
    )
    with api(rt) as client:
        response = client.post(
            "/api/patients/import", files={"file": ("p.csv", csv_text, "text/csv")}
        )
        refused = client.post(
            "/api/patients/import", files={"file": ("p.csv", b"first_name\nA\n", "text/csv")}
        )
        no_file = client.post("/api/patients/import")
    report = response.json()
    assert report["total"] == 2 and [r["row"] for r in report["enrolled"]] == [2]
    assert [(r["row"], r["field"]) for r in report["rejected"]] == [(3, "timezone")]
    assert "missing required column" in fields_of(refused)["file"]
    assert "file" in fields_of(no_file)


def test_alert_inbox_orders_and_updates_with_audit(rt: Runtime) -> None:
    with api(rt) as client:
        pid = enrol(client)
        old_flare = add_alert(rt, pid, AlertKind.LONG_FLARE, age_hours=5)
        new_flare = add_alert(rt, pid, AlertKind.LONG_FLARE, age_hours=1)
        crisis = add_alert(rt, pid, AlertKind.CRISIS, age_hours=9)
        acked = client.post(f"/api/alerts/{crisis}/acknowledge")
        order = [a["id"] for a in client.get("/api/alerts").json()]
        resolved = client.post(f"/api/alerts/{crisis}/resolve")
        twice = client.post(f"/api/alerts/{crisis}/resolve")
        ack_resolved = client.post(f"/api/alerts/{crisis}/acknowledge")
        open_only = [a["id"] for a in client.get("/api/alerts?status=open").json()]
        bad_status = client.get("/api/alerts?status=closed")
        unknown = client.post("/api/alerts/999999/resolve")
    assert acked.json()["status"] == "acknowledged"
    assert order == [new_flare, old_flare, crisis]  # open first, newest first
    assert resolved.json()["status"] == "resolved"
    assert twice.status_code == 409 and ack_resolved.status_code == 409
    assert open_only == [new_flare, old_flare]
    assert "status" in fields_of(bad_status)
    assert unknown.status_code == 404
    with rt.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.entity == "alert").order_by(AuditEntry.id)
        ).all()
    assert [(e.action, e.before, e.after) for e in entries] == [
        ("acknowledge", {"status": "open"}, {"status": "acknowledged"}),
        ("resolve", {"status": "acknowledged"}, {"status": "resolved"}),
    ]


def test_crisis_comes_before_long_flares_among_open_alerts(rt: Runtime) -> None:
    with api(rt) as client:
        pid = enrol(client)
        flare = add_alert(rt, pid, AlertKind.LONG_FLARE, age_hours=0)
        crisis = add_alert(rt, pid, AlertKind.CRISIS, age_hours=48)
        order = [a["id"] for a in client.get("/api/alerts").json()]
    assert order == [crisis, flare]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/patients"),
        ("POST", "/api/patients"),
        ("GET", "/api/patients/1"),
        ("POST", "/api/patients/1/pause"),
        ("POST", "/api/patients/1/resume"),
        ("POST", "/api/patients/1/withdraw"),
        ("GET", "/api/patients/1/export"),
        ("POST", "/api/patients/import"),
        ("GET", "/api/alerts"),
        ("POST", "/api/alerts/1/acknowledge"),
        ("POST", "/api/alerts/1/resolve"),
    ],
)
def test_every_endpoint_needs_a_user(rt: Runtime, method: str, path: str) -> None:
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        response = client.request(method, path)
        bad_token = client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert bad_token.status_code == 401


def test_browser_api_calls_need_the_csrf_header(rt: Runtime) -> None:
    load_program(rt)
    account = make_user(rt)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        login(client, account.email)
        token = csrf_from(client.get("/patients/new").text)
        refused = client.post("/api/patients", json=GOOD)
        created = client.post("/api/patients", json=GOOD, headers={"X-CSRF-Token": token})
        listed = client.get("/api/patients")
    assert refused.status_code == 403
    assert created.status_code == 201
    assert len(listed.json()) == 1
