"""Bounces: a delivery report for program email fails that message and tells staff, through
the same inbound-email webhook replies use; delays and forgeries change nothing."""

from __future__ import annotations

from email.utils import make_msgid

from sqlalchemy import select

from campaigns.email_headers import EmailIdentity, bounce_address
from campaigns.enums import AlertKind, MessageStatus
from campaigns.models import Alert, OutboxMessage
from campaigns.runtime import Runtime
from tests.email_support import base, clinic
from tests.integration.test_inbound_email import post, sent_email

__all__ = ["base", "clinic"]  # fixtures from tests.email_support


def report(
    to: str, *, action: str = "failed", status: str = "5.1.1", original: str | None = None
) -> bytes:
    """An RFC 3464 report as Postfix writes one, with the original headers attached."""
    return f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: {make_msgid(domain="mx.example.net")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B0UND"

--B0UND
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

--B0UND
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; patient@example.org
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 5.1.1 <patient@example.org>: Recipient address rejected

--B0UND
Content-Type: text/rfc822-headers

Message-ID: {original or "<unknown@example.net>"}
Subject: Day 1

--B0UND--
""".replace("\n", "\r\n").encode()


def _row(rt: Runtime, outbox_id: int) -> OutboxMessage:
    with rt.session() as session:
        row = session.get_one(OutboxMessage, outbox_id)
        session.expunge(row)
        return row


def _alerts(rt: Runtime) -> list[tuple[AlertKind, int]]:
    with rt.session() as session:
        return list(session.execute(select(Alert.kind, Alert.patient_id)).tuples())


def test_a_hard_bounce_fails_the_message_and_alerts_staff(clinic: Runtime, base: str) -> None:
    patient_id, outbox_id, _ = sent_email(clinic)
    verp = bounce_address(EmailIdentity.from_settings(clinic.settings), outbox_id)
    response = post(base, report(verp))
    assert response.status_code == 200, response.text
    row = _row(clinic, outbox_id)
    assert (row.status, row.error) == (MessageStatus.FAILED, "bounced 5.1.1")
    assert _alerts(clinic) == [(AlertKind.EMAIL_BOUNCED, patient_id)]
    assert post(base, report(verp)).status_code == 200  # the MTA retrying its report
    assert len(_alerts(clinic)) == 1, "one alert per bounced message"


def test_a_report_without_our_address_is_matched_by_the_original_message_id(
    clinic: Runtime, base: str
) -> None:
    _, outbox_id, mime = sent_email(clinic)
    response = post(base, report("care@clinic.example", original=str(mime["Message-ID"])))
    assert response.status_code == 200, response.text
    assert _row(clinic, outbox_id).status == MessageStatus.FAILED


def test_delays_and_forged_bounce_addresses_change_nothing(clinic: Runtime, base: str) -> None:
    _, outbox_id, _ = sent_email(clinic)
    verp = bounce_address(EmailIdentity.from_settings(clinic.settings), outbox_id)
    delayed = post(base, report(verp, action="delayed", status="4.4.1"))
    assert delayed.status_code == 200 and _row(clinic, outbox_id).status == MessageStatus.SENT
    forged = verp.replace("-", "-0", 1)
    refused = post(base, report(forged))
    assert refused.status_code == 422, refused.text
    assert _row(clinic, outbox_id).status == MessageStatus.SENT
    assert _alerts(clinic) == []
