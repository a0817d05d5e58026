"""Scale-out: two beat processes (one started by mistake) and three workers run 1,000
patients through a simulated week on PostgreSQL and Redis, across a DST change.

Every process reads "now" from a clock file the test advances an hour at a time, once the
previous hour is fully sent. The outbox must then hold exactly the messages an independent
calculation expects: one per patient per local day at their send time, main steps in order,
each sent once, never outside the send window.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from campaigns.bulk import bulk_enroll
from campaigns.clock import write_clock_file
from campaigns.enums import MessageStatus, Track
from campaigns.heartbeats import TICK, last_beat
from campaigns.models import Enrollment, OutboxMessage, Patient, ProgramStep, ProgramVersion
from campaigns.programs import load_folder, store_version
from campaigns.runtime import Runtime
from tests.conftest import REPO
from tests.faults_support import delivered_sends, private_redis, wait_for
from tests.servers import celery_beat, celery_worker

PATIENTS = 1000
#: Thursday 04:30 UTC: night in every zone below, so nobody is "late today" at enrolment;
#: the week crosses the US change to daylight time on Sunday 8 March.
START = datetime(2026, 3, 5, 4, 30, tzinfo=UTC)
HOURS = 7 * 24
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
         "Europe/London", "Europe/Berlin")  # fmt: skip
M = MessageStatus


@pytest.fixture
def db_url(pg_url: str) -> str:
    """Production's database only: this is the production topology."""
    return pg_url


def _patient_rows() -> Iterator[dict[str, str]]:
    for i in range(PATIENTS):
        email_patient = i % 5 == 0
        yield {
            "first_name": f"Pat{i}",
            "phone": f"+1650255{i:04d}",
            "email": f"pat{i}@example.org",
            "timezone": ZONES[i % len(ZONES)],
            "channel": "email" if email_patient else "sms",
            "send_time": f"{9 + (i * 7) % 11:02d}:00",
            "consent_sms": "true",
            "consent_email": "true",
        }


def _enrol_everyone(rt: Runtime) -> None:
    loaded = load_folder(REPO / "templates/programs/retrain-the-alarm", rt.settings.templates_dir)
    with rt.session() as session:
        version, _ = store_version(session, loaded, by="test")
        version_id = version.id
    with rt.session() as session:
        version = session.get_one(ProgramVersion, version_id)
        _ = version.steps, version.program
        session.expunge_all()
    result = bulk_enroll(rt.session, _patient_rows(), version, rt.window, by="test", now=START)
    assert (result.created, result.errors) == (PATIENTS, [])


def expected_slots(zone: str, send_time: time, end: datetime) -> list[datetime]:
    """Independently of the engine: every local day's send time from enrolment to ``end``."""
    tz = ZoneInfo(zone)
    day: date = START.astimezone(tz).date()
    slots: list[datetime] = []
    while True:
        slot = datetime.combine(day, send_time, tz).astimezone(UTC)
        if slot > end:
            return slots
        if slot >= START:
            slots.append(slot)
        day += timedelta(days=1)


def _hour_done(rt: Runtime, now: datetime) -> bool:
    """A tick ran at this simulated hour, nothing is due, and everything planned went out."""
    with rt.session() as session:
        beat = last_beat(session, TICK)
        if beat is None or beat.at < now:
            return False
        due = session.scalar(
            select(func.count()).select_from(Enrollment).where(Enrollment.next_due_at <= now)
        )
        pending = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status.in_([M.PLANNED, M.SENDING]))
            .where(OutboxMessage.planned_at <= now)
        )
    return due == 0 and pending == 0


@pytest.mark.timeout(900)
def test_two_beats_three_workers_one_simulated_week(rt: Runtime, tmp_path: Path) -> None:
    _enrol_everyone(rt)
    clock = tmp_path / "clock"
    now = START
    write_clock_file(clock, now)
    worker_logs = [tmp_path / f"worker-{n}.log" for n in (1, 2, 3)]
    beat_logs = [tmp_path / f"beat-{n}.log" for n in (1, 2)]
    with private_redis(tmp_path / "redis.log") as broker, ExitStack() as stack:
        settings = rt.settings.model_copy(update={"broker_url": broker.url})
        env = {
            "CAMPAIGNS_CLOCK_FILE": str(clock),
            "CAMPAIGNS_TICK_SECONDS": "0.3",
            # The global send rate is a clinic's setting (tested on its own); here it would
            # only stretch a simulated hour of sends into real seconds.
            "CAMPAIGNS_SMS_PER_SECOND": "2000",
            "CAMPAIGNS_EMAIL_PER_SECOND": "2000",
        }
        for log in worker_logs:
            stack.enter_context(celery_worker(settings, log, concurrency=1, extra_env=env))
        for log in beat_logs:
            stack.enter_context(celery_beat(settings, log, extra_env=env))
        for _ in range(HOURS):
            now = (now + timedelta(hours=1)).replace(minute=0)
            write_clock_file(clock, now)
            wait_for(partial(_hour_done, rt, now), timeout=90, interval=0.05,
                     what=f"the simulated hour {now:%a %H:%M}")  # fmt: skip
    end = now

    with rt.session() as session:
        first_main = session.scalar(
            select(func.min(ProgramStep.position)).where(ProgramStep.track == Track.MAIN)
        )
        rows = session.execute(
            select(
                OutboxMessage.patient_id, OutboxMessage.status, OutboxMessage.sent_at,
                OutboxMessage.local_date, OutboxMessage.attempts, ProgramStep.position,
                ProgramStep.track, Patient.timezone, Patient.send_time,
            )
            .join(ProgramStep, ProgramStep.id == OutboxMessage.step_id)
            .join(Patient, Patient.id == OutboxMessage.patient_id)
            .order_by(OutboxMessage.patient_id, OutboxMessage.sent_at)
        ).all()  # fmt: skip
        patients = session.execute(select(Patient.id, Patient.timezone, Patient.send_time)).all()
    assert first_main is not None

    by_patient: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for row in rows:
        assert row.status == M.SENT and row.attempts == 1 and row.track == Track.MAIN
        assert row.sent_at is not None
        local = row.sent_at.astimezone(ZoneInfo(row.timezone))
        assert time(9) <= local.time() < time(20), "inside the send window"
        assert local.date() == row.local_date
        by_patient[row.patient_id].append((row.sent_at, row.position))
    expected_total = 0
    for pid, zone, send_time in patients:
        slots = expected_slots(zone, send_time, end)
        expected_total += len(slots)
        got = by_patient.get(pid, [])
        assert [sent for sent, _ in got] == slots, f"patient {pid} ({zone}) sent on its slots"
        assert [pos for _, pos in got] == list(range(first_main, first_main + len(slots)))
    assert len(rows) == expected_total and expected_total > 6 * PATIENTS

    delivered = delivered_sends(worker_logs)
    assert sum(delivered.values()) == len(rows) and set(delivered.values()) == {1}
    # Which worker sends a batch depends on which one is idle when a tick publishes it: with
    # two beats ticking in step, one worker can spend the whole week running ticks (seen on a
    # slow machine: [0, 5015, 1985]). What scale-out promises is that every worker takes
    # work and the sends are shared, not that each worker sends.
    per_worker = [sum(delivered_sends([log]).values()) for log in worker_logs]
    tasks = [log.read_text().count("] received") for log in worker_logs]
    assert all(count > 0 for count in tasks), f"every worker took tasks: {tasks}"
    assert sum(count > 0 for count in per_worker) >= 2, f"sends were shared: {per_worker}"
    fired = [log.read_text().count("campaigns.tick") for log in beat_logs]
    assert all(count > 0 for count in fired), f"both beats fired ticks: {fired}"
    assert Counter(r.patient_id for r in rows).most_common(1)[0][1] <= 8
