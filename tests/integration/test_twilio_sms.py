"""SMS out through the real twilio client to a local fake of Twilio's API, over real HTTP."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
from pydantic import SecretStr
from sqlalchemy import select

from campaigns.channels.base import DeliveryError, OutgoingMessage
from campaigns.channels.files import FileSmsTransport
from campaigns.channels.twilio_http import TWILIO_API, PooledHttpClient, environment_proxy
from campaigns.channels.twilio_sms import (
    RATE_LIMIT_BACKOFF,
    TwilioSmsTransport,
    connection_error,
    retry_seconds,
)
from campaigns.dispatching import redispatchable
from campaigns.enums import Channel, EnrollmentState, MessagePurpose, MessageStatus
from campaigns.logs import configure
from campaigns.models import Consent, Enrollment, OutboxMessage, Patient
from campaigns.outbox import (
    RETRY_BACKOFF,
    RETRY_JITTER,
    DeliveryResult,
    deliver,
)
from campaigns.outbox_plan import plan
from campaigns.patients import has_consent
from campaigns.rendering import RenderedMessage
from campaigns.runtime import Runtime, build_runtime, default_transports
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment, make_patient
from tests.fakes.http_proxy import forwarding_proxy
from tests.fakes.tls import make_certificates
from tests.fakes.twilio_api import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INVALID_TO,
    NOT_SMS_CAPABLE,
    SERVER_ERROR,
    UNSUBSCRIBED,
    ApiError,
    FakeTwilio,
    running,
    too_many_requests,
)
from tests.servers import free_port

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York
DAY1_SEND = MONDAY + timedelta(hours=10)
SERVICE_SID = "MG" + "a" * 32
FROM_NUMBER = "+15005550006"
PUBLIC = "https://clinic.example"


def twilio_settings(fake: FakeTwilio, **overrides: object) -> dict[str, object]:
    """The settings a deployment would set, pointed at the fake."""
    return {
        "sms_transport": "twilio",
        "twilio_account_sid": fake.account_sid,
        "twilio_auth_token": SecretStr(fake.auth_token),
        "twilio_messaging_service_sid": SERVICE_SID,
        "twilio_api_base_url": fake.base_url,
        "public_base_url": PUBLIC,
        **overrides,
    }


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with running() as fake:
        yield fake


@pytest.fixture
def twilio_rt(rt: Runtime, fake: FakeTwilio) -> Iterator[Runtime]:
    rt.settings = rt.settings.model_copy(update=twilio_settings(fake))
    transport = TwilioSmsTransport.from_settings(rt.settings)
    rt.transports[Channel.SMS] = transport
    yield rt
    transport.close()


def _planned_program_message(rt: Runtime) -> tuple[int, int, int]:
    """(outbox id, patient id, enrollment id) of day 1's planned SMS."""
    version = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    [outbox_id] = tick(rt, now=DAY1_SEND).planned
    return outbox_id, patient_id, enrollment_id


def _row(rt: Runtime, outbox_id: int) -> OutboxMessage:
    with rt.session() as session:
        return session.get_one(OutboxMessage, outbox_id)


def _phone(rt: Runtime, patient_id: int) -> str:
    with rt.session() as session:
        return session.get_one(Patient, patient_id).phone_e164 or ""


def _transport(
    base_url: str, *, auth_token: str = AUTH_TOKEN, **options: Any
) -> TwilioSmsTransport:
    """A transport of its own (not the runtime's), pointed at ``base_url``."""
    return TwilioSmsTransport(
        account_sid=ACCOUNT_SID,
        auth_token=auth_token,
        status_callback=f"{PUBLIC}/webhooks/twilio/status",
        messaging_service_sid=SERVICE_SID,
        api_base_url=base_url,
        **options,
    )


def _message(body: str, *, max_segments: int | None = 2) -> OutgoingMessage:
    return OutgoingMessage(1, 1, Channel.SMS, "+16502530001", body, max_segments=max_segments)


def test_program_sms_goes_through_the_messaging_service_with_a_status_callback(
    twilio_rt: Runtime, fake: FakeTwilio
) -> None:
    outbox_id, patient_id, _ = _planned_program_message(twilio_rt)
    assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.SENT
    row = _row(twilio_rt, outbox_id)
    [request] = fake.requests
    assert request.account_sid == ACCOUNT_SID
    assert request.form == {
        "To": _phone(twilio_rt, patient_id),
        "Body": row.body_text,
        "MessagingServiceSid": SERVICE_SID,
        "StatusCallback": f"{PUBLIC}/webhooks/twilio/status?outbox={outbox_id}",
    }
    assert row.status == MessageStatus.SENT
    assert row.provider_id == request.sid
    assert request.sid is not None and request.sid.startswith("SM")


def test_from_number_is_used_when_there_is_no_messaging_service(
    rt: Runtime, fake: FakeTwilio
) -> None:
    settings = rt.settings.model_copy(
        update=twilio_settings(
            fake, twilio_messaging_service_sid=None, twilio_from_number=FROM_NUMBER
        )
    )
    runtime = build_runtime(settings)
    transport = runtime.transports[Channel.SMS]
    assert isinstance(transport, TwilioSmsTransport)
    try:
        outbox_id, _, _ = _planned_program_message(runtime)
        assert deliver(runtime, outbox_id, now=DAY1_SEND) == DeliveryResult.SENT
    finally:
        transport.close()
    [request] = fake.requests
    assert request.form["From"] == FROM_NUMBER
    assert "MessagingServiceSid" not in request.form


def test_the_file_transport_stays_the_default(rt: Runtime) -> None:
    assert isinstance(default_transports(rt.settings)[Channel.SMS], FileSmsTransport)


def test_unsubscribed_21610_fails_the_row_revokes_consent_and_opts_out(
    twilio_rt: Runtime, fake: FakeTwilio
) -> None:
    outbox_id, patient_id, enrollment_id = _planned_program_message(twilio_rt)
    fake.fail_for(_phone(twilio_rt, patient_id), UNSUBSCRIBED)
    assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.FAILED
    with twilio_rt.session() as session:
        row = session.get_one(OutboxMessage, outbox_id)
        consent = session.scalars(
            select(Consent).where(Consent.patient_id == patient_id).order_by(Consent.id)
        ).all()[-1]
        enrollment = session.get_one(Enrollment, enrollment_id)
        still_consented = has_consent(session, patient_id, Channel.SMS)
    assert row.status == MessageStatus.FAILED and "21610" in (row.error or "")
    assert (consent.granted, consent.method) == (False, "provider: recipient unsubscribed")
    assert not still_consented
    assert enrollment.state == EnrollmentState.OPTED_OUT


@pytest.mark.parametrize(
    "error",
    [
        INVALID_TO,
        NOT_SMS_CAPABLE,
        ApiError(400, 21612, "The 'To' phone number: {to}, is not currently reachable"),
        ApiError(400, 21408, "Permission to send an SMS has not been enabled for {to}"),
    ],
    ids=lambda e: str(e.code),
)
def test_invalid_recipient_fails_for_good_naming_the_code_but_not_the_number(
    twilio_rt: Runtime, fake: FakeTwilio, error: ApiError
) -> None:
    outbox_id, patient_id, enrollment_id = _planned_program_message(twilio_rt)
    phone = _phone(twilio_rt, patient_id)
    fake.fail_next(error)
    assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.FAILED
    row = _row(twilio_rt, outbox_id)
    assert row.status == MessageStatus.FAILED
    assert f"twilio {error.code}" in (row.error or "")
    assert phone not in (row.error or "") and phone[2:] not in (row.error or "")
    with twilio_rt.session() as session:
        assert outbox_id not in redispatchable(session, now=DAY1_SEND + timedelta(days=1))
        assert session.get_one(Enrollment, enrollment_id).state == EnrollmentState.ACTIVE


def test_rate_limited_429_waits_for_retry_after_then_sends(
    twilio_rt: Runtime, fake: FakeTwilio
) -> None:
    outbox_id, _, _ = _planned_program_message(twilio_rt)
    fake.fail_next(too_many_requests(retry_after="120"))
    assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.DEFERRED
    row = _row(twilio_rt, outbox_id)
    assert row.status == MessageStatus.PLANNED
    assert row.planned_at == DAY1_SEND + timedelta(seconds=120)
    assert "20429" in (row.error or "")
    later = DAY1_SEND + timedelta(minutes=5)
    with twilio_rt.session() as session:
        assert outbox_id in redispatchable(session, now=later)
    assert deliver(twilio_rt, outbox_id, now=later) == DeliveryResult.SENT
    assert [r.status for r in fake.requests] == [429, 201]
    assert _row(twilio_rt, outbox_id).provider_id == fake.sent[0].sid


def test_rate_limited_429_without_retry_after_backs_off(
    twilio_rt: Runtime, fake: FakeTwilio
) -> None:
    outbox_id, _, _ = _planned_program_message(twilio_rt)
    fake.fail_next(too_many_requests(retry_after=None))
    assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.DEFERRED
    assert _row(twilio_rt, outbox_id).planned_at == DAY1_SEND + timedelta(
        seconds=RATE_LIMIT_BACKOFF
    )


def test_server_error_is_retried_and_sent_the_next_time(
    twilio_rt: Runtime, fake: FakeTwilio
) -> None:
    outbox_id, _, _ = _planned_program_message(twilio_rt)
    fake.fail_next(SERVER_ERROR)
    assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.DEFERRED
    row = _row(twilio_rt, outbox_id)
    assert row.status == MessageStatus.PLANNED
    assert RETRY_BACKOFF <= row.planned_at - DAY1_SEND <= RETRY_BACKOFF + RETRY_JITTER
    later = DAY1_SEND + RETRY_BACKOFF + RETRY_JITTER + timedelta(minutes=3)
    assert deliver(twilio_rt, outbox_id, now=later) == DeliveryResult.SENT
    assert [r.status for r in fake.requests] == [500, 201]


def test_connection_refused_is_transient(twilio_rt: Runtime) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    transport = _transport(closed)
    twilio_rt.transports[Channel.SMS] = transport
    try:
        outbox_id, _, _ = _planned_program_message(twilio_rt)
        assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.DEFERRED
    finally:
        transport.close()
    row = _row(twilio_rt, outbox_id)
    assert row.status == MessageStatus.PLANNED
    assert "connection failed" in (row.error or "")


def test_read_timeout_marks_delivery_unknown_and_never_resends(
    fake: FakeTwilio, twilio_rt: Runtime
) -> None:
    """Twilio may have queued the text before the answer was lost: resending could send twice."""
    transport = _transport(fake.base_url, timeout=0.3)
    twilio_rt.transports[Channel.SMS] = transport
    fake.stall_next()
    try:
        outbox_id, _, _ = _planned_program_message(twilio_rt)
        assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.UNKNOWN
    finally:
        fake.release()
        transport.close()
    row = _row(twilio_rt, outbox_id)
    assert row.status == MessageStatus.UNKNOWN
    assert "delivery unknown" in (row.error or "")
    with twilio_rt.session() as session:
        assert outbox_id not in redispatchable(session, now=DAY1_SEND + timedelta(hours=1))


def test_wrong_credentials_keep_the_message_for_a_retry(fake: FakeTwilio) -> None:
    transport = _transport(fake.base_url, auth_token="not-the-token")
    try:
        with pytest.raises(DeliveryError) as caught:
            transport.send(_message("hello"))
    finally:
        transport.close()
    assert not caught.value.permanent
    assert "20003" in caught.value.reason
    assert fake.sent == []


def test_over_long_body_is_refused_before_any_http_request(
    twilio_rt: Runtime, fake: FakeTwilio
) -> None:
    patient_id = make_patient(twilio_rt, now=MONDAY)
    with twilio_rt.session() as session:
        row = plan(
            session,
            patient_id=patient_id,
            message=RenderedMessage(Channel.SMS, "word " * 80),  # 400 GSM-7 chars: 3 segments
            purpose=MessagePurpose.HELP,
            now=DAY1_SEND,
        )
        assert row is not None
        outbox_id = row.id
    assert deliver(twilio_rt, outbox_id, now=DAY1_SEND) == DeliveryResult.FAILED
    assert _row(twilio_rt, outbox_id).error == "sms is 3 segments, over the limit of 2"
    assert fake.requests == []


def test_emoji_bodies_are_counted_in_ucs2_segments(twilio_rt: Runtime, fake: FakeTwilio) -> None:
    transport = twilio_rt.transports[Channel.SMS]
    with pytest.raises(DeliveryError) as caught:
        transport.send(_message("🙂" * 71, max_segments=2))  # 142 UTF-16 units: 3 segments
    assert caught.value.permanent and fake.requests == []
    transport.send(_message("🙂" * 60, max_segments=2))
    assert len(fake.sent) == 1


def test_failures_never_put_the_number_or_the_text_in_logs_or_errors(
    twilio_rt: Runtime, fake: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = io.StringIO()
    configure(logging.DEBUG, stream=buffer)
    caplog.set_level(logging.DEBUG)
    body = "Private journal prompt for Zebulon"
    message = OutgoingMessage(7, 1, Channel.SMS, "+16502539876", body, max_segments=2)
    transport = twilio_rt.transports[Channel.SMS]
    errors = []
    try:
        for error in (INVALID_TO, UNSUBSCRIBED, SERVER_ERROR, too_many_requests("5")):
            fake.fail_next(error)
            with pytest.raises(DeliveryError) as caught:
                transport.send(message)
            errors.append(caught.value)
        transport.send(message)
    finally:
        configure(logging.WARNING)
    logs = buffer.getvalue() + "\n".join(r.getMessage() for r in caplog.records)
    assert '"event": "twilio send failed"' in logs
    for err in errors:
        assert err.__cause__ is None and err.__context__ is None  # no Twilio text attached
    for secret in ("+16502539876", "6502539876", body, "Zebulon"):
        assert secret not in logs
        assert all(secret not in str(err) for err in errors)


def test_the_http_client_rewrites_only_the_api_twilio_com_prefix() -> None:
    fake_base = PooledHttpClient("http://127.0.0.1:9999/", timeout=5)
    real = PooledHttpClient(None, timeout=5)
    try:
        url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
        assert (
            fake_base.rewrite(url) == "http://127.0.0.1:9999/2010-04-01/Accounts/AC1/Messages.json"
        )
        assert real.rewrite(url) == url
        with pytest.raises(DeliveryError):
            fake_base.rewrite("https://api.twilio.com.evil.example/2010-04-01")
    finally:
        fake_base.close()
        real.close()


def test_proxy_and_ca_settings_come_from_the_environment_read_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.clinic.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/clinic-ca.pem")
    real = PooledHttpClient(None, timeout=5)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    local = PooledHttpClient("http://127.0.0.1:9999", timeout=5)
    monkeypatch.setenv("HTTPS_PROXY", "http://changed.example:3128")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    try:
        assert isinstance(real.pool, urllib3.ProxyManager)
        assert real.pool.proxy is not None
        assert real.pool.proxy.url == "http://proxy.clinic.example:3128"
        assert real.pool.connection_pool_kw["ca_certs"] == "/etc/ssl/clinic-ca.pem"
        assert local.proxy_url is None, "NO_PROXY is honoured"
        assert not isinstance(local.pool, urllib3.ProxyManager)
        monkeypatch.delenv("HTTPS_PROXY")
        monkeypatch.setenv("ALL_PROXY", "http://all.clinic.example:3128")
        assert environment_proxy(TWILIO_API) == "http://all.clinic.example:3128"
        assert environment_proxy("http://127.0.0.1:9999") is None
    finally:
        real.close()
        local.close()


def _proxy_free(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def test_sends_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio
) -> None:
    _proxy_free(monkeypatch)
    with forwarding_proxy() as proxy:
        receipts = []
        # credentials in the proxy's URL (percent-encoded) are sent as requests sent them
        for url in (proxy.url, proxy.url.replace("//", "//clinic:p%40ss@")):
            monkeypatch.setenv("HTTP_PROXY", url)
            transport = _transport(fake.base_url)
            try:
                receipts.append(transport.send(_message("hello")))
            finally:
                transport.close()
    url = f"{fake.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert proxy.seen == [f"POST {url}"] * 2
    assert proxy.authorizations == [None, "Basic " + base64.b64encode(b"clinic:p@ss").decode()]
    assert [r.sid for r in fake.requests] == [r.provider_id for r in receipts]


def test_tls_is_verified_against_the_environment_s_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Twilio's certificate is checked: an untrusted one is refused before anything is sent,
    and a clinic's own CA bundle (``REQUESTS_CA_BUNDLE``, as requests read it) is honoured."""
    _proxy_free(monkeypatch)
    certificates = make_certificates(tmp_path)
    with running(tls=certificates.server_context()) as fake:
        untrusting = _transport(fake.base_url)
        try:
            with pytest.raises(DeliveryError) as refused:
                untrusting.send(_message("hello"))
        finally:
            untrusting.close()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates.cert_file))
        trusting = _transport(fake.base_url)
        try:
            receipt = trusting.send(_message("hello"))
        finally:
            trusting.close()
    assert not refused.value.permanent
    assert refused.value.reason == "twilio: connection failed (SSLError)"
    assert fake.base_url.startswith("https://")
    assert [r.sid for r in fake.requests] == [receipt.provider_id]


def test_unreachable_twilio_is_transient_and_named_for_what_happened() -> None:
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    timed_out = urllib3.exceptions.ConnectTimeoutError("connect timed out")
    dropped = urllib3.exceptions.ProtocolError("Connection aborted.")
    assert connection_error(refused).reason == "twilio: connection failed (NewConnectionError)"
    assert connection_error(timed_out).reason == "twilio: connect timed out"
    assert connection_error(dropped).reason == "twilio: connection failed (ProtocolError)"
    assert not any(
        connection_error(exc).permanent for exc in (refused, timed_out, dropped, OSError())
    )


def test_retry_after_takes_seconds_or_an_http_date_within_bounds() -> None:
    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert retry_seconds("30") == 30.0
    assert retry_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90
    assert (
        retry_seconds(None) == retry_seconds("soon") == retry_seconds("nan") == RATE_LIMIT_BACKOFF
    )
    assert retry_seconds("0") == 1.0
    assert retry_seconds("86400") == 3600.0
