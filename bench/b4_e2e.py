"""B4 end to end: beat -> Redis -> a real Celery worker (``-c 2``) -> real Twilio and SMTP
transports talking to local fakes, with the database as the source of truth.

Ours: ``celery beat`` fires ``campaigns.tick`` every ``TICK_SECONDS``; the tick plans the
burst and hands it to ``campaigns.send_batch`` tasks of 100 ids. Baseline (same worker, same
run): the design most projects start with, one ``campaigns.send`` task per message published
with a countdown so all fall due at the same moment. Ceiling: Redis round trips/s (PING) from
one client, the broker's own speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

from bench import b4_steady, proc_cpu
from bench.b4_due import make_due
from bench.common import REDIS_URL, SECRET, WORK_DIR, Figure, bench_settings, percentile
from bench.datagen import populate
from bench.outbox_poll import any_unsent, sent_count
from campaigns.enums import MessageStatus
from campaigns.models import OutboxMessage, utcnow
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from config.beat import QUEUES
from config.settings import REPO_ROOT
from tests.fakes.smtp_sink import smtp_sink
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.fakes.twilio_loop import running_on_loop
from worker.app import SEND_TASK, create_app

#: Beat's tick interval in this workload (production default: 60 s).
TICK_SECONDS = 2.0
GOAL_PER_S = 5_000.0
GOAL_BURST_S = 30.0
GOAL_BURST_N = 100_000


@dataclass
class Burst:
    """One burst cleared: when it fell due, when work on it started (ours: the tick's
    ``planned_at``; baseline: the countdown's end), each send, the worker's peak RSS."""

    count: int
    due_at: datetime
    started_at: datetime
    sent_at: list[datetime]
    cleared_s: float
    peak_rss_mb: float
    #: CPU seconds per part (worker pool, beat, this process's fakes, Redis, database server)
    #: while the burst was worked on.
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def latencies(self) -> list[float]:
        return [(s - self.due_at).total_seconds() for s in self.sent_at]

    @property
    def sustained_per_s(self) -> float:
        """Messages per second from the start of work to the last send (beat's wait for the
        next tick excluded; ``sent_at`` is stamped once per batch, so not first-to-last)."""
        span = (max(self.sent_at) - self.started_at).total_seconds() if self.sent_at else 0
        return len(self.sent_at) / span if span > 0 else 0.0


def worker_env(rt: Runtime, broker: str, twilio: FakeTwilio, smtp_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "CAMPAIGNS_ENVIRONMENT": "test",
        "CAMPAIGNS_DATA_DIR": str(rt.settings.data_dir),
        "CAMPAIGNS_DATABASE_URL": rt.settings.resolved_database_url,
        "CAMPAIGNS_BROKER_URL": broker,
        "CAMPAIGNS_SECRET_KEY": SECRET,
        "CAMPAIGNS_TEMPLATES_DIR": str(rt.settings.templates_dir),
        "CAMPAIGNS_TICK_SECONDS": str(TICK_SECONDS),
        "CAMPAIGNS_SMS_PER_SECOND": "10000",
        "CAMPAIGNS_EMAIL_PER_SECOND": "10000",
        "CAMPAIGNS_SMS_TRANSPORT": "twilio",
        "CAMPAIGNS_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "CAMPAIGNS_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "CAMPAIGNS_TWILIO_MESSAGING_SERVICE_SID": "MG" + "b" * 32,
        "CAMPAIGNS_TWILIO_API_BASE_URL": twilio.base_url,
        "CAMPAIGNS_EMAIL_TRANSPORT": "smtp",
        "CAMPAIGNS_SMTP_HOST": "127.0.0.1",
        "CAMPAIGNS_SMTP_PORT": str(smtp_port),
    }


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.app", *args],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the worker's pool), from /proc."""
    total_kb = 0
    for current in proc_cpu.tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
            0,
        )
    return total_kb / 1024


def wait_ready(worker: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """The worker's two pool processes exist (then a moment for it to consume)."""
    deadline = time.monotonic() + timeout
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    while len(children.read_text().split()) < 2:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("celery worker did not start")
        time.sleep(0.2)
    time.sleep(1.0)


def wait_sent(
    rt: Runtime, target: int, worker_pid: int, *, timeout: float, first_id: int = 0
) -> tuple[float, float]:
    """Poll until ``target`` rows are sent; (seconds waited, peak worker RSS in MB).

    The full count runs only when nothing is left unsent: counting 100k sent rows ten times a
    second was a quarter of PostgreSQL's busy time in a 100k burst, and on SQLite it ran in
    this process, beside the fakes.
    """
    start = time.monotonic()
    peak = 0.0
    while True:
        peak = max(peak, rss_mb(worker_pid))
        if not any_unsent(rt, first_id) and sent_count(rt, first_id) >= target:
            return time.monotonic() - start, peak
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"only {sent_count(rt, first_id)} of {target} sent in {timeout}s")
        time.sleep(0.1)


def sent_times(rt: Runtime, first_id: int = 0) -> list[datetime]:
    with rt.session() as session:
        return [
            t
            for t in session.scalars(
                select(OutboxMessage.sent_at).where(
                    OutboxMessage.status == MessageStatus.SENT, OutboxMessage.id >= first_id
                )
            )
            if t is not None
        ]


def ours(rt: Runtime, env: dict[str, str], worker_pid: int, n: int, work: Path) -> Burst:
    """N rows fall due now; beat's next tick plans them and the worker sends them."""
    due_at = utcnow()
    make_due(rt, 1, n, at=due_at)
    with process(["beat", "-s", str(work / "beat-schedule"), "--loglevel=WARNING"], env,
                 work / "beat.log") as beat:  # fmt: skip
        before = proc_cpu.snapshot(_cpu_parts(rt, worker_pid, beat.pid))
        cleared, peak = wait_sent(rt, n, worker_pid, timeout=max(120.0, n / 50))
        cpu = proc_cpu.spent(before, proc_cpu.snapshot(_cpu_parts(rt, worker_pid, beat.pid)))
    with rt.session() as session:
        started = session.scalar(select(func.min(OutboxMessage.planned_at))) or due_at
    return Burst(n, due_at, started, sent_times(rt), cleared, peak, cpu)


def _cpu_parts(rt: Runtime, worker_pid: int, beat_pid: int | None) -> dict[str, list[int]]:
    """The processes a burst runs on; the fakes run in this one (beside its polling)."""
    parts = {
        "worker": proc_cpu.tree(worker_pid),
        "beat": [beat_pid] if beat_pid is not None else [],
        "fakes_and_bench": [os.getpid()],
        "redis": proc_cpu.named("redis-server"),
    }
    if rt.engine.dialect.name == "postgresql":
        parts["postgresql"] = proc_cpu.postgres(rt.engine.url.database or "")
    return parts


def baseline(rt: Runtime, settings_broker: str, worker_pid: int, n: int, first: int) -> Burst:
    """Plan N rows in-process (no dispatch), then one countdown task per row, all due at once."""
    make_due(rt, first, n, at=utcnow() - timedelta(seconds=1))
    planned = tick(rt, now=utcnow()).planned
    first_id = min(planned) if planned else 0
    app = create_app(bench_settings(rt.settings.resolved_database_url, broker_url=settings_broker))
    try:
        publish_started = time.monotonic()
        due_at = utcnow() + timedelta(seconds=2 + n / 2000)  # after the last publish
        countdown = (due_at - utcnow()).total_seconds()
        with app.producer_or_acquire() as producer:
            for outbox_id in planned:
                app.send_task(SEND_TASK, args=[outbox_id], countdown=countdown, producer=producer)
        countdown -= time.monotonic() - publish_started
        time.sleep(max(countdown, 0))
        cleared, peak = wait_sent(rt, len(planned), worker_pid, timeout=max(120.0, n / 20),
                                  first_id=first_id)  # fmt: skip
    finally:
        app.close()
    return Burst(len(planned), due_at, due_at, sent_times(rt, first_id), cleared, peak)


def redis_round_trips(url: str, seconds: float = 1.0) -> float:
    client = redis.Redis.from_url(url)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        client.ping()
        count += 1
    client.close()
    return count / (time.perf_counter() - start)


def purge_queues(url: str) -> None:
    """Leftovers of an aborted run would point at a dropped database."""
    client = redis.Redis.from_url(url)
    for queue in QUEUES.split(","):
        for key in client.scan_iter(match=f"{queue}*"):
            client.delete(key)
    client.delete("unacked", "unacked_index")
    client.close()


def run(
    rt: Runtime, *, db: str, n: int, base_n: int, smoke: bool,
    steady_rates: Sequence[float] = (), steady_s: float = 10.0,
) -> list[Figure]:  # fmt: skip
    work = WORK_DIR / f"b4_{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    populate(rt, n + base_n + 2 * b4_steady.rows_needed(steady_rates, steady_s), now=utcnow())
    purge_queues(REDIS_URL)
    ceiling = redis_round_trips(REDIS_URL, 0.3 if smoke else 2.0)
    with ExitStack() as stack:
        twilio = stack.enter_context(running_on_loop())
        smtp = stack.enter_context(smtp_sink())
        env = worker_env(rt, REDIS_URL, twilio, smtp.port)
        worker = stack.enter_context(process(
            ["worker", "-Q", QUEUES, "-c", "2", "--loglevel=WARNING",
             "--without-gossip", "--without-mingle"], env, work / "worker.log",
        ))  # fmt: skip
        wait_ready(worker)
        mine = ours(rt, env, worker.pid, n, work)
        base = baseline(rt, REDIS_URL, worker.pid, base_n, n + 1)
        steady = _steady(rt, env, worker.pid, work, steady_rates, steady_s, n + base_n + 1)
        smtp_seen, sms_seen = len(smtp.handler.received), len(twilio.sent)
    found = figures(db, n, mine, base, ceiling, smoke, sms_seen + smtp_seen)
    return found + ([steady_figure(db, n, *steady, smoke=smoke)] if steady_rates else [])


def _steady(
    rt: Runtime, env: dict[str, str], worker_pid: int, work: Path,
    rates: Sequence[float], seconds: float, first: int,
) -> tuple[list[b4_steady.Step], list[b4_steady.Step]]:  # fmt: skip
    """Ours with beat ticking, then the countdown design, on fresh rows each step."""
    if not rates:
        return [], []
    limit = 2 * (TICK_SECONDS + 2)
    with process(["beat", "-s", str(work / "beat-steady"), "--loglevel=WARNING"], env,
                 work / "beat-steady.log") as beat:  # fmt: skip
        mine, first = b4_steady.ours(
            rt, rates, seconds, first, lambda: _cpu_parts(rt, worker_pid, beat.pid), limit
        )
    base, _ = b4_steady.countdown(
        rt, REDIS_URL, rates, seconds, first, lambda: _cpu_parts(rt, worker_pid, None), limit
    )
    return mine, base


def steady_figure(
    db: str, n: int, mine: list[b4_steady.Step], base: list[b4_steady.Step], *, smoke: bool
) -> Figure:
    goal_s = TICK_SECONDS + 2
    ours_rate = b4_steady.best_rate(mine, goal_s)
    base_rate = b4_steady.best_rate(base, goal_s)
    return Figure(
        workload="B4",
        db=db,
        size=n,
        metric=f"steady arrival, highest rate with p95 <= {goal_s:g} s",
        unit="msg/s",
        better="higher",
        ours=ours_rate,
        baseline=base_rate or None,
        baseline_desc="one campaigns.send task per message, countdown to its own due moment",
        ceiling=None,
        ceiling_desc="-",
        goal=">= 5,000 msg/s sustained with due-to-sent p95 <= tick interval + 2 s",
        goal_met=None if smoke else ours_rate >= GOAL_PER_S,
        extra={
            "tick_seconds": TICK_SECONDS,
            "steps": [s.as_dict() for s in mine],
            "baseline_steps": [s.as_dict() for s in base],
        },
    )


def figures(
    db: str, n: int, mine: Burst, base: Burst, ceiling: float, smoke: bool, provider_seen: int
) -> list[Figure]:
    p95 = percentile(mine.latencies, 95)
    extra = {
        "burst": n,
        "tick_seconds": TICK_SECONDS,
        "cleared_s": mine.cleared_s,
        "due_to_sent_p50_s": percentile(mine.latencies, 50),
        "due_to_sent_p95_s": p95,
        "worker_peak_rss_mb": mine.peak_rss_mb,
        "baseline_n": base.count,
        "baseline_cleared_s": base.cleared_s,
        "baseline_p95_s": percentile(base.latencies, 95),
        "baseline_worker_peak_rss_mb": base.peak_rss_mb,
        "provider_requests_seen": provider_seen,
        "cpu_s": mine.cpu_s,
        "cpu_ms_per_msg": {part: s * 1000 / n for part, s in mine.cpu_s.items()},
    }
    common: dict[str, Any] = {"workload": "B4", "db": db, "size": n, "extra": extra}
    return [
        Figure(
            **common,
            metric="sustained send rate",
            unit="msg/s",
            better="higher",
            ours=mine.sustained_per_s,
            baseline=base.sustained_per_s or None,
            baseline_desc=f"one campaigns.send task per message with countdown ({base.count})",
            ceiling=ceiling,
            ceiling_desc="Redis PING round trips/s, one client",
            goal=">= 5,000 msg/s sustained",
            goal_met=None if smoke else mine.sustained_per_s >= GOAL_PER_S,
        ),
        Figure(
            **common,
            metric="due->sent p95",
            unit="s",
            better="lower",
            ours=p95,
            baseline=percentile(base.latencies, 95) or None,
            baseline_desc="same, from the countdown's due moment",
            ceiling=None,
            ceiling_desc="-",
            goal=f"<= tick interval + 2 s ({TICK_SECONDS + 2:g} s); 100k burst < 30 s",
            goal_met=None
            if smoke
            else p95 <= TICK_SECONDS + 2 and (n < GOAL_BURST_N or mine.cleared_s < GOAL_BURST_S),
        ),
    ]
