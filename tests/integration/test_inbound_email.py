"""Email replies over real HTTP: authentication, matching, quote stripping, the round trip."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import httpx
import pytest
import time_machine
from sqlalchemy import select

from campaigns.channels.smtp_email import SmtpConfig, SmtpEmailTransport
from campaigns.email_headers import EmailIdentity
from campaigns.email_text import html_to_text, new_words
from campaigns.enums import Channel, EnrollmentState, MessagePurpose, MessageStatus, StepKind
from campaigns.logs import configure
from campaigns.models import Consent, Enrollment, InboundReply, OutboxMessage, Patient, ProgramStep
from campaigns.runtime import Runtime
from campaigns.web.app import create_app
from tests.email_support import base, clinic, send_due
from tests.factories import load_program, make_enrollment
from tests.fakes.mail_clients import CLIENTS, gmail
from tests.fakes.smtp_server import INBOUND_SECRET, Received, configure_email, smtp_server
from tests.servers import serve

__all__ = ["base", "clinic"]  # fixtures from tests.email_support

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York
DAY1_SEND = MONDAY + timedelta(hours=10)
URL = "/webhooks/email/inbound"
RFC822 = {"Content-Type": "message/rfc822"}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure(logging.INFO, stream=buffer)
    yield buffer
    configure(logging.WARNING)


def bearer(secret: str = INBOUND_SECRET) -> dict[str, str]:
    return {**RFC822, "Authorization": f"Bearer {secret}"}


def basic(password: str, user: str = "mailgun") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {**RFC822, "Authorization": f"Basic {token}"}


def post(base: str, raw: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{base}{URL}", content=raw, headers=bearer() if headers is None else headers)


def sent_email(rt: Runtime) -> tuple[int, int, EmailMessage]:
    """Enrol an email patient and send day 1; returns (patient, outbox id, the .eml)."""
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY, channel=Channel.EMAIL)
    [outbox_id] = send_due(rt, DAY1_SEND)
    path = rt.settings.resolved_outbox_dir / "email" / f"{outbox_id:09d}.eml"
    mime = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(mime, EmailMessage)
    return patient_id, outbox_id, mime


def patient_email(rt: Runtime, patient_id: int) -> str:
    with rt.session() as session:
        email = session.get_one(Patient, patient_id).email
    assert email is not None
    return email


def replies(rt: Runtime) -> list[InboundReply]:
    with rt.session() as session:
        return list(session.scalars(select(InboundReply).order_by(InboundReply.id)))


def enrollment_state(rt: Runtime, patient_id: int) -> EnrollmentState:
    with rt.session() as session:
        state = session.scalar(select(Enrollment.state).where(Enrollment.patient_id == patient_id))
    assert state is not None
    return state


def gmail_style(original: EmailMessage, patient: str, body: str, **headers: str) -> bytes:
    """A reply with exactly ``body`` as its text, threaded onto ``original``."""
    reply = EmailMessage()
    reply["From"] = f"Sam Rivera <{patient}>"
    reply["To"] = str(original["Reply-To"])
    reply["Subject"] = f"Re: {original['Subject']}"
    reply["Message-ID"] = headers.pop("message_id", "<CAF=reply-1@mail.gmail.com>")
    reply["In-Reply-To"] = str(original["Message-ID"])
    reply["References"] = str(original["Message-ID"])
    for name, value in headers.items():
        reply[name.replace("_", "-")] = value
    reply.set_content(body)
    return reply.as_bytes()


QUOTED_STOP = (
    "8, awful flare\n\nOn Mon, Mar 2, 2026 at 10:00 AM Riverside Pain Recovery Clinic "
    "<care@clinic.example> wrote:\n> Hi Sam, how is your pain today? Reply 0-10.\n>\n"
    "> Reply STOP to opt out of these emails.\n"
)


# --- authentication -------------------------------------------------------------------------


def test_good_secret_stores_the_new_words_linked_to_the_email_they_answer(
    clinic: Runtime, base: str
) -> None:
    patient_id, outbox_id, original = sent_email(clinic)
    raw = gmail_style(original, patient_email(clinic, patient_id), QUOTED_STOP)
    response = post(base, raw)
    assert response.status_code == 200, response.text
    [reply] = replies(clinic)
    assert response.json() == {
        "reply_id": reply.id,
        "duplicate": False,
        "unsubscribed": False,
        "ignored": None,
    }
    assert (reply.raw_text, reply.pain_score, reply.channel) == ("8, awful flare", 8, Channel.EMAIL)
    assert (reply.in_reply_to_id, reply.provider_id) == (outbox_id, "<CAF=reply-1@mail.gmail.com>")


def test_quoted_stop_in_the_clinics_own_text_does_not_opt_out(clinic: Runtime, base: str) -> None:
    patient_id, _, original = sent_email(clinic)
    post(base, gmail_style(original, patient_email(clinic, patient_id), QUOTED_STOP))
    with clinic.session() as session:
        consents = session.scalars(select(Consent).where(Consent.patient_id == patient_id)).all()
    assert [c.granted for c in consents] == [True, True]  # enrolment: sms and email
    assert enrollment_state(clinic, patient_id) == EnrollmentState.FLARE
    assert "STOP" not in replies(clinic)[0].keywords


def test_basic_auth_with_the_secret_as_password_is_accepted(clinic: Runtime, base: str) -> None:
    patient_id, _, original = sent_email(clinic)
    raw = gmail_style(original, patient_email(clinic, patient_id), "5")
    assert post(base, raw, basic(INBOUND_SECRET)).status_code == 200
    assert len(replies(clinic)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        RFC822,
        bearer("wrong-secret"),
        basic("wrong-secret"),
        basic(INBOUND_SECRET[:-1]),
        {**RFC822, "Authorization": f"Token {INBOUND_SECRET}"},
        {**RFC822, "Authorization": "Basic not-base64!"},
    ],
    ids=["none", "wrong-bearer", "wrong-basic", "prefix", "other-scheme", "garbled"],
)
def test_missing_or_wrong_secret_is_401_and_nothing_is_stored(
    clinic: Runtime, base: str, headers: dict[str, str]
) -> None:
    patient_id, _, original = sent_email(clinic)
    response = post(base, gmail_style(original, patient_email(clinic, patient_id), "STOP"), headers)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    assert replies(clinic) == []
    assert enrollment_state(clinic, patient_id) == EnrollmentState.ACTIVE


def test_without_a_configured_secret_the_endpoint_refuses_everything(rt: Runtime) -> None:
    configure_email(rt, inbound_email_secret=None)
    patient_id, _, original = sent_email(rt)
    with serve(create_app(rt)) as base:
        response = post(base, gmail_style(original, patient_email(rt, patient_id), "5"))
    assert response.status_code == 503
    assert replies(rt) == []


# --- what is stored -------------------------------------------------------------------------


def test_the_same_message_id_twice_is_stored_once(clinic: Runtime, base: str) -> None:
    patient_id, _, original = sent_email(clinic)
    raw = gmail_style(original, patient_email(clinic, patient_id), "pain 4")
    first, again = post(base, raw).json(), post(base, raw).json()
    assert again == {**first, "duplicate": True}
    assert len(replies(clinic)) == 1


@pytest.mark.parametrize("html_only", [False, True], ids=["text", "html-only"])
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_replies_from_common_mail_clients_keep_only_the_patients_words(
    clinic: Runtime, base: str, client: str, html_only: bool
) -> None:
    patient_id, outbox_id, original = sent_email(clinic)
    words = "Pain 6 today, a bit worse after the walk."
    raw = CLIENTS[client](original, patient_email(clinic, patient_id), words, html_only=html_only)
    assert post(base, raw).status_code == 200
    [reply] = replies(clinic)
    assert (reply.raw_text, reply.pain_score, reply.in_reply_to_id) == (words, 6, outbox_id)


def test_a_reply_without_threading_headers_is_matched_by_its_reply_address(
    clinic: Runtime, base: str
) -> None:
    patient_id, outbox_id, original = sent_email(clinic)
    raw = CLIENTS["outlook"](original, patient_email(clinic, patient_id), "3", threaded=False)
    assert post(base, raw).status_code == 200
    assert replies(clinic)[0].in_reply_to_id == outbox_id


def test_stop_by_email_revokes_email_consent_opts_out_and_confirms_by_email(
    clinic: Runtime,
) -> None:
    patient_id, _, original = sent_email(clinic)
    raw = CLIENTS["apple-mail"](original, patient_email(clinic, patient_id), "STOP")
    with serve(create_app(clinic)) as base:  # leaving waits for the confirmation's send
        assert post(base, raw).status_code == 200
    with clinic.session() as session:
        consent = session.scalars(select(Consent).order_by(Consent.id.desc())).first()
        confirmation = session.scalars(
            select(OutboxMessage).where(OutboxMessage.purpose == MessagePurpose.CONFIRMATION)
        ).one()
    assert consent is not None
    assert (consent.channel, consent.granted, consent.method) == (
        Channel.EMAIL,
        False,
        "email keyword STOP",
    )
    assert enrollment_state(clinic, patient_id) == EnrollmentState.OPTED_OUT
    assert (confirmation.channel, confirmation.status) == (Channel.EMAIL, MessageStatus.SENT)


def test_automatic_replies_are_acknowledged_but_not_stored(clinic: Runtime, base: str) -> None:
    patient_id, _, original = sent_email(clinic)
    raw = gmail_style(
        original,
        patient_email(clinic, patient_id),
        "I am out of the office until Monday. Stop by reception if urgent.",
        Auto_Submitted="auto-replied",
    )
    response = post(base, raw)
    assert response.status_code == 200
    assert response.json()["ignored"] == "automatic reply"
    assert replies(clinic) == []


# --- refusals -------------------------------------------------------------------------------


def test_a_forged_reply_address_matches_nothing_and_stores_nothing(
    clinic: Runtime, base: str
) -> None:
    patient_id, outbox_id, original = sent_email(clinic)
    raw = CLIENTS["gmail"](original, patient_email(clinic, patient_id), "STOP", threaded=False)
    forged = raw.replace(f"reply+{outbox_id}-".encode(), f"reply+{outbox_id + 1}-".encode())
    response = post(base, forged)
    assert response.status_code == 422
    assert response.json()["detail"] == "the email does not answer any message we sent"
    assert replies(clinic) == []
    assert enrollment_state(clinic, patient_id) == EnrollmentState.ACTIVE


def test_a_reply_to_an_unknown_message_id_is_refused(clinic: Runtime, base: str) -> None:
    patient_id, _, original = sent_email(clinic)
    del original["Reply-To"]
    original["Reply-To"] = "care@clinic.example"
    del original["Message-ID"]
    original["Message-ID"] = "<not-ours@clinic.example>"
    response = post(base, gmail_style(original, patient_email(clinic, patient_id), "5"))
    assert response.status_code == 422
    assert replies(clinic) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"hello, this is not an email", "not an email: no From or Message-ID header"),
        (b"   ", "empty message"),
        (
            b"From: a@example.org\r\nMessage-ID: <x@y>\r\nContent-Type: image/png\r\n\r\nPNG",
            "no text in the email",
        ),
    ],
    ids=["plain-words", "blank", "no-text-part"],
)
def test_unparseable_input_is_422_with_a_reason(
    clinic: Runtime, base: str, body: bytes, reason: str
) -> None:
    response = post(base, body, {**bearer(), "Content-Type": "text/plain"})
    assert response.status_code == 422
    assert response.json()["detail"] == reason


def test_a_json_body_is_not_raw_mime(base: str) -> None:
    response = httpx.post(
        f"{base}{URL}", json={"text": "5"}, headers={"Authorization": "Bearer " + INBOUND_SECRET}
    )
    assert response.status_code == 415


def test_logs_carry_ids_but_no_addresses_or_words(
    clinic: Runtime, base: str, captured: io.StringIO
) -> None:
    patient_id, _, original = sent_email(clinic)
    email = patient_email(clinic, patient_id)
    post(base, gmail(original, email, "my secret diary line, pain 6"))
    logs = captured.getvalue()
    assert '"event": "email-reply"' in logs and '"sender_is_patient": true' in logs
    assert email not in logs and "diary" not in logs and "reply+" not in logs


# --- the round trip by email ----------------------------------------------------------------


def test_round_trip_flare_reply_by_email_brings_flare_support_by_smtp(rt: Runtime) -> None:
    with smtp_server() as server:
        configure_email(rt)
        transport = SmtpEmailTransport(
            SmtpConfig("127.0.0.1", server.port, timeout=5),
            EmailIdentity.from_settings(rt.settings),
        )
        configure_email(rt, transport)
        try:
            patient_id = round_trip(rt, server.handler.received)
        finally:
            transport.close()
    day2 = server.handler.received[-1].message()
    assert str(day2["Subject"]) == "Mini f1-normal (week 1)"
    assert enrollment_state(rt, patient_id) == EnrollmentState.FLARE


def round_trip(rt: Runtime, received: list[Received]) -> int:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY, channel=Channel.EMAIL)
    [day1_id] = send_due(rt, DAY1_SEND)
    day1 = received[0].message()
    raw = gmail(day1, patient_email(rt, patient_id), "8, awful flare")
    with time_machine.travel(DAY1_SEND + timedelta(hours=2)), serve(create_app(rt)) as base:
        assert post(base, raw).status_code == 200  # the app reads the (travelled) clock
    assert enrollment_state(rt, patient_id) == EnrollmentState.FLARE
    assert replies(rt)[0].in_reply_to_id == day1_id
    [day2_id] = send_due(rt, DAY1_SEND + timedelta(days=1))
    with rt.session() as session:
        row = session.get_one(OutboxMessage, day2_id)
        step = session.get_one(ProgramStep, row.step_id)
    assert (step.kind, row.status) == (StepKind.FLARE_SUPPORT, MessageStatus.SENT)
    assert len(received) == 2
    return patient_id


# --- the text itself (pure functions) -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("5 today\n\n-- \nSam Rivera\n+1 555 123 4567\n", "5 today"),
        ("On Mon, Mar 2, 2026 at 10:00 AM Clinic <c@x.org> wrote:\n> How is it?\n\n4 now", "4 now"),
        ("> How is your pain?\n6\n> Did you journal?\nyes I did", "6\nyes I did"),
        ("Today:\n- walked 10 min\n- pain 3", "Today:\n- walked 10 min\n- pain 3"),
        ("4\n\n-----Original Message-----\nFrom: Clinic\nSent: Monday\n\nReply STOP", "4"),
        ("\n\nOn Mon, Mar 2, 2026 at 10:00 AM Clinic <c@x.org> wrote:\n> Reply STOP", ""),
    ],
    ids=["dash-signature", "bottom-post", "inline", "hyphen-list", "original-message", "empty"],
)
def test_new_words(body: str, expected: str) -> None:
    assert new_words(body) == expected


def test_a_valediction_never_hides_crisis_language() -> None:
    body = "Rough night.\nThanks, but honestly I want to die\n\nOn Mon, Mar 2 Clinic wrote:\n> hi"
    assert "want to die" in new_words(body)


def test_html_quotes_become_quoted_lines() -> None:
    html = (
        "<html><head><style>p{margin:0}</style></head><body><p>7 &amp; tired</p>"
        "<blockquote type='cite'><p>Reply STOP</p><blockquote><p>older</p></blockquote>"
        "</blockquote></body></html>"
    )
    assert html_to_text(html) == "7 & tired\n> Reply STOP\n> > older"
