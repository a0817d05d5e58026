"""Fuzzing the service's input boundaries: nothing crashes, nothing stored is corrupted.

Each test starts its real server (or runtime) once and reuses it across Hypothesis examples,
so every assertion is about the change one example made: the tables are compared before and
after each request. Both databases run every test (the ``rt`` fixture).
"""

from __future__ import annotations

import base64
import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from campaigns.csv_import import COLUMNS, OPTIONAL, REQUIRED, FileRejected, import_csv
from campaigns.models import Consent, Enrollment, InboundReply, OutboxMessage, Patient, utcnow
from campaigns.runtime import Runtime
from campaigns.web.app import create_app
from tests.factories import load_program
from tests.integration import test_inbound_email as email_tests
from tests.integration import test_twilio_webhooks as twilio_tests
from tests.integration.test_inbound_email import bearer, sent_email
from tests.integration.test_twilio_webhooks import SMS, STATUS, Webhooks, _enrolled, inbound
from tests.servers import serve
from tests.web_support import make_user

# The fixtures of the webhook suites, shared rather than copied.
fake = twilio_tests.fake
twilio_rt = twilio_tests.twilio_rt
hooks = twilio_tests.hooks
clinic = email_tests.clinic


def reused(max_examples: int) -> settings:
    """One server or runtime across all examples; bounded so the whole file stays fast."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


#: Any text a form can carry: every code point but the surrogates no UTF-8 can encode.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]))
FIELD_NAME = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
EXTRA_FIELDS = st.dictionaries(FIELD_NAME, st.text(max_size=40), max_size=5)
BODY = st.one_of(
    st.text(max_size=200),
    st.text(st.characters(codec="ascii"), max_size=200),
    st.text(st.sampled_from("\x00\x01\x07\x1b\x7f\u200b\u202e\ufeff\r\n\t 🙂👍🏽é"), max_size=50),
    st.sampled_from(["STOP", "stop", "HELP", "START", "7", "pain 9/10", "I want to end it all"]),
    st.text(max_size=3000, min_size=1000),
)


def count(rt: Runtime, model: type[object]) -> int:
    with rt.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def outbox_snapshot(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.session() as session:
        rows = session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.status,
                OutboxMessage.provider_id,
                OutboxMessage.error,
                OutboxMessage.attempts,
            ).order_by(OutboxMessage.id)
        )
        return [tuple(r) for r in rows]


def replies_by_sid(rt: Runtime) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    with rt.session() as session:
        for sid, raw in session.execute(select(InboundReply.provider_id, InboundReply.raw_text)):
            out.setdefault(sid, []).append(raw)
    return out


def twiml_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    assert all(el.tag == "Message" for el in root)


# -- 1. signed Twilio inbound SMS ------------------------------------------------------------


@pytest.fixture
def patient_phone(twilio_rt: Runtime) -> str:
    _, _, phone = _enrolled(twilio_rt)
    return phone


@reused(60)
@given(data=st.data())
@example(data=None)  # the very long body, always tried
def test_signed_inbound_sms_never_5xx_and_stores_body_byte_for_byte(
    hooks: Webhooks, twilio_rt: Runtime, patient_phone: str, data: st.DataObject | None
) -> None:
    if data is None:
        sender, body, extra, sid = patient_phone, "🙂" * 20_000 + "\x00end", {}, None
    else:
        sender = data.draw(st.one_of(st.just(patient_phone), ANY_TEXT.filter(bool)), "From")
        body = data.draw(BODY, "Body")
        extra = data.draw(EXTRA_FIELDS, "extra")
        # Drawn from a small pool, so SIDs recur as Twilio's retries make them; the draw must
        # not depend on the database, or Hypothesis cannot replay it.
        number = data.draw(st.one_of(st.integers(0, 20), st.integers(0, 2**64)), "sid")
        sid = f"SM{number:032x}"
    form = {**extra, **inbound(sender, body, sid)}
    sid = form["MessageSid"]
    before = replies_by_sid(twilio_rt)

    twiml_ok(hooks.post(SMS, form))

    after = replies_by_sid(twilio_rt)
    new_sids = {k for k in after if len(after[k]) != len(before.get(k, []))}
    event("stored" if sender == patient_phone and sid not in before else "not stored")
    if sender == patient_phone and sid not in before:
        # Exactly one row, byte for byte (NUL, which PostgreSQL cannot store, becomes U+FFFD).
        assert new_sids == {sid} and after[sid] == [body.replace("\x00", "\ufffd")]
    else:
        assert new_sids == set() and after == before  # unknown sender or a repeated SID
    assert all(len(raws) == 1 for k, raws in after.items() if k)


@pytest.mark.parametrize(
    ("sender", "sid"),
    [("+1650\x00", None), ("PATIENT", "SM\x00" + "0" * 32), ("PATIENT", "SM" + "9" * 200)],
)
def test_nul_or_oversized_identifiers_are_not_a_server_error(
    hooks: Webhooks, twilio_rt: Runtime, patient_phone: str, sender: str, sid: str | None
) -> None:
    sender = patient_phone if sender == "PATIENT" else sender
    for _ in range(2):  # and Twilio's retry: stored once at most
        response = hooks.post(SMS, inbound(sender, "7", sid))
        if sid is not None and len(sid) > 100:
            assert response.status_code == 400  # longer than any SID (Twilio's are 34)
        else:
            twiml_ok(response)
    assert all(len(raws) == 1 for raws in replies_by_sid(twilio_rt).values())


# -- 2. unsigned or wrongly signed requests to both Twilio hooks -----------------------------

BAD_SIGNATURE = st.one_of(
    st.none(),
    st.just(""),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60),
    st.binary(min_size=20, max_size=20).map(lambda b: base64.b64encode(b).decode()),
)


@reused(60)
@given(
    path=st.sampled_from([SMS, STATUS]),
    form=st.dictionaries(FIELD_NAME, st.text(max_size=40), max_size=6),
    like_twilio=st.booleans(),
    signature=BAD_SIGNATURE,
    query=st.sampled_from(["", "a=1", "bodySHA256=x"]),
)
def test_unsigned_or_badly_signed_requests_are_403_and_change_nothing(
    hooks: Webhooks,
    twilio_rt: Runtime,
    patient_phone: str,
    path: str,
    form: dict[str, str],
    like_twilio: bool,
    signature: str | None,
    query: str,
) -> None:
    if like_twilio:  # a plausible message from the patient, just not signed by Twilio
        form = {**form, **inbound(patient_phone, "STOP"), "MessageStatus": "delivered"}
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    replies, outbox = count(twilio_rt, InboundReply), outbox_snapshot(twilio_rt)

    response = hooks.post_raw(path, form, headers, query=query)

    assert response.status_code == 403, (response.status_code, response.text[:300])
    assert count(twilio_rt, InboundReply) == replies
    assert outbox_snapshot(twilio_rt) == outbox


# -- 3. the inbound email webhook ------------------------------------------------------------


@pytest.fixture
def email_server(clinic: Runtime) -> Iterator[tuple[str, str]]:
    """The server, and the Message-ID of an email the clinic really sent (to answer)."""
    _, _, mime = sent_email(clinic)
    with serve(create_app(clinic)) as url:
        yield url, str(mime["Message-ID"])


CHARSETS = ["utf-8", "us-ascii", "iso-8859-1", "windows-1252", "utf-16", "iso-2022-jp",
            "koi8-r", "gb2312", "shift_jis", "x-unknown-charset", ""]  # fmt: skip


@st.composite
def email_bytes(draw: st.DrawFn, message_id: str) -> bytes:
    kind = draw(st.sampled_from(["bytes", "built", "hand"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    answer = draw(st.sampled_from([message_id, "<5b1c@elsewhere.example>", "", "<<>>"]))
    subject = draw(st.text(max_size=40))
    text = draw(BODY)
    if kind == "hand":  # a header that lies about the charset and encoding of raw bytes
        charset = draw(st.sampled_from(CHARSETS))
        cte = draw(st.sampled_from(["8bit", "7bit", "base64", "quoted-printable", "x-bogus"]))
        subtype = draw(st.sampled_from(["plain", "html"]))
        payload = draw(st.one_of(st.binary(max_size=300), st.just(text.encode("utf-8"))))
        head = (
            f"From: patient@example.org\r\nIn-Reply-To: {answer}\r\nSubject: x\r\n"
            f'MIME-Version: 1.0\r\nContent-Type: text/{subtype}; charset="{charset}"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n\r\n"
        )
        return head.encode() + payload
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        charset = draw(st.sampled_from(CHARSETS[:-2]))
        subtype = draw(st.sampled_from(["plain", "html"]))
        body = text if subtype == "plain" else f"<p>{text}</p><blockquote>quoted</blockquote>"
        try:
            encodable = body.encode(charset, "replace").decode(charset)
            parts.append(MIMEText(encodable, subtype, charset))
        except UnicodeError:  # a charset that cannot round-trip this text: send it as UTF-8
            parts.append(MIMEText(body, subtype, "utf-8"))
    msg: Any = parts[0] if len(parts) == 1 else MIMEMultipart("alternative")
    if len(parts) > 1:
        msg.set_boundary("==fuzz-boundary==")  # the default one is drawn with random
        for part in parts:
            msg.attach(part)
    msg["From"] = draw(st.sampled_from(["patient@example.org", "", "<>", "MAILER-DAEMON@x"]))
    try:
        msg["Subject"] = subject
        if answer:
            msg["In-Reply-To"] = answer
            msg["References"] = answer
    except ValueError:  # the email package refuses CR/LF in a header: so would a mail client
        pass
    return bytes(msg.as_bytes())


@reused(60)
@given(data=st.data())
def test_inbound_email_never_5xx_and_stores_nothing_when_refused(
    email_server: tuple[str, str], clinic: Runtime, data: st.DataObject
) -> None:
    url, message_id = email_server
    raw = data.draw(email_bytes(message_id), "raw")
    content_type = data.draw(st.sampled_from(["message/rfc822", "text/plain"]), "type")
    before = count(clinic, InboundReply)

    response = httpx.post(
        f"{url}/webhooks/email/inbound",
        content=raw,
        headers={**bearer(), "Content-Type": content_type},
        timeout=10,
    )

    assert response.status_code < 500, (response.status_code, response.text[:300], raw[:300])
    after = count(clinic, InboundReply)
    event(f"HTTP {response.status_code}, {after - before} stored")
    if response.status_code >= 400:
        assert after == before
    else:
        answer = response.json()
        stored = answer["reply_id"] is not None and not answer["duplicate"]
        assert after == before + (1 if stored else 0)


# -- 4. CSV import ---------------------------------------------------------------------------

GOOD_CELLS: dict[str, list[str]] = {
    "first_name": ["Ana", "Zoë", "李"],
    "last_name": ["Diaz", "O'Brien"],
    "email": ["ana@example.org", "", "not-an-email"],
    "phone": ["+16502531001", "(650) 253-1003", "", "+1555"],
    "timezone": ["America/New_York", "Europe/London", "Mars/Olympus", ""],
    "channel": ["sms", "email", "fax"],
    "send_time": ["09:00", "", "25:99", "7"],
    "consent_sms": ["yes", "no", "TRUE", "maybe", ""],
    "consent_email": ["y", "0", "n", ""],
    "program": ["mini", "nope", ""],
    "external_ref": ["R1", "", "x" * 300],
}


VALID_ROW = {
    "first_name": "Ana", "last_name": "Diaz", "email": "", "phone": "", "timezone": "UTC",
    "channel": "sms", "send_time": "09:00", "consent_sms": "yes", "consent_email": "no",
    "program": "mini", "external_ref": "",
}  # fmt: skip
CELL = st.one_of(ANY_TEXT.map(lambda s: s[:80]), st.text(min_size=200, max_size=400))


@st.composite
def csv_file(draw: st.DrawFn) -> tuple[bytes, int]:
    optional = draw(st.lists(st.sampled_from(OPTIONAL), unique=True))
    header = draw(st.permutations([*REQUIRED, *optional]))
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):  # a valid row with a cell or two replaced by anything at all
            valid = {**VALID_ROW, "phone": f"+1650253{draw(st.integers(1000, 9999))}"}
            row = [valid[c] for c in header]
            for _ in range(draw(st.integers(0, 2))):
                row[draw(st.integers(0, len(row) - 1))] = draw(CELL)
        else:
            row = [draw(st.one_of(st.sampled_from(GOOD_CELLS[c]), CELL)) for c in header]
        if draw(st.integers(0, 9)) == 0:  # a ragged row: a cell too many or too few
            row = [*row, "surplus"] if draw(st.booleans()) else row[:-1]
        if not any(row):  # csv reads a blank line as no row at all
            row[0] = "x"
        rows.append(row)
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([draw(st.sampled_from([h, h.upper(), f" {h} "])) for h in header])
    writer.writerows(rows)
    return out.getvalue().encode(), len(rows)


def enrolled_pairs(rt: Runtime) -> set[tuple[int, int]]:
    with rt.session() as session:
        return {tuple(r) for r in session.execute(select(Enrollment.patient_id, Enrollment.id))}


@pytest.fixture
def importer(rt: Runtime) -> int:
    load_program(rt)
    return make_user(rt).id


EDGE_CSV = (
    "timezone,first_name,last_name,email,phone,channel,consent_sms,consent_email,program\n"
    "UTC,Ana,Diaz,,+16502539001,sms,yes,no,mini\n"
    "America,Ben,Diaz,,+16502539002,sms,yes,no,mini\n"  # a zoneinfo directory, not a zone
    f"{'0' * 300},Cai,Diaz,,+16502539003,sms,yes,no,mini\n"  # too long to be a file name
    "UTC,D\x00e,Diaz,d@example.org,+16502539004,sms,yes,no,mini\n"  # NUL
    f"UTC,{'E' * 5000},Diaz,,+16502539005,sms,yes,no,mini\n"
)


@reused(40)
@given(file=csv_file())
@example(file=(EDGE_CSV.encode(), 5))
def test_csv_import_accounts_for_every_row_and_stores_exactly_the_enrolled(
    rt: Runtime, importer: int, file: tuple[bytes, int]
) -> None:
    data, data_rows = file
    before, patients = enrolled_pairs(rt), count(rt, Patient)
    consents = count(rt, Consent)
    try:
        report = import_csv(data, rt.session, importer, rt.window, now=utcnow())
    except FileRejected:
        assert enrolled_pairs(rt) == before and count(rt, Patient) == patients
        return
    assert report.total == data_rows
    event(f"{'some' if report.enrolled else 'no'} rows enrolled")
    if data == EDGE_CSV.encode():
        assert [r.row for r in report.enrolled] == [2]
        assert {(e.row, e.field) for e in report.rejected} == {
            (3, "timezone"), (4, "timezone"), (5, "first_name"), (6, "first_name")
        }  # fmt: skip
    enrolled_rows = [r.row for r in report.enrolled]
    rejected_rows = {e.row for e in report.rejected}
    assert len(enrolled_rows) == len(set(enrolled_rows))
    assert set(enrolled_rows).isdisjoint(rejected_rows)
    assert set(enrolled_rows) | rejected_rows == set(range(2, data_rows + 2))
    assert len(enrolled_rows) + report.rejected_rows == data_rows
    assert all(e.field in (*COLUMNS, "row") and e.reason for e in report.rejected)
    assert enrolled_pairs(rt) == before | {(r.patient_id, r.enrollment_id) for r in report.enrolled}
    assert count(rt, Patient) == patients + len(report.enrolled)
    assert count(rt, Consent) >= consents + len(report.enrolled)
