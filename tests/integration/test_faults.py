"""Fault injection: a killed worker, a restarted Redis, dropped database connections.

Each fault is real (SIGKILL, a stopped ``redis-server``, ``pg_terminate_backend``) and the
checks are the outbox's promises: every message ends sent or flagged ``unknown`` for staff,
no enrollment gets two rows for one step, and nothing is ever sent twice.

PostgreSQL only: these exercise ``FOR UPDATE SKIP LOCKED`` claims, connection pooling and
backend termination, which the SQLite variant of ``db_url`` does not have. The module
overrides ``db_url`` so the shared ``rt`` fixture runs on ``pg_url`` alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from time import sleep as time_sleep
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.exc import OperationalError

from campaigns.channels.twilio_sms import TwilioSmsTransport
from campaigns.dispatch_budget import REDISPATCH_AFTER
from campaigns.enums import Channel, MessageStatus, Track
from campaigns.models import Enrollment, OutboxMessage, Patient, ProgramStep, utcnow
from campaigns.outbox import (
    RETRY_BACKOFF,
    RETRY_JITTER,
    DeliveryResult,
    deliver,
    sweep_stale_sending,
)
from campaigns.runtime import Runtime
from campaigns.scheduler import TickSummary, tick
from tests.factories import load_program, make_enrollment
from tests.fakes.twilio_api import SERVER_ERROR, running, too_many_requests
from tests.faults_support import OutageTwilio, delivered_sends, private_redis, wait_for
from tests.servers import celery_worker
from worker.app import SEND_TASK, create_app

pytestmark = pytest.mark.slow
M = MessageStatus
STALE = timedelta(minutes=15)
TERMINATE_OTHERS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.fixture
def db_url(pg_url: str) -> str:
    """PostgreSQL only (see the module docstring): replaces the sqlite/postgresql pair."""
    return pg_url


def _noon_zone() -> str:
    """An IANA zone where it is about midday now, so the send window is open."""
    offset = 12 - utcnow().hour
    offset = (offset + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def _due_enrollments(rt: Runtime, count: int) -> list[int]:
    version = load_program(rt)
    now = utcnow()
    zone = _noon_zone()
    ids = [make_enrollment(rt, version, now=now, timezone=zone)[1] for _ in range(count)]
    with rt.session() as session:
        session.execute(update(Enrollment).values(next_due_at=now - timedelta(minutes=1)))
    return ids


def _statuses(rt: Runtime) -> dict[int, MessageStatus]:
    with rt.session() as session:
        rows = session.execute(select(OutboxMessage.id, OutboxMessage.status)).all()
        return {outbox_id: status for outbox_id, status in rows}


def _ids_with(statuses: dict[int, MessageStatus], status: MessageStatus) -> set[int]:
    return {i for i, s in statuses.items() if s == status}


def _sms_files(folder: Path) -> dict[int, dict[str, str]]:
    """The file transport's artefacts: outbox id -> the JSON record written for it."""
    found: dict[int, dict[str, str]] = {}
    for path in folder.glob("*.sms.json"):
        record = json.loads(path.read_text())
        found[int(record["outbox_id"])] = record
    return found


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker started with ``new_session=True``: the main process and its pool."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _assert_one_row_per_enrollment(rt: Runtime, enrollments: Sequence[int]) -> None:
    with rt.session() as session:
        per_enrollment = Counter(session.scalars(select(OutboxMessage.enrollment_id)))
        attempts = Counter(session.scalars(select(OutboxMessage.attempts)))
    assert per_enrollment == Counter(enrollments), "each enrollment has exactly one outbox row"
    # the planned -> sending claim is conditional: every row was claimed exactly once
    assert attempts == Counter({1: len(enrollments)})


def test_sigkill_mid_batch_neither_loses_nor_duplicates(rt: Runtime, tmp_path: Path) -> None:
    enrollments = _due_enrollments(rt, 40)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    with private_redis(tmp_path / "redis.log") as broker:
        settings = rt.settings.model_copy(update={"broker_url": broker.url, "sms_per_second": 10})
        env = {"CAMPAIGNS_SMS_PER_SECOND": "10"}  # the Redis bucket makes 40 sends last ~4 s
        app = create_app(settings)
        try:
            with celery_worker(settings, logs[0], new_session=True, extra_env=env) as proc:
                app.send_task("campaigns.tick")
                wait_for(
                    lambda: len(_ids_with(_statuses(rt), M.SENT)) >= 5,
                    timeout=120,
                    what="the first sends",
                )
                _kill_group(proc)
            at_kill = _statuses(rt)
            assert len(at_kill) == 40, "the tick planned every due enrollment before sending"
            assert 5 <= len(_ids_with(at_kill, M.SENT)) < 40, "killed mid-batch"
            stuck = _ids_with(at_kill, M.SENDING)

            with celery_worker(settings, logs[1], new_session=True, extra_env=env) as second:

                def redispatch(ids: Sequence[int]) -> None:
                    for outbox_id in ids:
                        app.send_task(SEND_TASK, args=[outbox_id])

                def settled() -> bool:
                    # the redispatch sweep treats every planned row as overdue
                    tick(rt, now=utcnow() + timedelta(minutes=3), dispatch=redispatch)
                    now = _statuses(rt)
                    return not _ids_with(now, M.PLANNED) and _ids_with(now, M.SENDING) == stuck

                wait_for(settled, timeout=120, interval=1.0, what="every planned row to go out")
                swept_at = utcnow()
                with rt.session() as session:
                    swept = sweep_stale_sending(
                        session, now=utcnow() + timedelta(minutes=16), stale_after=STALE
                    )
                assert swept == len(stuck)
                _kill_group(second)  # settled: only no-op duplicates remain in its queue
        finally:
            app.close()

    final = _statuses(rt)
    sent, unknown = _ids_with(final, M.SENT), _ids_with(final, M.UNKNOWN)
    assert sent | unknown == set(final), f"only sent or unknown: {Counter(final.values())}"
    assert unknown == stuck, "only the rows caught mid-send are flagged for staff"
    _assert_one_row_per_enrollment(rt, enrollments)
    files = _sms_files(settings.resolved_outbox_dir / "sms")
    assert sent <= set(files) <= sent | unknown, "every sent row has its message, nothing else"
    for outbox_id in unknown & set(files):
        assert datetime.fromisoformat(files[outbox_id]["at"]) < swept_at
    deliveries = delivered_sends(logs)
    assert set(deliveries) <= sent
    assert all(n == 1 for n in deliveries.values()), f"sent twice: {deliveries}"


def test_redis_restart_mid_run_sends_each_message_once(rt: Runtime, tmp_path: Path) -> None:
    enrollments = _due_enrollments(rt, 40)
    log = tmp_path / "worker.log"
    with private_redis(tmp_path / "redis.log") as broker:
        settings = rt.settings.model_copy(update={"broker_url": broker.url, "sms_per_second": 10})
        env = {"CAMPAIGNS_SMS_PER_SECOND": "10"}
        app = create_app(settings)
        try:
            with celery_worker(settings, log, new_session=True, extra_env=env) as proc:
                app.send_task("campaigns.tick")
                wait_for(
                    lambda: len(_ids_with(_statuses(rt), M.SENT)) >= 5,
                    timeout=120,
                    what="the first sends",
                )
                broker.stop()  # queued send tasks and the rate bucket go with it (no persistence)
                at_stop = _statuses(rt)
                assert len(at_stop) == 40
                assert len(_ids_with(at_stop, M.SENT)) < 40, "Redis stopped mid-batch"
                wait_for(
                    lambda: "Connection to broker lost" in log.read_text(),
                    timeout=60,
                    what="the worker to notice the broker is gone",
                )
                broker.start()  # same port, empty

                def redispatch(ids: Sequence[int]) -> None:
                    for outbox_id in ids:
                        app.send_task(SEND_TASK, args=[outbox_id])

                def settled() -> bool:
                    tick(rt, now=utcnow() + timedelta(minutes=3), dispatch=redispatch)
                    now = _statuses(rt)
                    return not (_ids_with(now, M.PLANNED) | _ids_with(now, M.SENDING))

                def state() -> str:
                    tail = log.read_text().splitlines()[-40:]
                    return f"{Counter(_statuses(rt).values())}; worker log tail:\n" + "\n".join(
                        tail
                    )

                wait_for(
                    settled,
                    timeout=180,
                    interval=1.0,
                    what="the worker to reconnect and send",
                    state=state,
                )
                assert proc.poll() is None, "the same worker process reconnected"
                _kill_group(proc)
        finally:
            app.close()

    final = _statuses(rt)
    assert Counter(final.values()) == Counter({M.SENT: 40})
    _assert_one_row_per_enrollment(rt, enrollments)
    files = _sms_files(settings.resolved_outbox_dir / "sms")
    assert set(files) == set(final), "one message file per row"
    deliveries = delivered_sends([log])
    assert all(n == 1 for n in deliveries.values()), f"sent twice: {deliveries}"
    assert set(deliveries) == set(final)


def test_dropped_database_connections_leave_nothing_half_written(rt: Runtime) -> None:
    enrollments = _due_enrollments(rt, 200)
    now = utcnow()
    first_batch = threading.Event()
    outcome: list[BaseException | TickSummary] = []

    def run_tick() -> None:
        try:
            outcome.append(tick(rt, now=now, batch_size=20, dispatch=lambda _: first_batch.set()))
        except BaseException as exc:  # the tick may die with its connection: that is the fault
            outcome.append(exc)

    admin = create_engine(rt.settings.resolved_database_url, isolation_level="AUTOCOMMIT")
    thread = threading.Thread(target=run_tick, daemon=True)
    thread.start()
    terminated = 0
    try:
        assert first_batch.wait(60), "the first batch committed"
        with admin.connect() as conn:
            while thread.is_alive():  # keep cutting until the tick ends, either way
                terminated += len(conn.execute(text(TERMINATE_OTHERS)).all())
                time_sleep(0.01)
        thread.join(60)
    finally:
        admin.dispose()
    assert not thread.is_alive()
    assert terminated > 0, "the tick's connections were cut while it ran"
    assert len(outcome) == 1

    def recovered_tick() -> bool:
        # pool_pre_ping replaces dead pooled connections; the next tick finishes the job
        try:
            summary = tick(rt, now=now, batch_size=20)
        except OperationalError:
            return False
        return summary.claimed == 0

    wait_for(recovered_tick, timeout=120, interval=0.2, what="a tick that finds nothing due")

    with rt.session() as session:
        per_enrollment = Counter(session.scalars(select(OutboxMessage.enrollment_id)))
        statuses = Counter(session.scalars(select(OutboxMessage.status)))
        main_rows: dict[int | None, int] = {
            enrollment_id: n
            for enrollment_id, n in session.execute(
                select(OutboxMessage.enrollment_id, func.count())
                .join(ProgramStep, ProgramStep.id == OutboxMessage.step_id)
                .where(ProgramStep.track == Track.MAIN)
                .group_by(OutboxMessage.enrollment_id)
            ).all()
        }
        positions: dict[int | None, int] = {
            enrollment_id: position
            for enrollment_id, position in session.execute(
                select(Enrollment.id, Enrollment.main_position)
            ).all()
        }
        still_due = session.scalar(select(func.count()).where(Enrollment.next_due_at <= now))
    assert per_enrollment == Counter(enrollments), "each due enrollment has exactly one row"
    assert statuses == Counter({M.PLANNED: 200}), "nothing was dispatched or half-sent"
    assert {e: main_rows.get(e, 0) for e in enrollments} == positions, (
        "no enrollment advanced without its outbox row"
    )
    assert set(positions.values()) == {1}
    assert still_due == 0


NY = ZoneInfo("America/New_York")
MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York


def _local(hour: int, minute: int = 0, *, day: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


def _clock(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    times = []
    while start <= end:
        times.append(start)
        start += step
    return times


@pytest.fixture
def outage() -> Iterator[OutageTwilio]:
    fake = OutageTwilio()
    with running(fake):
        yield fake


@pytest.fixture
def twilio_rt(rt: Runtime, outage: OutageTwilio) -> Iterator[Runtime]:
    """SMS through the real Twilio client to the fake; the window runs to the 21:00 limit."""
    rt.settings = rt.settings.model_copy(
        update={
            "sms_transport": "twilio",
            "twilio_account_sid": outage.account_sid,
            "twilio_auth_token": SecretStr(outage.auth_token),
            "twilio_messaging_service_sid": "MG" + "a" * 32,
            "twilio_api_base_url": outage.base_url,
            "public_base_url": "https://clinic.example",
            "send_window_end": time(21, 0),
        }
    )
    transport = TwilioSmsTransport.from_settings(rt.settings)
    rt.transports[Channel.SMS] = transport
    rt.limiter = None  # the send rate is not under test; the simulated clock is
    yield rt
    transport.close()


class SimulatedRun:
    """Ticks on a simulated clock; every planned or redispatched row is delivered at once."""

    def __init__(self, rt: Runtime, fake: OutageTwilio) -> None:
        self.rt, self.fake = rt, fake
        self.results: list[tuple[datetime, int, DeliveryResult]] = []
        self.sent_at: dict[str, datetime] = {}  # recipient -> simulated time of the 201

    def step(self, now: datetime) -> None:
        def dispatch(ids: Sequence[int]) -> None:
            for outbox_id in ids:
                self.results.append((now, outbox_id, deliver(self.rt, outbox_id, now=now)))

        tick(self.rt, now=now, dispatch=dispatch)
        for recorded in self.fake.sent:
            self.sent_at.setdefault(recorded.form["To"], now)


def _phones(rt: Runtime) -> dict[int, str]:
    """Outbox id -> the recipient's phone."""
    with rt.session() as session:
        rows = session.execute(
            select(OutboxMessage.id, Patient.phone_e164).join(
                Patient, Patient.id == OutboxMessage.patient_id
            )
        ).all()
    return {outbox_id: phone for outbox_id, phone in rows}


def _planned_at(rt: Runtime) -> dict[int, datetime]:
    with rt.session() as session:
        rows = session.execute(select(OutboxMessage.id, OutboxMessage.planned_at)).all()
    return {i: (p if p.tzinfo else p.replace(tzinfo=UTC)) for i, p in rows}


def test_a_provider_outage_delays_messages_in_planned_order(
    twilio_rt: Runtime, outage: OutageTwilio
) -> None:
    version = load_program(twilio_rt)
    for _ in range(5):
        make_enrollment(twilio_rt, version, now=MONDAY, send_time=time(14, 0))
    # a minute of outage: Twilio answers 500 three times, then 429 (Retry-After 30 s) twice
    outage.fail_next(SERVER_ERROR, times=3)
    outage.fail_next(too_many_requests(retry_after="30"), times=2)
    run = SimulatedRun(twilio_rt, outage)
    for now in _clock(_local(13, 55), _local(14, 20), timedelta(seconds=30)):
        run.step(now)
        if now == _local(14, 0):
            after_outage = _planned_at(twilio_rt)
            first = [r for r in run.results if r[0] == now]
            assert [r[2] for r in first] == [DeliveryResult.DEFERRED] * 5, "nothing went out"
            with twilio_rt.session() as session:
                waiting = session.scalars(select(OutboxMessage.status)).all()
            assert set(waiting) == {M.PLANNED}

    phones = _phones(twilio_rt)
    assert len(phones) == 5
    assert [r.status for r in outage.requests] == [500] * 3 + [429] * 2 + [201] * 5
    order = sorted(after_outage, key=lambda i: (after_outage[i], i))
    assert [r.form["To"] for r in outage.sent] == [phones[i] for i in order], (
        "sent in order of planned_at"
    )
    start = _local(14, 0)
    delays = sorted(planned - start for planned in after_outage.values())
    assert delays[:2] == [timedelta(seconds=30)] * 2, "Retry-After is kept as given"
    assert all(RETRY_BACKOFF <= d <= RETRY_BACKOFF + RETRY_JITTER for d in delays[2:])
    for outbox_id, planned_at in after_outage.items():
        assert run.sent_at[phones[outbox_id]] >= planned_at + REDISPATCH_AFTER
    assert Counter(_statuses(twilio_rt).values()) == Counter({M.SENT: 5})
    assert len({r.form["To"] for r in outage.sent}) == 5, "nobody messaged twice"


def test_a_retry_that_falls_after_21_waits_for_the_morning(
    twilio_rt: Runtime, outage: OutageTwilio
) -> None:
    version = load_program(twilio_rt)
    make_enrollment(twilio_rt, version, now=MONDAY, send_time=time(10, 0))
    with twilio_rt.session() as session:
        phone = session.scalar(select(Patient.phone_e164))
    assert phone
    outage.fail_for(phone, too_many_requests(retry_after="3600"))  # an all-day outage
    run = SimulatedRun(twilio_rt, outage)
    evening = _local(20, 58)  # a row planned after this is redispatched after 21:00
    clock = _clock(_local(9, 55), _local(10, 30, day=1), timedelta(minutes=5))
    for now in clock:
        run.step(now)
        planned = _planned_at(twilio_rt)
        if planned and max(planned.values()) > evening and now < evening:
            outage.end_outage()  # Twilio is back, but the retry is due after 21:00

    outbox_id = run.results[0][1]  # the day-1 message; day 2's own message follows it
    failures = [r for r in outage.requests if r.status == 429]
    assert len(failures) >= 10, "retried through the day"
    mine = [r for r in run.results if r[1] == outbox_id]
    # a 429 also answers DEFERRED; the window deferral is the one with no request behind it
    night = [r for r in mine if not time(8, 0) <= r[0].astimezone(NY).time() < time(21, 0)]
    assert [r[2] for r in night] == [DeliveryResult.DEFERRED], "the late retry waited"
    assert len(outage.requests) == len(failures) + len(outage.sent)
    assert [r[2] for r in mine if r[2] != DeliveryResult.DEFERRED] == [DeliveryResult.SENT]
    with twilio_rt.session() as session:
        row = session.get_one(OutboxMessage, outbox_id)
        status, sent_at, attempts = row.status, row.sent_at, row.attempts
    assert status == M.SENT
    assert sent_at is not None
    sent_local = (sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)).astimezone(NY)
    assert sent_local.date() == _local(0, day=1).astimezone(NY).date()
    assert time(10, 0) <= sent_local.time() < time(10, 30), "next morning, at the send time"
    assert attempts == len(failures) + 1, "one provider call per attempt, one success"
    assert [r.form["To"] for r in outage.sent].count(phone) == len(outage.sent)
    assert len(mine) == len(failures) + 2, "each attempt hit Twilio, but the one at night"
