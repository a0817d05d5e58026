"""The tick against real databases: no duplicates, nothing skipped, windows respected."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from campaigns.enums import EnrollmentState, MessageStatus, Track
from campaigns.models import Enrollment, OutboxMessage, ProgramStep
from campaigns.outbox import DeliveryResult, deliver
from campaigns.runtime import Runtime, build_runtime
from campaigns.scheduler import idle, tick
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York


def _outbox(rt: Runtime) -> list[OutboxMessage]:
    with rt.session() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _run_days(
    rt: Runtime, start: datetime, days: int, *, step: timedelta = timedelta(minutes=30)
) -> None:
    now = start
    while now < start + timedelta(days=days):
        tick(rt, now=now, dispatch=lambda ids, t=now: [deliver(rt, i, now=t) for i in ids])
        now += step


def test_tick_twice_at_the_same_instant_plans_once(rt: Runtime) -> None:
    version = load_program(rt)
    for _ in range(3):
        make_enrollment(rt, version, now=MONDAY)
    due = MONDAY + timedelta(hours=10)
    first = tick(rt, now=due)
    second = tick(rt, now=due)
    assert len(first.planned) == 3
    assert second.planned == []
    assert len(_outbox(rt)) == 3


def test_nothing_is_planned_before_the_send_time(rt: Runtime) -> None:
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    assert tick(rt, now=MONDAY + timedelta(hours=9)).planned == []  # 09:00 local, send time 10:00


def test_whole_program_runs_in_order_once_a_day_inside_the_window(rt: Runtime) -> None:
    version = load_program(rt)
    _, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    _run_days(rt, MONDAY, 6)
    rows = _outbox(rt)
    with rt.session() as session:
        steps = {s.id: s for s in session.scalars(select(ProgramStep))}
        state = session.get_one(Enrollment, enrollment_id).state
    assert [steps[r.step_id].position for r in rows] == [0, 1, 2, 3]
    assert all(steps[r.step_id].track == Track.MAIN for r in rows)
    assert all(r.status == MessageStatus.SENT for r in rows)
    local = [r.sent_at.astimezone(ZoneInfo("America/New_York")) for r in rows if r.sent_at]
    assert len({d.date() for d in local}) == 4
    assert all(9 <= d.hour < 20 for d in local)
    assert state == EnrollmentState.COMPLETED


def test_two_concurrent_ticks_create_no_duplicates(settings: object, rt: Runtime) -> None:
    version = load_program(rt)
    for _ in range(40):
        make_enrollment(rt, version, now=MONDAY)
    due = MONDAY + timedelta(hours=10, minutes=5)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    runtimes = [build_runtime(rt.settings) for _ in range(2)]

    def run(r: Runtime) -> None:
        try:
            barrier.wait()
            tick(r, now=due, batch_size=7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with rt.session() as session:
        total = session.scalar(select(func.count(OutboxMessage.id)))
        distinct = session.scalar(select(func.count(func.distinct(OutboxMessage.enrollment_id))))
    assert total == 40
    assert distinct == 40


def test_message_planned_at_2059_but_picked_up_at_2105_waits_for_morning(rt: Runtime) -> None:
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    planned = tick(rt, now=MONDAY + timedelta(hours=10)).planned
    late = MONDAY + timedelta(hours=21, minutes=5)
    assert deliver(rt, planned[0], now=late) == DeliveryResult.DEFERRED
    row = _outbox(rt)[0]
    assert row.status == MessageStatus.PLANNED
    assert (row.attempts, row.sending_at) == (0, None)  # claimed and given back: never tried
    assert row.planned_at.astimezone(ZoneInfo("America/New_York")).hour == 10
    morning = MONDAY + timedelta(days=1, hours=10, minutes=3)
    summary = tick(rt, now=morning, dispatch=lambda ids: [deliver(rt, i, now=morning) for i in ids])
    assert planned[0] in summary.redispatched
    assert _outbox(rt)[0].status == MessageStatus.SENT


def test_redelivered_send_task_sends_once(rt: Runtime) -> None:
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    due = MONDAY + timedelta(hours=10)
    outbox_id = tick(rt, now=due).planned[0]
    assert deliver(rt, outbox_id, now=due) == DeliveryResult.SENT
    assert deliver(rt, outbox_id, now=due) == DeliveryResult.NOT_CLAIMED
    sms = list((rt.settings.resolved_outbox_dir / "sms").glob("*.json"))
    assert len(sms) == 1


def test_a_message_deferred_overnight_pushes_the_next_one_a_day(rt: Runtime) -> None:
    """Day 1's text deferred to day 2's morning: day 2 must not also get day 2's text."""
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    [day1] = tick(rt, now=MONDAY + timedelta(hours=10)).planned
    assert deliver(rt, day1, now=MONDAY + timedelta(hours=21, minutes=5)) == DeliveryResult.DEFERRED
    now = MONDAY + timedelta(days=1)
    while now < MONDAY + timedelta(days=4):
        tick(rt, now=now, dispatch=lambda ids, t=now: [deliver(rt, i, now=t) for i in ids])
        now += timedelta(minutes=5)
    rows = [r for r in _outbox(rt) if r.sent_at is not None]
    with rt.session() as session:
        positions = {s.id: s.position for s in session.scalars(select(ProgramStep))}
    local_days = [r.sent_at.astimezone(ZoneInfo("America/New_York")).date() for r in rows]
    assert [positions[r.step_id] for r in rows] == [0, 1, 2]
    assert len(set(local_days)) == len(local_days)  # one program message per local day
    assert rows[0].id == day1


def test_idle_probe_sees_due_enrollments_and_stale_planned_rows(rt: Runtime) -> None:
    version = load_program(rt)
    assert idle(rt, MONDAY), "an empty database has nothing to do"
    make_enrollment(rt, version, now=MONDAY)
    due = MONDAY + timedelta(hours=10)
    assert idle(rt, due - timedelta(seconds=1))
    assert not idle(rt, due)
    [planned] = tick(rt, now=due).planned  # planned, its send task "lost"
    assert idle(rt, due + timedelta(minutes=1)), "a fresh row is the send task's to deliver"
    later = due + timedelta(minutes=3)
    assert not idle(rt, later)
    assert tick(rt, now=later).redispatched == [planned]


def test_an_idle_tick_takes_no_lock(rt: Runtime) -> None:
    """The idle path must not wait for a writer (a long CSV import, a staff edit) just to
    find that nothing is due: on SQLite the busy path starts with BEGIN IMMEDIATE."""
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    with rt.engine.connect() as writer:  # holds its locks until the block ends
        writer.exec_driver_sql("UPDATE enrollments SET row_version = row_version")
        started = time.monotonic()
        summary = tick(rt, now=MONDAY + timedelta(hours=1))
        elapsed = time.monotonic() - started
    assert summary.claimed == 0 and elapsed < 1.0
