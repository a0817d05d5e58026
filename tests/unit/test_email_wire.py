"""The direct writer sends exactly the bytes the stdlib's EmailMessage would, or defers to it."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import email_wire
from campaigns.channels.base import OutgoingMessage
from campaigns.email_headers import EmailIdentity, build_email, to_bytes
from campaigns.email_wire import email_bytes
from campaigns.enums import Channel
from tests.factories import EMAIL_IDENTITY as PLAIN_IDENTITY

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

_ascii = st.characters(min_codepoint=32, max_codepoint=126)
_any_text = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_words = st.text(_ascii, min_size=1, max_size=120)
_headerish = st.one_of(
    _words,
    st.text(st.one_of(_ascii, st.sampled_from("éü—“”🙂\t")), min_size=1, max_size=40),
    st.sampled_from(["=?utf-8?q?x?=", "a  b", " leading", "trailing ", "x" * 1200]),
)
_bodies = st.lists(
    st.one_of(st.text(_any_text, max_size=90), st.sampled_from(["\r\n", "\r", " \n", "\t\n", "."])),
    max_size=12,
).map("".join)
_addresses = st.one_of(
    st.from_regex(r"[a-z0-9._%+-]{1,20}@[a-z0-9-]{1,12}\.(org|example|co\.uk)", fullmatch=True),
    st.sampled_from(
        ["zoë@exämple.com", '"O\'Neil, Pat" <pat@example.com>', "a..b@example.com", "Ann <a@b.c>"]
    ),
)
_names = st.sampled_from(
    [
        "Clinic",
        "Riverside Pain Recovery Clinic",
        "Dr. Smith's Clinic",
        "Zoë's Clinic",
        "O'Neil & Co",
    ]
)
_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]
)


def _normalised(data: bytes) -> bytes:
    boundary = re.search(rb'boundary="([^"]+)"', data)
    return data.replace(boundary.group(1), b"BOUNDARY") if boundary else data


def _stdlib(message: OutgoingMessage, identity: EmailIdentity, now: datetime, mid: str) -> bytes:
    return to_bytes(build_email(message, identity, now=now, message_id=mid))


@settings(max_examples=400, deadline=None)
@given(
    to=_addresses,
    subject=_headerish,
    text=_bodies,
    html=st.one_of(st.none(), _bodies),
    extra=st.dictionaries(
        st.sampled_from(["X-Campaign", "X-Step", "X Bad"]), _headerish, max_size=2
    ),
    name=_names,
    outbox_id=st.integers(1, 10**12),
    when=st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1), timezones=_zones),
)
def test_bytes_are_the_stdlib_bytes(
    to: str,
    subject: str,
    text: str,
    html: str | None,
    extra: dict[str, str],
    name: str,
    outbox_id: int,
    when: datetime,
) -> None:
    identity = dataclasses.replace(PLAIN_IDENTITY, display_name=name)
    message = OutgoingMessage(outbox_id, 7, Channel.EMAIL, to, text, subject, html, extra)
    mid = f"<{outbox_id}.0123456789abcdef@clinic.example>"
    with time_machine.travel(NOW, tick=False):  # the List-Unsubscribe token carries the time
        try:
            expected = _stdlib(message, identity, when, mid)
        except (ValueError, TypeError) as refused:
            with pytest.raises(type(refused)):
                email_bytes(message, identity, now=when, message_id=mid)
            return
        wire = email_bytes(message, identity, now=when, message_id=mid)
    assert wire.message_id == mid
    assert _normalised(wire.data) == _normalised(expected)


def test_a_program_email_is_written_without_the_stdlib_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path really runs for ordinary program mail (else the test above is hollow)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("fell back to EmailMessage")

    monkeypatch.setattr(email_wire, "build_email", refuse)
    message = OutgoingMessage(
        42, 7, Channel.EMAIL, "ann.lee+pain@example.org", "Hi Ann —\n\nDay 3.\n",
        "Day 3: somatic tracking", "<p>Hi Ann —</p>\n", {"X-Campaign": "retrain"},
    )  # fmt: skip
    wire = email_bytes(message, PLAIN_IDENTITY, now=NOW)
    assert wire.message_id.startswith("<42.") and wire.message_id.endswith("@clinic.example>")
    assert b"\r\nMessage-ID: " + wire.message_id.encode() + b"\r\n" in wire.data
    assert b"Hi Ann =E2=80=94" in wire.data and b"multipart/alternative" in wire.data


def test_unusual_headers_fall_back_to_the_stdlib() -> None:
    mid = "<3.a@clinic.example>"
    encoded = OutgoingMessage(3, 7, Channel.EMAIL, "zoe@example.com", "x\n", "Ünïcödé")
    raw = OutgoingMessage(3, 7, Channel.EMAIL, "zoë@exämple.com", "x\n", "Ünïcödé")
    for message in (encoded, raw):
        assert email_wire._plain_headers(message, PLAIN_IDENTITY, NOW, mid) is None
    assert (
        b"Subject: =?utf-8?b?" in email_bytes(encoded, PLAIN_IDENTITY, now=NOW, message_id=mid).data
    )
    # an internationalised address goes out as SMTPUTF8: raw UTF-8 headers
    assert (
        "Subject: Ünïcödé".encode()
        in email_bytes(raw, PLAIN_IDENTITY, now=NOW, message_id=mid).data
    )


def test_reserved_headers_are_refused_on_both_paths() -> None:
    for to in ("ann@example.org", "zoë@exämple.com"):
        message = OutgoingMessage(
            1, 7, Channel.EMAIL, to, "x", "S", None, {"Reply-To": "x@example.org"}
        )
        with pytest.raises(ValueError, match="Reply-To"):
            email_bytes(message, PLAIN_IDENTITY, now=NOW)
