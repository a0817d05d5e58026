"""Staff patient pages over real HTTP: list, enrol, import, the patient page and its actions."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from campaigns.enums import (
    AlertKind,
    AlertPriority,
    AlertStatus,
    Channel,
    EnrollmentState,
    MessagePurpose,
    MessageStatus,
)
from campaigns.models import (
    Alert,
    AuditEntry,
    Enrollment,
    Event,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
    utcnow,
)
from campaigns.runtime import Runtime
from tests.factories import MINI, load_program
from tests.web_support import csrf_from, login, make_user, web_server

FORM = {
    "first_name": "Ada",
    "last_name": "Byrne",
    "email": "ada@example.org",
    "phone": "+16502530001",
    "timezone": "America/Chicago",
    "channel": "sms",
    "send_time": "09:30",
    "external_ref": "",
    "program": "mini",
    "consent": "on",
}


@contextmanager
def staff_client(rt: Runtime) -> Iterator[httpx.Client]:
    load_program(rt)
    account = make_user(rt)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        login(client, account.email)
        yield client


def token(client: httpx.Client) -> str:
    return csrf_from(client.get("/patients/new").text)


def enrol(client: httpx.Client, **changes: str) -> int:
    response = client.post("/patients/new", data={**FORM, **changes, "csrf_token": token(client)})
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/patients/(\d+)", response.headers["location"])
    assert match
    return int(match.group(1))


def field_errors(html: str) -> dict[str, str]:
    pattern = r'<span class="field-error" data-field="(\w+)"[^>]*>([^<]*)</span>'
    return dict(re.findall(pattern, html))


def test_enrol_form_is_labelled_and_shows_inline_errors_saving_nothing(rt: Runtime) -> None:
    with staff_client(rt) as client:
        form = client.get("/patients/new").text
        bad = {**FORM, "phone": "12", "timezone": "Nowhere", "csrf_token": token(client)}
        del bad["consent"]
        response = client.post("/patients/new", data=bad)
        no_consent = {**FORM, "csrf_token": token(client)}
        del no_consent["consent"]
        consent_only = client.post("/patients/new", data=no_consent)
        no_csrf = client.post("/patients/new", data=FORM)
    for name in ("first_name", "last_name", "email", "phone", "timezone", "send_time"):
        assert f'<label for="{name}">' in form and f'name="{name}"' in form
    assert '<select id="channel" name="channel"' in form
    assert '<select id="program" name="program"' in form
    assert "Patient consented to messages on this channel" in form
    assert ">Enrol patient</button>" in form
    assert response.status_code == 422
    errors = field_errors(response.text)
    assert set(errors) == {"phone", "timezone"}
    assert 'value="Ada"' in response.text  # what was typed is kept
    assert field_errors(consent_only.text).keys() == {"consent"}
    assert no_csrf.status_code == 403
    with rt.session() as session:
        assert session.scalars(select(Patient)).all() == []


def test_enrol_redirects_to_the_patient_page_with_chart_and_timeline(rt: Runtime) -> None:
    with staff_client(rt) as client:
        pid = enrol(client)
        page = client.get(f"/patients/{pid}")
        missing = client.get("/patients/99999")
    assert page.status_code == 200
    assert '<section class="card" id="pain-chart"' in page.text and "<svg" in page.text
    assert '<section class="card" id="timeline"' in page.text
    assert 'id="pacing-state">active<' in page.text
    assert "step 0/4 sent" in page.text
    with rt.session() as session:
        due = session.scalars(select(Enrollment.next_due_at).where(Enrollment.patient_id == pid))
        expected = due.one().astimezone(ZoneInfo("America/Chicago"))  # type: ignore[union-attr]
    # before 09:30 Chicago time the first text waits for 09:30; later in the window it goes now
    assert time(9, 30) <= expected.time() < time(20, 0)
    assert f'id="next-due">{expected.strftime("%a %d %b %Y %H:%M %Z")}<' in page.text
    assert "staff@clinic.example" in page.text  # consent recorded by whom
    assert missing.status_code == 404


def _history(rt: Runtime, pid: int) -> None:
    """A sent message, a failed one, a reply with a high score and the flare it started."""
    now = utcnow()
    with rt.session() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.patient_id == pid)).one()
        step = next(s for s in enrollment.version.steps if s.key == "d1-hello")
        for status, offset in ((MessageStatus.DELIVERED, 3), (MessageStatus.FAILED, 2)):
            session.add(
                OutboxMessage(
                    patient_id=pid,
                    enrollment_id=enrollment.id,
                    step_id=step.id if offset == 3 else None,
                    occurrence=0,
                    purpose=MessagePurpose.PROGRAM,
                    channel=Channel.SMS,
                    body_text="Body of a message",
                    status=status,
                    planned_at=now - timedelta(days=offset),
                    sent_at=now - timedelta(days=offset),
                )
            )
        reply = InboundReply(
            patient_id=pid,
            enrollment_id=enrollment.id,
            channel=Channel.SMS,
            received_at=now - timedelta(days=1),
            raw_text="8 rough day",
            pain_score=8,
        )
        session.add(reply)
        session.flush()
        session.add(PainReport(patient_id=pid, reply_id=reply.id, score=8, reported_at=now))
        session.add(
            Event(
                at=now - timedelta(days=1),
                patient_id=pid,
                enrollment_id=enrollment.id,
                actor="system",
                kind="flare-start",
                from_state="active",
                to_state="flare",
                reason="score 8 >= threshold 7",
            )
        )
        enrollment.state = EnrollmentState.FLARE


def test_patient_page_shows_timeline_with_delivery_and_chart_with_flare(rt: Runtime) -> None:
    with staff_client(rt) as client:
        pid = enrol(client)
        _history(rt, pid)
        page = client.get(f"/patients/{pid}").text
    timeline = page[page.index('id="timeline"') :]
    assert "Hello" in timeline and "delivered" in timeline and "failed" in timeline
    assert "8 rough day" in timeline and "received" in timeline
    chart = page[page.index('id="pain-chart"') : page.index('id="timeline"')]
    assert 'class="flare-period"' in chart and "Flare starts" in chart


def test_list_searches_and_filters(rt: Runtime) -> None:
    with staff_client(rt) as client:
        ada = enrol(client, external_ref="MRN-7")
        bo = enrol(
            client, first_name="Bo", email="bo@example.org", phone="+16502530002", last_name="X"
        )
        _history(rt, bo)
        by_name = client.get("/patients", params={"q": "ada byr"}).text
        by_ref = client.get("/patients", params={"q": "mrn-7"}).text
        by_phone = client.get("/patients", params={"q": "0002"}).text
        flare = client.get("/patients", params={"in_flare": "true"}).text
        attention = client.get("/patients", params={"needs_attention": "true"}).text
        active = client.get("/patients", params={"state": "active", "program": "mini"}).text
        logged_out = httpx.get(str(client.base_url.join("/patients")))

    def ids(html: str) -> list[int]:
        return [int(i) for i in re.findall(r'<a href="/patients/(\d+)">', html)]

    assert ids(by_name) == [ada] == ids(by_ref) == ids(active)
    assert ids(by_phone) == [bo] == ids(flare) == ids(attention)
    assert "…0002" in by_phone
    assert logged_out.status_code == 303 and logged_out.headers["location"].startswith("/login")


def test_pause_resume_withdraw_forms_are_audited(rt: Runtime) -> None:
    with staff_client(rt) as client:
        pid = enrol(client)
        csrf = token(client)
        paused = client.post(f"/patients/{pid}/pause", data={"csrf_token": csrf, "note": "trip"})
        page = client.get(paused.headers["location"]).text
        again = client.post(f"/patients/{pid}/pause", data={"csrf_token": csrf})
        resumed = client.post(f"/patients/{pid}/resume", data={"csrf_token": csrf})
        forged = client.post(f"/patients/{pid}/withdraw", data={"note": "no token"})
        withdrawn = client.post(f"/patients/{pid}/withdraw", data={"csrf_token": csrf})
        final = client.get(f"/patients/{pid}").text
    assert paused.status_code == 303 and "Paused: nothing will be sent" in page
    assert 'id="pacing-state">paused<' in page and "nothing due" in page
    assert again.status_code == 409 and "cannot pause" in again.text
    assert resumed.status_code == 303 and withdrawn.status_code == 303
    assert forged.status_code == 403
    assert 'id="pacing-state">withdrawn<' in final
    with rt.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.entity == "enrollment").order_by(AuditEntry.id)
        ).all()
        reasons = session.scalars(select(Event.reason).where(Event.kind == "pause")).all()
    assert [(e.action, e.before and e.before["state"]) for e in entries] == [
        ("pause", "active"),
        ("resume", "paused"),
        ("withdraw", "active"),
    ]
    assert reasons == ["paused by staff (staff@clinic.example): trip"]


def _shorter_version(rt: Runtime, tmp_path: Path) -> int:
    """Version 2 of the mini program with only two main steps."""
    folder = tmp_path / "v2" / "mini"
    shutil.copytree(MINI, folder)
    spec = folder / "program.yaml"
    lines = spec.read_text().splitlines()
    spec.write_text(
        "\n".join(line for line in lines if "d3-move" not in line and "d4-check" not in line) + "\n"
    )
    return load_program(rt, folder)


def test_move_to_another_version_previews_then_moves_with_audit(
    rt: Runtime, tmp_path: Path
) -> None:
    with staff_client(rt) as client:
        pid = enrol(client)
        with rt.session() as session:
            enrollment = session.scalars(select(Enrollment)).one()
            enrollment.main_position = 3
        v2 = _shorter_version(rt, tmp_path)
        page = client.get(f"/patients/{pid}").text
        preview = client.get(f"/patients/{pid}/move", params={"version_id": v2})
        moved = client.post(
            f"/patients/{pid}/move", data={"version_id": str(v2), "csrf_token": token(client)}
        )
        same = client.get(f"/patients/{pid}/move", params={"version_id": v2})
        after = client.get(f"/patients/{pid}").text
    assert 'name="version_id"' in page and "version 2" in page
    assert preview.status_code == 200
    assert "step 2 of 2" in preview.text and "will complete the program" in preview.text
    assert moved.status_code == 303
    assert same.status_code == 409 and "already on this version" in same.text
    assert "Mini Program, version 2" in after and "step 2/2 sent" in after
    with rt.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "move-version")).one()
    assert entry.before is not None and entry.after is not None
    assert (entry.before["main_position"], entry.after["main_position"]) == (3, 2)
    assert entry.after["version_id"] == v2


def test_export_downloads_json_and_is_audited(rt: Runtime) -> None:
    with staff_client(rt) as client:
        pid = enrol(client)
        response = client.post(f"/patients/{pid}/export", data={"csrf_token": token(client)})
    assert response.headers["content-disposition"] == f'attachment; filename="patient-{pid}.json"'
    assert response.json()["patient"]["first_name"] == "Ada"
    with rt.session() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "export")).one()


def test_import_page_reports_rows_and_refuses_bad_files(rt: Runtime) -> None:
    csv_text = (
        "first_name,last_name,email,phone,timezone,channel,consent_sms,consent_email,program\n"
        "Bo,Lee,bo@example.org,+16502530002,Europe/London,sms,yes,no,mini\n"
        "Cy,Lee,cy@example.org,+16502530003,Europe/London,sms,no,no,mini\n"
    )
    with staff_client(rt) as client:
        form = client.get("/patients/import").text
        csrf = csrf_from(form)
        done = client.post(
            "/patients/import",
            data={"csrf_token": csrf},
            files={"file": ("p.csv", csv_text, "text/csv")},
        )
        refused = client.post(
            "/patients/import",
            data={"csrf_token": csrf},
            files={"file": ("p.csv", b"\xff\xfe garbage", "text/csv")},
        )
    assert '<label for="file">' in form and "/static/import.js" in form
    assert 'id="count-enrolled" class="ok">1 enrolled' in done.text
    assert "<td>3</td><td>consent_sms</td>" in done.text
    assert refused.status_code == 422 and "not UTF-8" in refused.text
    with rt.session() as session:
        assert len(session.scalars(select(Patient)).all()) == 1


def test_alert_badge_marks_patients_needing_attention(rt: Runtime) -> None:
    with staff_client(rt) as client:
        pid = enrol(client)
        with rt.session() as session:
            session.add(
                Alert(
                    patient_id=pid,
                    kind=AlertKind.CRISIS,
                    priority=AlertPriority.HIGH,
                    status=AlertStatus.OPEN,
                    summary="crisis words",
                    created_at=utcnow(),
                )
            )
        listing = client.get("/patients").text
        page = client.get(f"/patients/{pid}").text
    assert "needs attention" in listing
    assert 'id="patient-alerts"' in page and "crisis words" in page
