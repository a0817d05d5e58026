"""A batch's provider calls on several threads, against the real Twilio and SMTP fakes.

What must hold however the calls overlap: each row reaches a provider at most once, one
patient's messages arrive in order, the rate limiter gates every call, a STOP or a 21610
mid-batch holds that patient's later messages, and a limiter or transport failure sends
every row no provider saw back to ``planned``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError

from campaigns import outbox
from campaigns.channels.base import OutgoingMessage, ProviderReceipt
from campaigns.channels.smtp_email import SmtpConfig, SmtpEmailTransport
from campaigns.channels.twilio_sms import TwilioSmsTransport
from campaigns.email_headers import EmailIdentity
from campaigns.enums import Channel, MessagePurpose, MessageStatus
from campaigns.models import OutboxMessage, Patient
from campaigns.outbox import DeliveryResult, deliver_batch
from campaigns.outbox_plan import plan
from campaigns.patients import has_consent
from campaigns.ratelimit import LocalBucket, RateLimiter
from campaigns.rendering import RenderedMessage
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment, revoke_sms
from tests.fakes.smtp_server import configure_email, smtp_server
from tests.fakes.twilio_api import UNSUBSCRIBED, FakeTwilio, running

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
DUE = MONDAY + timedelta(hours=10)
THREADS = 4
S = MessageStatus
R = DeliveryResult


class CountingBucket(LocalBucket):
    """The in-process bucket, counting the tokens it grants; after ``fail_after`` grants it
    fails the way ``RedisBucket`` does when Redis goes away."""

    def __init__(self) -> None:
        super().__init__()
        self.granted = 0
        self.fail_after: int | None = None
        self._count_lock = threading.Lock()

    def take(self, key: str, rate: float, burst: float, most: int = 1) -> tuple[int, float]:
        with self._count_lock:
            if self.fail_after is not None and self.granted >= self.fail_after:
                raise RedisConnectionError("Error 111 connecting to redis")
            granted, wait = super().take(key, rate, burst, most)
            self.granted += granted
            return granted, wait


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with running() as fake:
        fake.latency = 0.02  # a network round trip, so calls on different threads overlap
        yield fake


@pytest.fixture
def bucket(rt: Runtime) -> CountingBucket:
    bucket = CountingBucket()
    # Below 200/s the limiter asks the bucket once per message: every send is one grant.
    rt.limiter = RateLimiter(bucket, {Channel.SMS: 150.0, Channel.EMAIL: 150.0}, burst=1000.0)
    return bucket


@pytest.fixture
def threaded(rt: Runtime, fake: FakeTwilio, bucket: CountingBucket) -> Iterator[Runtime]:
    """``rt`` sending SMS through the real twilio client to the fake on ``THREADS`` threads."""
    rt.settings = rt.settings.model_copy(
        update={
            "send_threads": THREADS,
            "sms_transport": "twilio",
            "twilio_account_sid": fake.account_sid,
            "twilio_auth_token": SecretStr(fake.auth_token),
            "twilio_messaging_service_sid": "MG" + "a" * 32,
            "twilio_api_base_url": fake.base_url,
        }
    )
    transport = TwilioSmsTransport.from_settings(rt.settings)
    rt.transports[Channel.SMS] = transport
    yield rt
    transport.close()


def plan_lanes(
    rt: Runtime, patients: int, per_patient: int, channel: Channel = Channel.SMS
) -> dict[int, list[int]]:
    """Patient id -> that patient's planned program rows, oldest first, bodies all distinct."""
    version = load_program(rt)
    for _ in range(patients):
        make_enrollment(rt, version, now=MONDAY, channel=channel)
    lanes: dict[int, list[int]] = {}
    with rt.session() as session:
        for first_id in sorted(tick(rt, now=DUE).planned):
            first = session.get_one(OutboxMessage, first_id)
            assert first.channel == channel
            ids = [first.id]
            for k in range(1, per_patient):
                row = plan(
                    session,
                    patient_id=first.patient_id,
                    message=RenderedMessage(channel, f"follow-up {k}", subject=first.subject),
                    purpose=MessagePurpose.PROGRAM,
                    now=DUE,
                    enrollment_id=first.enrollment_id,
                    step_id=first.step_id,
                    occurrence=first.occurrence + k,
                )
                assert row is not None
                ids.append(row.id)
            lanes[first.patient_id] = ids
    return lanes


def _all(lanes: dict[int, list[int]]) -> list[int]:
    return sorted(i for ids in lanes.values() for i in ids)


def _rows(rt: Runtime, ids: list[int]) -> dict[int, OutboxMessage]:
    with rt.session() as session:
        return {i: session.get_one(OutboxMessage, i) for i in ids}


def _phone(rt: Runtime, patient_id: int) -> str:
    with rt.session() as session:
        return session.get_one(Patient, patient_id).phone_e164 or ""


def _bodies_to(fake: FakeTwilio, phone: str) -> list[str]:
    return [r.form["Body"] for r in fake.sent if r.form["To"] == phone]


def _assert_each_patient_in_order(
    rt: Runtime, fake: FakeTwilio, lanes: dict[int, list[int]]
) -> None:
    rows = _rows(rt, _all(lanes))
    for patient_id, ids in lanes.items():
        sent = [rows[i].body_text for i in ids if rows[i].status == S.SENT]
        assert _bodies_to(fake, _phone(rt, patient_id)) == sent


def test_threads_send_each_row_once_one_patient_at_a_time_in_order(
    threaded: Runtime, fake: FakeTwilio, bucket: CountingBucket
) -> None:
    lanes = plan_lanes(threaded, patients=6, per_patient=3)
    ids = _all(lanes)
    assert deliver_batch(threaded, ids, now=DUE) == dict.fromkeys(ids, R.SENT)
    assert len(fake.sent) == len(ids) == bucket.granted, "each call once, each one gated"
    _assert_each_patient_in_order(threaded, fake, lanes)
    assert fake.max_in_flight > 1, "patients' calls overlapped"
    assert fake.same_to_overlaps == 0, "never two calls for one patient at once"
    assert len(fake.connections) <= THREADS, "each thread kept its connection alive"
    assert deliver_batch(threaded, ids, now=DUE) == dict.fromkeys(ids, R.NOT_CLAIMED)
    assert len(fake.sent) == len(ids)


def test_a_21610_holds_that_patients_later_messages_while_others_still_send(
    threaded: Runtime, fake: FakeTwilio
) -> None:
    lanes = plan_lanes(threaded, patients=5, per_patient=3)
    opted = list(lanes)[1]
    phone = _phone(threaded, opted)
    fake.fail_for(phone, UNSUBSCRIBED)
    results = deliver_batch(threaded, _all(lanes), now=DUE)
    first, *later = lanes[opted]
    assert results[first] == R.FAILED
    assert [results[i] for i in later] == [R.WITHHELD, R.WITHHELD]
    assert [r.form["To"] for r in fake.requests].count(phone) == 1
    others = [i for p, ids in lanes.items() if p != opted for i in ids]
    assert [results[i] for i in others] == [R.SENT] * len(others)
    with threaded.session() as session:
        assert not has_consent(session, opted, Channel.SMS)


def test_a_stop_arriving_mid_batch_holds_that_patients_later_messages(
    threaded: Runtime, fake: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    lanes = plan_lanes(threaded, patients=5, per_patient=3)
    stopping = list(lanes)[2]
    monkeypatch.setattr(outbox, "RECHECK_CONSENT_AFTER", -1.0)  # re-read before every send
    rt = threaded

    class PatientTextsStop(TwilioSmsTransport):
        """The real transport; the patient's STOP is recorded right after their first text."""

        def send(self, message: OutgoingMessage) -> ProviderReceipt:
            receipt = super().send(message)
            if message.patient_id == stopping:
                revoke_sms(rt, stopping, at=DUE)
            return receipt

    transport = PatientTextsStop.from_settings(rt.settings)
    rt.transports[Channel.SMS] = transport
    try:
        results = deliver_batch(rt, _all(lanes), now=DUE)
    finally:
        transport.close()
    first, *later = lanes[stopping]
    assert results[first] == R.SENT
    assert [results[i] for i in later] == [R.WITHHELD, R.WITHHELD]
    assert len(_bodies_to(fake, _phone(rt, stopping))) == 1
    others = [i for p, ids in lanes.items() if p != stopping for i in ids]
    assert [results[i] for i in others] == [R.SENT] * len(others)


def test_a_limiter_failure_mid_batch_releases_every_row_no_provider_saw(
    threaded: Runtime, fake: FakeTwilio, bucket: CountingBucket
) -> None:
    lanes = plan_lanes(threaded, patients=6, per_patient=2)
    ids = _all(lanes)
    bucket.fail_after = 5
    with pytest.raises(RedisConnectionError):
        deliver_batch(threaded, ids, now=DUE)
    rows = _rows(threaded, ids)
    sent = [i for i in ids if rows[i].status == S.SENT]
    assert 1 <= len(sent) <= 5 and len(fake.sent) == len(sent)
    unsent = [(rows[i].status, rows[i].attempts) for i in ids if i not in sent]
    assert unsent == [(S.PLANNED, 0)] * (len(ids) - len(sent)), "none left sending"
    bucket.fail_after = None
    again = deliver_batch(threaded, ids, now=DUE)
    assert again == {i: R.NOT_CLAIMED if i in sent else R.SENT for i in ids}
    assert len(fake.sent) == len(ids), "every row once in the end, none twice"
    _assert_each_patient_in_order(threaded, fake, lanes)


def test_a_transport_bug_leaves_only_its_row_sending_and_releases_the_unsent(
    threaded: Runtime, fake: FakeTwilio
) -> None:
    lanes = plan_lanes(threaded, patients=6, per_patient=2)
    ids = _all(lanes)
    broken = lanes[list(lanes)[3]][0]
    rt = threaded

    class BugOnOneRow(TwilioSmsTransport):
        def send(self, message: OutgoingMessage) -> ProviderReceipt:
            if message.outbox_id == broken:
                raise RuntimeError("bug in the transport")
            return super().send(message)

    transport = BugOnOneRow.from_settings(rt.settings)
    rt.transports[Channel.SMS] = transport
    with pytest.raises(RuntimeError):
        deliver_batch(rt, ids, now=DUE)
    rows = _rows(rt, ids)
    assert (rows[broken].status, rows[broken].attempts) == (S.SENDING, 1)
    sent = [i for i in ids if rows[i].status == S.SENT]
    assert len(fake.sent) == len(sent)
    rest = [(rows[i].status, rows[i].attempts) for i in ids if i not in [*sent, broken]]
    assert rest == [(S.PLANNED, 0)] * len(rest), "calls not started were released"
    transport.close()
    rt.transports[Channel.SMS] = TwilioSmsTransport.from_settings(rt.settings)
    again = deliver_batch(rt, ids, now=DUE)
    assert again[broken] == R.NOT_CLAIMED, "a row that may have gone out is never resent"
    assert [again[i] for i in ids if i not in [*sent, broken]] == [R.SENT] * len(rest)
    assert len(fake.sent) == len(ids) - 1
    pairs = [(r.form["To"], r.form["Body"]) for r in fake.sent]
    assert len(set(pairs)) == len(pairs)


def test_email_threads_each_keep_one_smtp_connection(rt: Runtime, bucket: CountingBucket) -> None:
    rt.settings = rt.settings.model_copy(update={"send_threads": THREADS})
    with smtp_server() as server:
        configure_email(rt)
        transport = SmtpEmailTransport(
            SmtpConfig("127.0.0.1", server.port, timeout=5),
            EmailIdentity.from_settings(rt.settings),
        )
        rt.transports[Channel.EMAIL] = transport
        try:
            lanes = plan_lanes(rt, patients=6, per_patient=2, channel=Channel.EMAIL)
            ids = _all(lanes)
            assert deliver_batch(rt, ids, now=DUE) == dict.fromkeys(ids, R.SENT)
        finally:
            transport.close()
        received = server.handler.received
        assert len(received) == len(ids) == bucket.granted
        assert len({m.message()["Message-ID"] for m in received}) == len(ids)
        assert server.handler.sessions <= THREADS, "one connection per thread, reused"
