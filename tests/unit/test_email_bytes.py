"""The header-class cache changes how fast an email is built, not one byte of it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy

import pytest
import time_machine

from campaigns import email_headers
from campaigns.channels.base import OutgoingMessage
from campaigns.email_headers import build_email, to_bytes
from campaigns.enums import Channel
from tests.factories import EMAIL_IDENTITY as IDENTITY

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HTML = "<p>Hi Zoë,</p>\n" + "<p>" + "A long line of the lesson, " * 20 + "</p>\n"
MESSAGES = [
    OutgoingMessage(1, 11, Channel.EMAIL, "ann@example.com", "Hi Ann,\n\nDay 1.\n", "Welcome"),
    OutgoingMessage(
        2, 12, Channel.EMAIL, "zoë@exämple.com", "Hi Zoë — " + "x" * 200 + "\n",
        "Ünïcödé subject " * 8, HTML, {"X-Campaign": "retrain"},
    ),
    OutgoingMessage(
        3, 1111111111, Channel.EMAIL, '"O\'Neil, Pat" <pat@example.com>', "text\r\nlines\n",
        "A subject that is long enough to be folded by the header policy " * 3, HTML,
    ),
]  # fmt: skip


def _normalised(data: bytes) -> bytes:
    boundary = re.search(rb'boundary="([^"]+)"', data)
    return data.replace(boundary.group(1), b"BOUNDARY") if boundary else data


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: str(m.outbox_id))
@time_machine.travel(NOW, tick=False)  # the List-Unsubscribe token carries the time
def test_bytes_match_the_stdlib_header_registry(
    message: OutgoingMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = to_bytes(build_email(message, IDENTITY, now=NOW, message_id="<1.a@clinic.example>"))
    monkeypatch.setattr(email_headers, "BUILD_POLICY", policy.SMTP.clone(max_line_length=76))
    monkeypatch.setattr(email_headers, "WIRE_POLICY", policy.SMTP.clone(max_line_length=998))
    before = to_bytes(build_email(message, IDENTITY, now=NOW, message_id="<1.a@clinic.example>"))
    assert _normalised(ours) == _normalised(before)
