"""Unsubscribing from a link or a mail client's one-click button, over real HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from urllib.parse import unquote

import httpx
import time_machine
from sqlalchemy import select

from campaigns.enums import Channel, EnrollmentState
from campaigns.models import Consent, Enrollment, Event
from campaigns.runtime import Runtime
from campaigns.tokens import UNSUBSCRIBE_MAX_AGE, unsubscribe_token
from campaigns.web.app import create_app
from tests.email_support import base, clinic, send_due
from tests.factories import load_program, make_enrollment
from tests.fakes.smtp_server import INBOUND_SECRET, configure_email
from tests.servers import serve

__all__ = ["base", "clinic"]  # fixtures from tests.email_support

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York
DAY1_SEND = MONDAY + timedelta(hours=10)
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def emailed_patient(rt: Runtime) -> tuple[int, EmailMessage]:
    """An email patient who got day 1; returns the patient and the email as sent."""
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY, channel=Channel.EMAIL)
    [outbox_id] = send_due(rt, DAY1_SEND)
    path = rt.settings.resolved_outbox_dir / "email" / f"{outbox_id:09d}.eml"
    mime = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(mime, EmailMessage)
    return patient_id, mime


def one_click_path(mime: EmailMessage) -> str:
    """The https URL of List-Unsubscribe, as a mail client finds it, without the host."""
    url: str
    [url] = re.findall(
        r"<https://care\.clinic\.example(/unsubscribe/[^>]+)>", str(mime["List-Unsubscribe"])
    )
    return url


def consents(rt: Runtime, patient_id: int, channel: Channel) -> list[tuple[bool, str]]:
    with rt.session() as session:
        rows = session.scalars(
            select(Consent)
            .where(Consent.patient_id == patient_id, Consent.channel == channel)
            .order_by(Consent.id)
        )
        return [(c.granted, c.method) for c in rows]


def state(rt: Runtime, patient_id: int) -> EnrollmentState:
    with rt.session() as session:
        found = session.scalar(select(Enrollment.state).where(Enrollment.patient_id == patient_id))
    assert found is not None
    return found


# --- the page -------------------------------------------------------------------------------


def test_get_shows_a_confirmation_form_and_changes_nothing(clinic: Runtime, base: str) -> None:
    patient_id, mime = emailed_patient(clinic)
    page = httpx.get(base + one_click_path(mime))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in page.text and ">Unsubscribe</button>" in page.text
    assert "Riverside Pain Recovery Clinic" in page.text and "emails" in page.text
    assert "Sam" not in page.text and "@" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert consents(clinic, patient_id, Channel.EMAIL) == [(True, "enrolment")]


def test_the_pages_form_unsubscribes(clinic: Runtime, base: str) -> None:
    patient_id, mime = emailed_patient(clinic)
    done = httpx.post(base + one_click_path(mime), data={"confirm": "yes"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert consents(clinic, patient_id, Channel.EMAIL)[-1] == (False, "unsubscribe page")
    assert state(clinic, patient_id) == EnrollmentState.OPTED_OUT


def test_the_clinic_name_is_escaped(rt: Runtime) -> None:
    configure_email(rt, clinic_name="Pain & <b>Recovery</b>")
    _, mime = emailed_patient(rt)
    with serve(create_app(rt)) as base:
        page = httpx.get(base + one_click_path(mime))
    assert "Pain &amp; &lt;b&gt;Recovery&lt;/b&gt;" in page.text and "<b>" not in page.text


# --- one click ------------------------------------------------------------------------------


def test_one_click_post_unsubscribes_and_nothing_more_is_sent(clinic: Runtime, base: str) -> None:
    patient_id, mime = emailed_patient(clinic)
    assert str(mime["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    response = httpx.post(base + one_click_path(mime), data=ONE_CLICK)
    assert response.status_code == 200
    assert consents(clinic, patient_id, Channel.EMAIL)[-1] == (
        False,
        "email one-click unsubscribe",
    )
    assert state(clinic, patient_id) == EnrollmentState.OPTED_OUT
    with clinic.session() as session:
        event = session.scalars(select(Event).where(Event.kind == "opt-out")).one()
    assert event.reason == "patient unsubscribed: email one-click unsubscribe"
    for day in range(1, 6):
        assert send_due(clinic, DAY1_SEND + timedelta(days=day)) == []


def test_one_click_as_multipart_form_data_works_too(clinic: Runtime, base: str) -> None:
    """RFC 8058 says clients SHOULD send multipart/form-data."""
    patient_id, mime = emailed_patient(clinic)
    response = httpx.post(
        base + one_click_path(mime), files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert response.status_code == 200
    assert consents(clinic, patient_id, Channel.EMAIL)[-1][1] == "email one-click unsubscribe"


def test_a_second_post_is_harmless(clinic: Runtime, base: str) -> None:
    patient_id, mime = emailed_patient(clinic)
    first = httpx.post(base + one_click_path(mime), data=ONE_CLICK)
    again = httpx.post(base + one_click_path(mime), data=ONE_CLICK)
    assert (first.status_code, again.status_code) == (200, 200)
    assert consents(clinic, patient_id, Channel.EMAIL) == [
        (True, "enrolment"),
        (False, "email one-click unsubscribe"),
    ]
    with clinic.session() as session:
        assert len(session.scalars(select(Event).where(Event.kind == "opt-out")).all()) == 1


def test_unsubscribing_from_another_channel_keeps_the_program(clinic: Runtime, base: str) -> None:
    patient_id, _ = emailed_patient(clinic)
    token = unsubscribe_token(clinic.settings.signing_key, patient_id, Channel.SMS)
    page = httpx.get(f"{base}/unsubscribe/{token}")
    assert "text messages" in page.text
    assert httpx.post(f"{base}/unsubscribe/{token}", data=ONE_CLICK).status_code == 200
    assert consents(clinic, patient_id, Channel.SMS)[-1][0] is False
    assert consents(clinic, patient_id, Channel.EMAIL)[-1][0] is True
    assert state(clinic, patient_id) == EnrollmentState.ACTIVE


# --- bad links ------------------------------------------------------------------------------


def test_a_tampered_token_is_400_and_nothing_changes(clinic: Runtime, base: str) -> None:
    patient_id, mime = emailed_patient(clinic)
    path = one_click_path(mime)
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    for response in (httpx.get(base + tampered), httpx.post(base + tampered, data=ONE_CLICK)):
        assert response.status_code == 400
        assert "invalid or has expired" in response.text
    assert consents(clinic, patient_id, Channel.EMAIL) == [(True, "enrolment")]
    assert state(clinic, patient_id) == EnrollmentState.ACTIVE


def test_an_expired_token_is_400_and_nothing_changes(clinic: Runtime, base: str) -> None:
    patient_id, _ = emailed_patient(clinic)
    long_ago = datetime.now(UTC) - timedelta(seconds=UNSUBSCRIBE_MAX_AGE + 3600)
    with time_machine.travel(long_ago, tick=False):
        token = unsubscribe_token(clinic.settings.signing_key, patient_id, Channel.EMAIL)
    response = httpx.post(f"{base}/unsubscribe/{token}", data=ONE_CLICK)
    assert response.status_code == 400
    assert "this link has expired" in response.text
    assert consents(clinic, patient_id, Channel.EMAIL) == [(True, "enrolment")]


# --- the mailto alternative -----------------------------------------------------------------


def test_the_list_unsubscribe_mailto_unsubscribes_through_the_inbound_webhook(
    clinic: Runtime, base: str
) -> None:
    patient_id, mime = emailed_patient(clinic)
    [mailto] = re.findall(r"<mailto:([^>]+)>", str(mime["List-Unsubscribe"]))
    address, _, subject = mailto.partition("?subject=")
    request = EmailMessage()
    request["From"] = "sam@example.org"
    request["To"] = address
    request["Subject"] = unquote(subject)
    request["Message-ID"] = "<unsub-1@mail.example.org>"
    request.set_content("This message was automatically generated by Gmail.")
    response = httpx.post(
        f"{base}/webhooks/email/inbound",
        content=request.as_bytes(),
        headers={"Authorization": f"Bearer {INBOUND_SECRET}", "Content-Type": "message/rfc822"},
    )
    assert response.status_code == 200
    assert response.json()["unsubscribed"] is True
    assert consents(clinic, patient_id, Channel.EMAIL)[-1] == (False, "email unsubscribe request")
    assert state(clinic, patient_id) == EnrollmentState.OPTED_OUT
