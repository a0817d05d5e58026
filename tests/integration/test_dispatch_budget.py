"""A backlog drains at the rate limit without flooding the broker: the real tick and
``deliver_batch`` on a simulated clock (``bench.b5_queue``), on both databases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bench.b5_queue import drain, limited
from campaigns.dispatch_budget import horizon_for
from campaigns.dispatching import in_flight
from campaigns.enums import Channel, MessageStatus
from campaigns.models import OutboxMessage
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York
DUE = MONDAY + timedelta(hours=10)  # the patients' 10:00 send time
RATE = 0.1  # messages per second: 60 take 10 minutes
PATIENTS = 60


def _backlog(rt: Runtime) -> None:
    version = load_program(rt)
    for _ in range(PATIENTS):
        make_enrollment(rt, version, now=MONDAY)


def _capacity(rt: Runtime) -> int:
    return math.ceil(RATE * horizon_for(rt.settings.tick_seconds).total_seconds())


def test_a_backlog_waits_in_the_database_and_each_message_is_handed_out_once(
    rt: Runtime,
) -> None:
    _backlog(rt)
    run = drain(rt, rate=RATE, start=DUE, until=timedelta(minutes=20))
    assert run.planned == run.sent == PATIENTS
    assert run.max_depth <= _capacity(rt) < PATIENTS
    assert run.most_per_message == 1
    assert run.handed_out == PATIENTS
    assert run.cleared_s <= PATIENTS / RATE + rt.settings.tick_seconds


def test_without_a_budget_the_same_backlog_is_copied_into_the_queue(rt: Runtime) -> None:
    """What the budget prevents, measured by the same harness: the check can fail."""
    _backlog(rt)
    run = drain(rt, rate=RATE, start=DUE, until=timedelta(minutes=20), budgeted=False)
    assert run.planned == run.sent == PATIENTS
    assert run.max_depth > _capacity(rt)
    assert run.most_per_message > 1
    assert run.handed_out > PATIENTS


def test_leases_count_as_in_flight_until_they_run_out(rt: Runtime) -> None:
    _backlog(rt)
    handed: list[int] = []
    rate_rt = limited(rt, RATE)
    summary = tick(rate_rt, now=DUE, dispatch=handed.extend)
    assert len(summary.planned) == PATIENTS
    assert len(handed) == _capacity(rt)
    with rt.session() as session:
        assert in_flight(session, now=DUE) == {Channel.SMS: len(handed)}
        waiting = session.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.status == MessageStatus.PLANNED,
                OutboxMessage.lease_until.is_(None),
            )
        ).all()
        assert sorted(waiting) == sorted(set(summary.planned) - set(handed))
        lease = session.scalar(
            select(OutboxMessage.lease_until).where(OutboxMessage.id == handed[-1])
        )
    assert lease is not None and lease > DUE + timedelta(seconds=len(handed) / RATE)
    # Nothing is handed out again while the leases run and nothing new may go.
    assert tick(rate_rt, now=DUE + timedelta(seconds=90), dispatch=handed.extend).redispatched == []
    with rt.session() as session:
        assert in_flight(session, now=lease + timedelta(seconds=1)) == {}
