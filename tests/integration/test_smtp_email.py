"""Program email through a real SMTP server (aiosmtpd): TLS, AUTH, headers, error mapping."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from campaigns.channels.base import DeliveryError, OutgoingMessage
from campaigns.channels.smtp_email import (
    PROBE_AFTER_SECONDS,
    Security,
    SmtpConfig,
    SmtpEmailTransport,
)
from campaigns.email_headers import (
    EmailIdentity,
    bounce_address,
    read_bounce_address,
    read_reply_address,
)
from campaigns.enums import Channel, MessageStatus
from campaigns.logs import configure
from campaigns.models import OutboxMessage, Patient
from campaigns.outbox import DeliveryResult, deliver
from campaigns.runtime import Runtime
from campaigns.tokens import read_unsubscribe_token
from tests.email_support import send_due
from tests.factories import load_program, make_enrollment
from tests.fakes.smtp_server import PASSWORD, USERNAME, configure_email, smtp_server
from tests.fakes.tls import Certificates, make_certificates
from tests.servers import free_port

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York
DAY1_SEND = MONDAY + timedelta(hours=10)


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "tls")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure(logging.INFO, stream=buffer)
    yield buffer
    configure(logging.WARNING)


@pytest.fixture
def transports() -> Iterator[list[SmtpEmailTransport]]:
    """Every transport a test makes is closed (QUIT) afterwards."""
    made: list[SmtpEmailTransport] = []
    yield made
    for transport in made:
        transport.close()


def smtp(
    rt: Runtime,
    made: list[SmtpEmailTransport],
    port: int,
    security: Security = "none",
    certs: Certificates | None = None,
    probe_after: float = PROBE_AFTER_SECONDS,
    **config: str,
) -> SmtpEmailTransport:
    """An SMTP transport for ``rt``, installed as its email transport."""
    configure_email(rt)
    transport = SmtpEmailTransport(
        SmtpConfig("127.0.0.1", port, security, timeout=5, **config),
        EmailIdentity.from_settings(rt.settings),
        ssl_context=certs.client_context() if certs else None,
        probe_after=probe_after,
    )
    made.append(transport)
    configure_email(rt, transport)
    return transport


def email_patient(rt: Runtime) -> tuple[int, str]:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY, channel=Channel.EMAIL)
    with rt.session() as session:
        email = session.get_one(Patient, patient_id).email
    assert email is not None
    return patient_id, email


def outbox_row(rt: Runtime, outbox_id: int) -> OutboxMessage:
    with rt.session() as session:
        return session.get_one(OutboxMessage, outbox_id)


def message(to: str, outbox_id: int = 1) -> OutgoingMessage:
    return OutgoingMessage(
        outbox_id=outbox_id,
        patient_id=1,
        channel=Channel.EMAIL,
        to=to,
        body_text="How is your pain today? Reply 0-10.",
        subject="Day 1",
        body_html="<p>How is your pain today?</p>",
    )


# --- what goes out ----------------------------------------------------------------------


def test_program_email_arrives_as_multipart_with_threading_and_unsubscribe_headers(
    rt: Runtime, transports: list[SmtpEmailTransport]
) -> None:
    with smtp_server() as server:
        smtp(rt, transports, server.port)
        patient_id, email = email_patient(rt)
        [sent_id] = send_due(rt, DAY1_SEND)
    [received] = server.handler.received
    mime = received.message()
    row = outbox_row(rt, sent_id)

    identity = EmailIdentity.from_settings(rt.settings)
    assert (received.mail_from, received.rcpt_tos) == (bounce_address(identity, sent_id), [email])
    verp = read_bounce_address(identity.key, identity.reply_domain, received.mail_from)
    assert verp == sent_id, "bounces name the message that failed"
    assert str(mime["From"]) == "Riverside Pain Recovery Clinic <care@clinic.example>"
    assert str(mime["To"]) == email
    assert str(mime["Subject"]) == "Mini d1-hello (week 1)"
    assert parsedate_to_datetime(str(mime["Date"])).tzinfo is not None
    assert row.status == MessageStatus.SENT and row.provider_id == str(mime["Message-ID"])
    assert re.fullmatch(rf"<{sent_id}\.[0-9a-f]{{16}}@clinic\.example>", row.provider_id)
    [reply_to] = mime["Reply-To"].addresses
    assert reply_to.display_name == "Riverside Pain Recovery Clinic"
    key = rt.settings.signing_key
    assert read_reply_address(key, "reply.clinic.example", reply_to.addr_spec) == sent_id
    assert_unsubscribe_headers(rt, mime, patient_id)
    assert_text_and_html(mime)


def assert_unsubscribe_headers(rt: Runtime, mime: EmailMessage, patient_id: int) -> None:
    assert str(mime["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    mailto, https = re.findall(r"<([^>]+)>", str(mime["List-Unsubscribe"]))
    address, _, query = mailto.removeprefix("mailto:").partition("?subject=")
    assert address == "unsubscribe@clinic.example"
    token = unquote(query).removeprefix("unsubscribe-")
    assert https == f"https://care.clinic.example/unsubscribe/{token}"
    claim = read_unsubscribe_token(rt.settings.signing_key, urlsplit(https).path.split("/")[-1])
    assert (claim.patient_id, claim.channel) == (patient_id, Channel.EMAIL)


def assert_text_and_html(mime: EmailMessage) -> None:
    assert mime.get_content_type() == "multipart/alternative"
    text, html = mime.get_body(("plain",)), mime.get_body(("html",))
    assert text is not None and html is not None
    assert "Hello Sam,\r\n\r\nThis is mini step d1-hello." in text.get_content()  # CRLF on the wire
    assert "<strong>d1-hello</strong>" in html.get_content()
    assert "https://care.clinic.example/unsubscribe/" in html.get_content()


def test_headers_are_plain_ascii_lines_mail_clients_can_read(
    rt: Runtime, transports: list[SmtpEmailTransport]
) -> None:
    """A folded List-Unsubscribe would be RFC 2047-encoded; clients would not decode it."""
    with smtp_server() as server:
        smtp(rt, transports, server.port)
        email_patient(rt)
        send_due(rt, DAY1_SEND)
    data = server.handler.received[0].data
    header_block = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unsubscribe = next(h for h in header_block.split("\r\n") if h.startswith("List-Unsub"))
    assert "=?" not in unsubscribe and unsubscribe.startswith("List-Unsubscribe: <mailto:")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert all(len(line) <= 76 for line in body_lines), "quoted-printable lines stay short"


def test_file_transport_writes_the_same_shape_as_smtp(
    rt: Runtime, transports: list[SmtpEmailTransport]
) -> None:
    configure_email(rt)
    email_patient(rt)
    [file_id] = send_due(rt, DAY1_SEND)
    eml = rt.settings.resolved_outbox_dir / "email" / f"{file_id:09d}.eml"
    from_file = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    with smtp_server() as server:
        transport = smtp(rt, transports, server.port)
        transport.send(message("sam@example.org"))
    from_smtp = server.handler.received[0].message()
    assert from_file.keys() == from_smtp.keys()
    assert outbox_row(rt, file_id).provider_id == str(from_file["Message-ID"])


# --- TLS and AUTH -------------------------------------------------------------------------


def test_starttls_with_auth_delivers(
    rt: Runtime, certs: Certificates, transports: list[SmtpEmailTransport]
) -> None:
    tls = certs.server_context()
    with smtp_server("starttls", tls=tls, require_auth=True) as server:
        smtp(rt, transports, server.port, "starttls", certs, username=USERNAME, password=PASSWORD)
        email_patient(rt)
        [sent_id] = send_due(rt, DAY1_SEND)
    assert outbox_row(rt, sent_id).status == MessageStatus.SENT
    assert len(server.handler.received) == 1


def test_wrong_password_is_a_transient_delivery_error_without_secrets(
    rt: Runtime, certs: Certificates, transports: list[SmtpEmailTransport]
) -> None:
    with smtp_server("starttls", tls=certs.server_context(), require_auth=True) as server:
        transport = smtp(
            rt, transports, server.port, "starttls", certs, username=USERNAME, password="wrong"
        )
        with pytest.raises(DeliveryError) as raised:
            transport.send(message("sam@example.org"))
    assert not raised.value.permanent, "fixing the password must still deliver the message"
    assert raised.value.reason == "SMTP authentication failed (535)"
    assert server.handler.received == []


def test_auth_required_but_no_credentials_configured_is_a_delivery_error(
    rt: Runtime, certs: Certificates, transports: list[SmtpEmailTransport]
) -> None:
    with smtp_server("starttls", tls=certs.server_context(), require_auth=True) as server:
        transport = smtp(rt, transports, server.port, "starttls", certs)
        with pytest.raises(DeliveryError) as raised:
            transport.send(message("sam@example.org"))
    assert not raised.value.permanent
    assert "530" in raised.value.reason


def test_implicit_tls_delivers_and_checks_the_server_certificate(
    rt: Runtime, certs: Certificates, transports: list[SmtpEmailTransport]
) -> None:
    with smtp_server("ssl", tls=certs.server_context()) as server:
        smtp(rt, transports, server.port, "ssl", certs).send(message("sam@example.org"))
        untrusting = smtp(rt, transports, server.port, "ssl")  # system CAs only
        with pytest.raises(DeliveryError) as raised:
            untrusting.send(message("sam@example.org", outbox_id=2))
    assert len(server.handler.received) == 1
    assert raised.value.reason == "the mail server's TLS certificate is not trusted"
    assert not raised.value.permanent


def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(
    rt: Runtime, certs: Certificates, transports: list[SmtpEmailTransport]
) -> None:
    with smtp_server("plain") as server:
        transport = smtp(rt, transports, server.port, "starttls", certs)
        with pytest.raises(DeliveryError) as raised:
            transport.send(message("sam@example.org"))
    assert server.handler.received == []
    assert "STARTTLS" in raised.value.reason and not raised.value.permanent


# --- failures -----------------------------------------------------------------------------


def test_refused_recipient_fails_permanently_and_nothing_names_the_address(
    rt: Runtime, transports: list[SmtpEmailTransport], captured: io.StringIO
) -> None:
    with smtp_server() as server:
        smtp(rt, transports, server.port)
        _, email = email_patient(rt)
        server.handler.refuse[email] = f"550 5.1.1 <{email}>: Recipient address rejected"
        [sent_id] = send_due(rt, DAY1_SEND)
    row = outbox_row(rt, sent_id)
    assert row.status == MessageStatus.FAILED
    assert row.error == "recipient refused by the mail server (550)"
    assert "@" not in captured.getvalue()


def test_temporary_refusal_is_retried_later(
    rt: Runtime, transports: list[SmtpEmailTransport]
) -> None:
    with smtp_server() as server:
        smtp(rt, transports, server.port)
        _, email = email_patient(rt)
        server.handler.refuse[email] = "450 4.2.1 mailbox busy, try again"
        [sent_id] = send_due(rt, DAY1_SEND)
        assert outbox_row(rt, sent_id).status == MessageStatus.PLANNED
        del server.handler.refuse[email]
        later = DAY1_SEND + timedelta(minutes=10)
        assert deliver(rt, sent_id, now=later) == DeliveryResult.SENT
    assert outbox_row(rt, sent_id).error is None
    assert len(server.handler.received) == 1


def test_unreachable_server_is_a_transient_failure(
    rt: Runtime, transports: list[SmtpEmailTransport]
) -> None:
    smtp(rt, transports, free_port())
    email_patient(rt)
    [sent_id] = send_due(rt, DAY1_SEND)
    row = outbox_row(rt, sent_id)
    assert row.status == MessageStatus.PLANNED
    assert row.error == "could not reach the mail server (ConnectionRefusedError)"


def test_one_connection_serves_a_burst_and_a_dropped_one_is_replaced(
    rt: Runtime, transports: list[SmtpEmailTransport]
) -> None:
    port = free_port()
    with smtp_server(port=port) as first:
        transport = smtp(rt, transports, port)
        transport.send(message("a@example.org", 1))
        transport.send(message("b@example.org", 2))
    # Reused at once: no NOOP round trip per message.
    assert (len(first.handler.received), first.handler.sessions, first.handler.noops) == (2, 1, 0)
    with smtp_server(port=port) as restarted:  # the cached connection is now dead
        transport.send(message("c@example.org", 3))
    # Seen closed without asking (the old server hung up): replaced before MAIL, sent once.
    assert [r.rcpt_tos for r in restarted.handler.received] == [["c@example.org"]]
    assert (restarted.handler.sessions, restarted.handler.noops) == (1, 0)


def test_a_connection_idle_past_the_probe_time_answers_a_noop_before_it_is_reused(
    rt: Runtime, transports: list[SmtpEmailTransport]
) -> None:
    with smtp_server() as server:
        transport = smtp(rt, transports, server.port, probe_after=0.0)
        for outbox_id in (1, 2, 3):
            transport.send(message(f"p{outbox_id}@example.org", outbox_id))
    assert (len(server.handler.received), server.handler.sessions, server.handler.noops) == (
        3,
        1,
        2,
    )
