"""Twilio's webhooks over real HTTP, signed exactly as Twilio signs them."""

from __future__ import annotations

import io
import logging
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from campaigns.channels.twilio_sms import TwilioSmsTransport
from campaigns.dispatching import redispatchable
from campaigns.enums import Channel, EnrollmentState, MessagePurpose, MessageStatus, StepKind
from campaigns.field_crypto import FieldKeys
from campaigns.logs import configure
from campaigns.models import (
    Alert,
    Consent,
    Enrollment,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
    ProgramStep,
)
from campaigns.outbox import DeliveryResult, deliver
from campaigns.patients import has_consent
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from campaigns.web.app import create_app
from campaigns.web.twilio_hooks import TWIML_DEADLINE, arrival, get_now
from tests.factories import load_program, make_enrollment
from tests.fakes.twilio_api import AUTH_TOKEN, FakeTwilio, running
from tests.servers import serve

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York
DAY1_SEND = MONDAY + timedelta(hours=10)
PUBLIC = "https://clinic.example"
SMS = "/webhooks/twilio/sms"
STATUS = "/webhooks/twilio/status"
CLINIC_NUMBER = "+15005550006"


@dataclass
class Webhooks:
    """Posts to the app the way Twilio does: a form, signed over the public URL."""

    client: httpx.Client
    public_base_url: str
    now: datetime = DAY1_SEND
    token: str = AUTH_TOKEN
    #: How long the request has waited (in a queue, under a burst) when its handler runs.
    waited: float = 0.0

    def post(self, path: str, form: dict[str, str], *, query: str = "") -> httpx.Response:
        signed_url = f"{self.public_base_url}{path}" + (f"?{query}" if query else "")
        signature = RequestValidator(self.token).compute_signature(signed_url, form)
        return self.post_raw(path, form, {"X-Twilio-Signature": signature}, query=query)

    def post_raw(
        self, path: str, form: dict[str, str], headers: dict[str, str], *, query: str = ""
    ) -> httpx.Response:
        url = path + (f"?{query}" if query else "")
        return self.client.post(url, data=form, headers=headers)


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with running() as fake:
        yield fake


@pytest.fixture
def twilio_rt(rt: Runtime, fake: FakeTwilio) -> Iterator[Runtime]:
    rt.settings = rt.settings.model_copy(
        update={
            "sms_transport": "twilio",
            "twilio_account_sid": fake.account_sid,
            "twilio_auth_token": SecretStr(fake.auth_token),
            "twilio_messaging_service_sid": "MG" + "b" * 32,
            "twilio_api_base_url": fake.base_url,
            "public_base_url": PUBLIC,
        }
    )
    transport = TwilioSmsTransport.from_settings(rt.settings)
    rt.transports[Channel.SMS] = transport
    yield rt
    transport.close()


@pytest.fixture
def hooks(twilio_rt: Runtime) -> Iterator[Webhooks]:
    app = create_app(twilio_rt)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        webhooks = Webhooks(client, PUBLIC)
        app.dependency_overrides[get_now] = lambda: webhooks.now
        app.dependency_overrides[arrival] = lambda: time.monotonic() - webhooks.waited
        yield webhooks


def inbound(sender: str, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
    """The form Twilio posts for an incoming SMS."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "94043",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "MOUNTAIN VIEW",
        "Body": body,
        "FromCountry": "US",
        "To": CLINIC_NUMBER,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 31 + "1",
        "From": sender,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def status_form(sid: str, status: str, **extra: str) -> dict[str, str]:
    """The form Twilio posts to a message's StatusCallback."""
    return {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": "+16502530000",
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 31 + "1",
        "From": CLINIC_NUMBER,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def messages(response: httpx.Response) -> list[str]:
    """The <Message> bodies of a TwiML answer (it must parse as a <Response>)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] in ("text/xml", "application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    return [el.text or "" for el in root]


def _enrolled(rt: Runtime) -> tuple[int, int, str]:
    version = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    with rt.session() as session:
        phone = session.get_one(Patient, patient_id).phone_e164 or ""
    return patient_id, enrollment_id, phone


def _send_due(rt: Runtime, now: datetime) -> list[int]:
    """One tick whose messages are delivered at once, as the worker would."""

    def send(ids: Sequence[int]) -> None:
        for outbox_id in ids:
            deliver(rt, outbox_id, now=now)

    return tick(rt, now=now, dispatch=send).planned


def _count(rt: Runtime, model: type[object]) -> int:
    with rt.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _state(rt: Runtime, enrollment_id: int) -> EnrollmentState:
    with rt.session() as session:
        return session.get_one(Enrollment, enrollment_id).state


def _row(rt: Runtime, outbox_id: int) -> OutboxMessage:
    with rt.session() as session:
        return session.get_one(OutboxMessage, outbox_id)


def _answers(rt: Runtime, patient_id: int) -> list[OutboxMessage]:
    with rt.session() as session:
        return list(
            session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.patient_id == patient_id,
                    OutboxMessage.purpose != MessagePurpose.PROGRAM,
                )
                .order_by(OutboxMessage.id)
            )
        )


# --- inbound texts -------------------------------------------------------------------------


def test_signed_text_is_stored_parsed_linked_and_answered_with_empty_twiml(
    twilio_rt: Runtime, hooks: Webhooks, fake: FakeTwilio
) -> None:
    patient_id, enrollment_id, phone = _enrolled(twilio_rt)
    [sent_id] = _send_due(twilio_rt, DAY1_SEND)
    hooks.now = DAY1_SEND + timedelta(hours=3)
    form = inbound(phone, "pain is 4 today 🙂")
    assert messages(hooks.post(SMS, form)) == []
    with twilio_rt.session() as session:
        reply = session.scalars(select(InboundReply)).one()
    assert (reply.patient_id, reply.channel, reply.raw_text) == (
        patient_id,
        Channel.SMS,
        "pain is 4 today 🙂",
    )
    assert (reply.provider_id, reply.pain_score) == (form["MessageSid"], 4)
    assert (reply.enrollment_id, reply.in_reply_to_id) == (enrollment_id, sent_id)
    assert reply.received_at == hooks.now


def test_a_text_is_handled_without_decrypting_the_senders_contact_details(
    twilio_rt: Runtime, hooks: Webhooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender is found by keyed hash; their number and address stay encrypted."""
    _, _, phone = _enrolled(twilio_rt)
    _send_due(twilio_rt, DAY1_SEND)
    hooks.now = DAY1_SEND + timedelta(hours=3)
    decrypted: list[str] = []
    real_decrypt = FieldKeys.decrypt

    def counting(keys: FieldKeys, token: str) -> str:
        decrypted.append(token)
        return real_decrypt(keys, token)

    monkeypatch.setattr(FieldKeys, "decrypt", counting)
    for body in ("pain is 4 today", "flare", "HELP"):
        hooks.post(SMS, inbound(phone, body))
    assert decrypted == []
    with twilio_rt.session() as session:
        assert len(session.scalars(select(InboundReply)).all()) == 3


def test_text_from_a_patient_no_longer_in_a_program_is_stored_and_linked(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    """The sender is found without a live enrollment (the webhook's one-statement lookup
    finds no row then), and the text still answers the last message and keeps its score."""
    patient_id, enrollment_id, phone = _enrolled(twilio_rt)
    [sent_id] = _send_due(twilio_rt, DAY1_SEND)
    with twilio_rt.session() as session:
        session.get_one(Enrollment, enrollment_id).state = EnrollmentState.WITHDRAWN
    hooks.now = DAY1_SEND + timedelta(hours=2)
    assert messages(hooks.post(SMS, inbound(phone, "6"))) == []
    with twilio_rt.session() as session:
        reply = session.scalars(select(InboundReply)).one()
        report = session.scalars(select(PainReport)).one()
    assert (reply.patient_id, reply.enrollment_id, reply.in_reply_to_id, reply.pain_score) == (
        patient_id,
        None,
        sent_id,
        6,
    )
    assert (report.reply_id, report.enrollment_id, report.score) == (reply.id, None, 6)
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.WITHDRAWN


@pytest.mark.parametrize("path", [SMS, STATUS])
def test_unsigned_request_gets_403_and_changes_nothing(
    twilio_rt: Runtime, hooks: Webhooks, path: str
) -> None:
    _, enrollment_id, phone = _enrolled(twilio_rt)
    [sent_id] = _send_due(twilio_rt, DAY1_SEND)
    sid = _row(twilio_rt, sent_id).provider_id or ""
    form = inbound(phone, "STOP") if path == SMS else status_form(sid, "failed", ErrorCode="21610")
    response = hooks.post_raw(path, form, {})
    assert response.status_code == 403
    assert response.json() == {"detail": "missing Twilio signature"}
    assert _count(twilio_rt, InboundReply) == 0
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.ACTIVE
    assert _row(twilio_rt, sent_id).status == MessageStatus.SENT


def test_badly_signed_requests_get_403_and_store_nothing(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    patient_id, enrollment_id, phone = _enrolled(twilio_rt)
    form = inbound(phone, "STOP")
    good = RequestValidator(AUTH_TOKEN).compute_signature(f"{PUBLIC}{SMS}", form)
    forged = RequestValidator("someone-elses-token").compute_signature(f"{PUBLIC}{SMS}", form)
    tampered = {**form, "Body": "START"}
    for body, signature in ((form, forged), (tampered, good), (form, "not-base64!")):
        response = hooks.post_raw(SMS, body, {"X-Twilio-Signature": signature})
        assert response.status_code == 403
        assert response.json() == {"detail": "invalid Twilio signature"}
    assert _count(twilio_rt, InboundReply) == 0
    with twilio_rt.session() as session:
        assert has_consent(session, patient_id, Channel.SMS)
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.ACTIVE


def test_a_signature_over_the_internal_url_is_rejected(twilio_rt: Runtime, hooks: Webhooks) -> None:
    _, _, phone = _enrolled(twilio_rt)
    hooks.public_base_url = str(hooks.client.base_url).rstrip("/")  # what uvicorn sees
    assert hooks.post(SMS, inbound(phone, "5")).status_code == 403
    assert _count(twilio_rt, InboundReply) == 0


def test_behind_a_proxy_the_public_url_with_prefix_and_query_validates(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    _, _, phone = _enrolled(twilio_rt)
    twilio_rt.settings = twilio_rt.settings.model_copy(
        update={"public_base_url": "https://clinic.example/base/"}
    )
    hooks.public_base_url = "https://clinic.example/base"
    assert messages(hooks.post(SMS, inbound(phone, "5"), query="site=north&v=2")) == []
    assert _count(twilio_rt, InboundReply) == 1


def test_replayed_message_sid_is_stored_and_answered_once(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    patient_id, _, phone = _enrolled(twilio_rt)
    form = inbound(phone, "HELP")
    first = messages(hooks.post(SMS, form))
    again = messages(hooks.post(SMS, form))
    assert len(first) == 1 and again == []
    assert _count(twilio_rt, InboundReply) == 1
    assert len(_answers(twilio_rt, patient_id)) == 1


@pytest.mark.parametrize("word", ["STOP", "stopall", "Unsubscribe", "CANCEL", "end", "QUIT"])
def test_carrier_stop_words_revoke_consent_and_confirm_in_twiml(
    twilio_rt: Runtime, hooks: Webhooks, fake: FakeTwilio, word: str
) -> None:
    patient_id, enrollment_id, phone = _enrolled(twilio_rt)
    form = inbound(phone, word)
    [confirmation] = messages(hooks.post(SMS, form))
    assert "unsubscribed" in confirmation and "START" in confirmation
    with twilio_rt.session() as session:
        assert not has_consent(session, patient_id, Channel.SMS)
        consent = session.scalars(select(Consent).order_by(Consent.id.desc())).first()
    assert consent is not None and consent.method == "sms keyword STOP"
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.OPTED_OUT
    [row] = _answers(twilio_rt, patient_id)
    assert (row.status, row.provider_id) == (MessageStatus.SENT, f"twiml:{form['MessageSid']}:0")
    assert row.body_text == confirmation
    assert deliver(twilio_rt, row.id, now=DAY1_SEND) == DeliveryResult.NOT_CLAIMED
    assert fake.requests == []  # the answer went back in TwiML, never through the API


@pytest.mark.parametrize("word", ["START", "unstop"])
def test_start_words_resume_after_stop_and_confirm_in_twiml(
    twilio_rt: Runtime, hooks: Webhooks, word: str
) -> None:
    patient_id, enrollment_id, phone = _enrolled(twilio_rt)
    hooks.post(SMS, inbound(phone, "STOP"))
    hooks.now = DAY1_SEND + timedelta(days=1)
    [welcome] = messages(hooks.post(SMS, inbound(phone, word)))
    assert "Welcome back" in welcome
    with twilio_rt.session() as session:
        assert has_consent(session, patient_id, Channel.SMS)
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.ACTIVE


def test_help_is_answered_in_twiml_with_the_clinic_help_text(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    patient_id, enrollment_id, phone = _enrolled(twilio_rt)
    [help_text] = messages(hooks.post(SMS, inbound(phone, "HELP")))
    assert twilio_rt.settings.clinic_name in help_text
    assert "STOP to opt out" in help_text and twilio_rt.settings.clinic_phone in help_text
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.ACTIVE
    [row] = _answers(twilio_rt, patient_id)
    assert (row.purpose, row.status) == (MessagePurpose.HELP, MessageStatus.SENT)
    with twilio_rt.session() as session:
        assert row.id not in redispatchable(session, now=DAY1_SEND + timedelta(hours=1))


def test_crisis_text_alerts_staff_and_returns_resources_in_twiml(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    patient_id, _, phone = _enrolled(twilio_rt)
    hooks.now = MONDAY + timedelta(days=1, hours=3)  # 03:00 local: answers are never held
    [resources] = messages(hooks.post(SMS, inbound(phone, "i dont want to be alive anymore")))
    assert "988" in resources
    assert _count(twilio_rt, Alert) == 1
    [row] = _answers(twilio_rt, patient_id)
    assert (row.purpose, row.status) == (MessagePurpose.CRISIS, MessageStatus.SENT)


def test_a_text_that_waited_past_twilios_patience_is_answered_by_the_rest_api(
    twilio_rt: Runtime, hooks: Webhooks, fake: FakeTwilio
) -> None:
    """Twilio stops reading the HTTP reply at 15 s: an answer put in it then is never seen."""
    patient_id, _, phone = _enrolled(twilio_rt)
    hooks.now = MONDAY + timedelta(days=1, hours=3)
    hooks.waited = TWIML_DEADLINE + 1
    assert messages(hooks.post(SMS, inbound(phone, "i dont want to be alive anymore"))) == []
    assert _count(twilio_rt, Alert) == 1

    def answered() -> list[OutboxMessage]:
        return [r for r in _answers(twilio_rt, patient_id) if r.status == MessageStatus.SENT]

    deadline = time.monotonic() + 10
    while not answered() and time.monotonic() < deadline:
        time.sleep(0.05)
    [row] = answered()
    assert row.purpose == MessagePurpose.CRISIS
    assert row.provider_id and row.provider_id.startswith("SM"), "sent through the API"
    [sent] = [r for r in fake.sent if r.sid == row.provider_id]
    assert sent.form["To"] == phone and "988" in sent.form["Body"]


def test_pause_and_resume_confirmations_come_back_in_twiml(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    _, enrollment_id, phone = _enrolled(twilio_rt)
    _send_due(twilio_rt, DAY1_SEND)
    hooks.now = DAY1_SEND + timedelta(hours=1)
    assert len(messages(hooks.post(SMS, inbound(phone, "PAUSE")))) == 1
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.PAUSED
    hooks.now = DAY1_SEND + timedelta(days=2)
    assert len(messages(hooks.post(SMS, inbound(phone, "resume")))) == 1
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.ACTIVE


def test_text_from_an_unknown_number_is_acknowledged_not_stored_nor_logged(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    _enrolled(twilio_rt)
    buffer = io.StringIO()
    configure(logging.INFO, stream=buffer)
    try:
        assert messages(hooks.post(SMS, inbound("+16502539999", "hello 7"))) == []
    finally:
        configure(logging.WARNING)
    assert _count(twilio_rt, InboundReply) == 0
    logs = buffer.getvalue()
    assert "twilio sms from unknown sender" in logs
    assert "6502539999" not in logs and "hello 7" not in logs


def test_media_only_message_is_stored_with_an_empty_text(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    _, _, phone = _enrolled(twilio_rt)
    form = inbound(phone, "", NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME1")
    assert messages(hooks.post(SMS, form)) == []
    with twilio_rt.session() as session:
        assert session.scalars(select(InboundReply.raw_text)).one() == ""


# --- delivery status callbacks ---------------------------------------------------------------


def _sent_program_message(rt: Runtime) -> tuple[int, str, int, int]:
    """(outbox id, Twilio SID, patient id, enrollment id) of day 1's message, sent to the fake."""
    patient_id, enrollment_id, _ = _enrolled(rt)
    [outbox_id] = _send_due(rt, DAY1_SEND)
    return outbox_id, _row(rt, outbox_id).provider_id or "", patient_id, enrollment_id


def test_out_of_order_status_callbacks_never_move_a_row_backwards(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    outbox_id, sid, _, _ = _sent_program_message(twilio_rt)
    hooks.now = DAY1_SEND + timedelta(seconds=20)
    for status in ("delivered", "sent", "queued", "sending"):
        assert hooks.post(STATUS, status_form(sid, status)).status_code == 200
    row = _row(twilio_rt, outbox_id)
    assert (row.status, row.delivered_at) == (MessageStatus.DELIVERED, hooks.now)


def test_queued_then_read_ends_delivered(twilio_rt: Runtime, hooks: Webhooks) -> None:
    outbox_id, sid, _, _ = _sent_program_message(twilio_rt)
    hooks.post(STATUS, status_form(sid, "queued"))
    assert _row(twilio_rt, outbox_id).status == MessageStatus.SENT
    hooks.post(STATUS, status_form(sid, "read"))
    assert _row(twilio_rt, outbox_id).status == MessageStatus.DELIVERED


def test_undelivered_callback_fails_the_row_with_the_error_code(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    outbox_id, sid, patient_id, _ = _sent_program_message(twilio_rt)
    hooks.post(STATUS, status_form(sid, "undelivered", ErrorCode="30003"))
    hooks.post(STATUS, status_form(sid, "delivered"))  # late and contradictory: first final wins
    row = _row(twilio_rt, outbox_id)
    assert (row.status, row.error) == (MessageStatus.FAILED, "twilio 30003")
    with twilio_rt.session() as session:
        assert has_consent(session, patient_id, Channel.SMS)


def _claimed_not_yet_recorded(rt: Runtime) -> tuple[int, int]:
    """(outbox id, patient id) of a row a batch has claimed and sent, SID not stored yet."""
    patient_id, _, _ = _enrolled(rt)
    [outbox_id] = tick(rt, now=DAY1_SEND).planned
    with rt.session() as session:
        row = session.get_one(OutboxMessage, outbox_id)
        row.status, row.sending_at = MessageStatus.SENDING, DAY1_SEND
    return outbox_id, patient_id


def test_a_callback_that_beats_the_stored_sid_finds_its_row_by_the_callback_url(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    outbox_id, patient_id = _claimed_not_yet_recorded(twilio_rt)
    sid = "SM" + "a" * 32
    form = status_form(sid, "failed", ErrorCode="21610")
    assert hooks.post(STATUS, form, query=f"outbox={outbox_id}").status_code == 200
    row = _row(twilio_rt, outbox_id)
    assert (row.status, row.provider_id, row.error) == (MessageStatus.FAILED, sid, "twilio 21610")
    with twilio_rt.session() as session:
        assert not has_consent(session, patient_id, Channel.SMS), "the opt-out was not lost"


def test_a_callback_url_cannot_claim_a_row_that_has_another_sid(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    outbox_id, sid, _, _ = _sent_program_message(twilio_rt)
    other = "SM" + "b" * 32
    hooks.post(STATUS, status_form(other, "failed"), query=f"outbox={outbox_id}")
    row = _row(twilio_rt, outbox_id)
    assert (row.status, row.provider_id) == (MessageStatus.SENT, sid)
    bad = hooks.post(STATUS, status_form(sid, "delivered"), query="outbox=zero")
    assert bad.status_code == 422


def test_status_for_an_unknown_message_sid_is_ok_and_changes_nothing(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    outbox_id, _, _, _ = _sent_program_message(twilio_rt)
    consents = _count(twilio_rt, Consent)
    response = hooks.post(STATUS, status_form("SM" + "f" * 32, "failed", ErrorCode="21610"))
    assert response.status_code == 200
    assert _row(twilio_rt, outbox_id).status == MessageStatus.SENT
    assert _count(twilio_rt, Consent) == consents


def test_failed_21610_callback_is_an_opt_out_recorded_once(
    twilio_rt: Runtime, hooks: Webhooks
) -> None:
    outbox_id, sid, patient_id, enrollment_id = _sent_program_message(twilio_rt)
    for _ in range(2):
        hooks.post(STATUS, status_form(sid, "failed", ErrorCode="21610"))
    row = _row(twilio_rt, outbox_id)
    assert (row.status, row.error) == (MessageStatus.FAILED, "twilio 21610")
    with twilio_rt.session() as session:
        consents = session.scalars(
            select(Consent)
            .where(Consent.patient_id == patient_id, Consent.channel == Channel.SMS)
            .order_by(Consent.id)
        ).all()
    assert [c.granted for c in consents] == [True, False]
    assert consents[-1].method == "provider: recipient unsubscribed"
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.OPTED_OUT


# --- the whole loop ------------------------------------------------------------------------


def test_flare_reply_by_sms_turns_the_next_message_into_flare_support(
    twilio_rt: Runtime, hooks: Webhooks, fake: FakeTwilio
) -> None:
    _, enrollment_id, phone = _enrolled(twilio_rt)
    [first_id] = _send_due(twilio_rt, DAY1_SEND)
    [first] = fake.sent
    assert first.form["To"] == phone and first.form["Body"] == _row(twilio_rt, first_id).body_text
    hooks.now = DAY1_SEND + timedelta(hours=2)
    assert messages(hooks.post(SMS, inbound(phone, "8, awful flare"))) == []
    assert _state(twilio_rt, enrollment_id) == EnrollmentState.FLARE
    [next_id] = _send_due(twilio_rt, DAY1_SEND + timedelta(days=1))
    row = _row(twilio_rt, next_id)
    with twilio_rt.session() as session:
        step = session.get_one(ProgramStep, row.step_id)
    assert step.kind == StepKind.FLARE_SUPPORT
    assert (row.status, row.provider_id) == (MessageStatus.SENT, fake.sent[-1].sid)
    assert fake.sent[-1].form["Body"] == row.body_text
    assert len(fake.sent) == 2
