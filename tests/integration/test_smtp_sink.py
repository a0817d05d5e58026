"""B4's lean SMTP sink records and answers what aiosmtpd (the functional tests' server) does."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from campaigns.channels.base import DeliveryError, OutgoingMessage
from campaigns.channels.smtp_email import SmtpConfig, SmtpEmailTransport
from campaigns.enums import Channel
from tests.factories import EMAIL_IDENTITY
from tests.fakes.smtp_server import Received, SmtpServer, smtp_server
from tests.fakes.smtp_sink import smtp_sink

Server = Callable[[], AbstractContextManager[SmtpServer]]
SERVERS: dict[str, Server] = {"aiosmtpd": smtp_server, "sink": smtp_sink}

MESSAGES = [
    b"Subject: plain\r\n\r\nHow is your pain today?\r\n",
    # smtplib dot-stuffs these; the server must take the dots back out
    b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlone dot above\r\n",
    b"Subject: bare LF\n\nsmtplib turns these\ninto CRLF\n",
    b"Subject: no final newline\r\n\r\nsmtplib adds one",
    "Subject: 8bit\r\n\r\nCuriosit\u00e9, not fear \u2728\r\n".encode(),
    b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n" + (b"line of a long letter\r\n" * 8000),
]


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    with SERVERS[request.param]() as running:
        yield running


def _received(serve: Server) -> tuple[list[Received], int]:
    with serve() as running:
        for first in (0, 3):  # two connections, several messages and a NOOP on each
            with smtplib.SMTP("127.0.0.1", running.port, "client.example", timeout=5) as smtp:
                for i, data in enumerate(MESSAGES[first : first + 3]):
                    assert smtp.noop()[0] == 250
                    to = ["a@example.org", "b@example.org"][: 1 + i % 2]
                    smtp.sendmail(f"bounce+{i}@clinic.example", to, data)
        return list(running.handler.received), running.handler.sessions


def test_the_sink_records_what_aiosmtpd_records() -> None:
    ours, sessions = _received(smtp_sink)
    reference, reference_sessions = _received(smtp_server)
    assert ours == reference
    assert len(ours) == len(MESSAGES) and sessions == reference_sessions == 2
    assert ours[1].data.split(b"\r\n\r\n", 1)[1].startswith(b".leading dot\r\n..two dots\r\n.\r\n")


def _codes(port: int) -> list[int]:
    """Reply codes of a dialogue that goes wrong in each of the usual ways."""
    with smtplib.SMTP("127.0.0.1", port, "client.example", timeout=5) as smtp:
        codes = [smtp.docmd("DATA")[0], smtp.docmd("RCPT", "TO:<a@example.org>")[0]]
        codes.append(smtp.docmd("MAIL", "FROM:<b@clinic.example>")[0])  # before EHLO
        smtp.ehlo()
        codes += [
            smtp.docmd("FROBNICATE")[0],
            smtp.docmd("MAIL", "FROM:<b@clinic.example>")[0],
            smtp.docmd("MAIL", "FROM:<b@clinic.example>")[0],
            smtp.docmd("RCPT", "TO:<refused@example.org>")[0],
            smtp.docmd("DATA")[0],
            smtp.docmd("RSET")[0],
            smtp.docmd("RCPT", "TO:<a@example.org>")[0],
        ]
        assert smtp.has_extn("smtputf8") and smtp.has_extn("8bitmime") and smtp.has_extn("size")
        return codes


def test_the_sink_answers_like_aiosmtpd() -> None:
    answers = {}
    for name, serve in SERVERS.items():
        with serve() as running:
            running.handler.refuse["refused@example.org"] = "550 5.1.1 no such user"
            answers[name] = _codes(running.port)
    assert answers["sink"] == answers["aiosmtpd"]
    assert 550 in answers["sink"] and 503 in answers["sink"] and 500 in answers["sink"]


def _transport(port: int) -> SmtpEmailTransport:
    return SmtpEmailTransport(SmtpConfig("127.0.0.1", port, "none", timeout=5), EMAIL_IDENTITY)


def _email(to: str, outbox_id: int) -> OutgoingMessage:
    return OutgoingMessage(
        outbox_id=outbox_id, patient_id=1, channel=Channel.EMAIL, to=to, subject="Day 1",
        body_text="How is your pain today? Reply 0-10.", body_html="<p>How is it?</p>",
    )  # fmt: skip


def test_program_email_through_the_product_transport(server: SmtpServer) -> None:
    """What B4's worker does: the real SMTP transport, an internationalised address too,
    and a refused recipient mapped to a permanent failure."""
    transport = _transport(server.port)
    server.handler.refuse["gone@example.org"] = "550 5.1.1 no such user"
    try:
        transport.send(_email("ana@example.org", 1))
        transport.send(_email("jos\u00e9@ejemplo.example", 2))
        with pytest.raises(DeliveryError) as refused:
            transport.send(_email("gone@example.org", 3))
    finally:
        transport.close()
    assert refused.value.permanent
    got = server.handler.received
    assert [r.rcpt_tos for r in got] == [["ana@example.org"], ["jos\u00e9@ejemplo.example"]]
    assert [r.message()["Subject"] for r in got] == ["Day 1", "Day 1"]
    plain = got[0].message().get_body(("plain",))
    assert plain is not None and "How is your pain today?" in plain.get_content()
