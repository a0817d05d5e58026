"""At-most-once delivery: a crash between provider call and record is never re-sent blindly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.channels.base import DeliveryError, OutgoingMessage, ProviderReceipt
from campaigns.enums import Channel, MessageStatus
from campaigns.models import Consent, OutboxMessage
from campaigns.outbox import (
    DeliveryResult,
    deliver,
    record_provider_status,
    redispatchable,
    sweep_stale_sending,
)
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
DUE = MONDAY + timedelta(hours=10)


class CrashingTransport:
    """Stands in for a worker dying mid-call: the provider may or may not have sent it."""

    channel = Channel.SMS

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        raise KeyboardInterrupt("worker killed during the provider call")


class FlakyTransport:
    channel = Channel.SMS

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        self.calls += 1
        if self.calls == 1:
            raise DeliveryError("provider busy", permanent=False, retry_after=60)
        return ProviderReceipt(provider_id=f"ok-{message.outbox_id}")


def _row(rt: Runtime, outbox_id: int) -> OutboxMessage:
    with rt.session() as session:
        return session.get_one(OutboxMessage, outbox_id)


def test_crash_mid_send_leaves_unknown_and_is_never_resent(rt: Runtime) -> None:
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    [outbox_id] = tick(rt, now=DUE).planned
    rt.transports[Channel.SMS] = CrashingTransport()
    with pytest.raises(KeyboardInterrupt):
        deliver(rt, outbox_id, now=DUE)
    assert _row(rt, outbox_id).status == MessageStatus.SENDING
    with rt.session() as session:
        assert (
            sweep_stale_sending(
                session, now=DUE + timedelta(minutes=5), stale_after=timedelta(minutes=15)
            )
            == 0
        )
        assert (
            sweep_stale_sending(
                session, now=DUE + timedelta(minutes=16), stale_after=timedelta(minutes=15)
            )
            == 1
        )
        assert outbox_id not in redispatchable(session, now=DUE + timedelta(hours=1))
    assert _row(rt, outbox_id).status == MessageStatus.UNKNOWN
    assert deliver(rt, outbox_id, now=DUE + timedelta(hours=1)) == DeliveryResult.NOT_CLAIMED


def test_transient_failure_waits_then_goes_out_once(rt: Runtime) -> None:
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    [outbox_id] = tick(rt, now=DUE).planned
    flaky = FlakyTransport()
    rt.transports[Channel.SMS] = flaky
    assert deliver(rt, outbox_id, now=DUE) == DeliveryResult.DEFERRED
    row = _row(rt, outbox_id)
    assert row.status == MessageStatus.PLANNED and row.planned_at == DUE + timedelta(seconds=60)
    with rt.session() as session:
        assert outbox_id not in redispatchable(session, now=DUE + timedelta(seconds=30))
        assert outbox_id in redispatchable(session, now=DUE + timedelta(minutes=4))
    assert deliver(rt, outbox_id, now=DUE + timedelta(minutes=4)) == DeliveryResult.SENT
    assert flaky.calls == 2


def test_provider_status_never_moves_backwards(rt: Runtime) -> None:
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    [outbox_id] = tick(rt, now=DUE).planned
    deliver(rt, outbox_id, now=DUE)
    provider_id = _row(rt, outbox_id).provider_id
    assert provider_id
    with rt.session() as session:
        assert record_provider_status(session, provider_id, MessageStatus.DELIVERED, now=DUE)
        assert not record_provider_status(session, provider_id, MessageStatus.SENT, now=DUE)
        assert not record_provider_status(session, provider_id, MessageStatus.FAILED, now=DUE)
    assert _row(rt, outbox_id).status == MessageStatus.DELIVERED


def test_withdrawn_consent_between_plan_and_send_withholds(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY)
    [outbox_id] = tick(rt, now=DUE).planned
    with rt.session() as session:
        session.add(
            Consent(
                patient_id=patient_id,
                channel=Channel.SMS,
                granted=False,
                method="staff",
                recorded_by="test",
                at=DUE,
            )
        )
    assert deliver(rt, outbox_id, now=DUE) == DeliveryResult.WITHHELD
    row = _row(rt, outbox_id)
    assert row.status == MessageStatus.FAILED and row.error == "withheld: no sms consent"
