"""B7 soak: a whole program for many patients, with flares, on a compressed clock.

A child process (the "worker") steps a simulated clock over the program: at each instant it
runs ``scheduler.tick`` and ``outbox.deliver`` for what was planned (in-process fake
transports), feeds the replies scripted for that instant through ``inbound.receive_reply``,
then ticks again at the same instant so enrollments a reply made due are handled as the next
beat would. It samples its own RSS (``/proc/self/status``) as it goes.

The parent then replays every enrollment through the pure pacing engine
(``campaigns.simulation.simulate``) with the same reply script, and compares the outbox with
that plan: per enrollment, the sequence of (track, step, occurrence, local date). Patients'
send times, reply times and the clock steps share one grid, so every wake-up the engine
computes is an instant the soak ticks at (otherwise a tick a few minutes late could see a
reply the engine saw after the wake-up, and the comparison would measure the test, not the
product).

Baseline (memory): the ETA design, one ``campaigns.send`` task per future message published
with a far ``countdown``; a real Celery worker holds every ETA task it has taken in memory.
Ceiling: the same Celery worker idle (the least any worker process costs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select, text, update

from bench.common import (
    BENCH_NOW,
    REDIS_URL,
    WORK_DIR,
    Figure,
    bench_runtime,
    child_env,
    child_output,
    fresh_database,
    parse_size,
    quiet_logs,
    stop,
)
from bench.datagen import populate, version_of
from campaigns.db import autovacuum_on
from campaigns.enrollments import rules_of, shape_of
from campaigns.enums import Channel, MessagePurpose, MessageStatus, Track
from campaigns.inbound import receive_reply
from campaigns.models import Enrollment, OutboxMessage, Patient, ProgramStep
from campaigns.outbox import DeliveryResult, deliver
from campaigns.pacing import PacingRules, ProgramShape
from campaigns.pacing import start as start_pacing
from campaigns.replies import parse_reply
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from campaigns.sendwindow import PatientClock, SendWindow
from campaigns.simulation import simulate

GOAL_MB = 150.0
#: "Flat": the RSS after the first simulated day may grow at most this much to the end.
FLAT_MB = 10.0
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
CALM = (
    "4", "3", "pain is 4", "3 today", "2 - better",
    "Wrote in my journal about the argument with my sister, the pain eased after",
    "Did the somatic tracking, noticed the tingling without fear",
    "Walked for 20 minutes, felt ok", "pain 3 after the walk",
)  # fmt: skip
FLARE = ("flare", "8 today", "worse today, 8", "7", "bad day", "9")
SETTLING = ("3", "2", "pain is 3", "4 and easing")


# --- the reply script: a pure function of (patient, simulated day), shared by both sides ----


def reply_body(i: int, day: int) -> str | None:
    """Most patients report most days; one in ten flares for a few days, one in twenty for
    two weeks (long-flare alert), then settles."""
    if (i * 7 + day) % 5 == 0:
        return None  # no reply today
    if i % 10 == 3 and 3 + i % 6 <= day < 6 + i % 6:
        return FLARE[(i + day) % len(FLARE)]
    if i % 20 == 7 and 15 <= day < 29:
        return FLARE[(i + day) % len(FLARE)]
    if i % 10 == 3 and 6 + i % 6 <= day < 9 + i % 6:
        return SETTLING[(i + day) % len(SETTLING)]
    return CALM[(i * 3 + day) % len(CALM)]


def reply_offset(i: int, step: timedelta) -> timedelta:
    """Each patient texts at one grid instant of the (UTC) day."""
    slots = int(timedelta(days=1) / step)
    return step * ((i * 11) % slots)


def send_time_of(i: int, step: timedelta) -> dtime:
    """Send times on the clock's grid, spread over 09:00-19:xx local."""
    minutes = int(step.total_seconds() // 60)
    slots = (11 * 60) // minutes
    m = ((i * 7) % slots) * minutes
    return dtime(9 + m // 60, m % 60)


def zone_of(i: int) -> str:
    return ZONES[i % len(ZONES)]  # as bench/datagen.py assigns them


def channel_of(i: int) -> Channel:
    return Channel.EMAIL if i % 5 == 0 else Channel.SMS  # as bench/datagen.py assigns them


def replies_for(
    i: int, start: datetime, days: int, step: timedelta
) -> Iterator[tuple[datetime, str]]:
    for day in range(days):
        body = reply_body(i, day)
        if body is not None:
            yield start + timedelta(days=day) + reply_offset(i, step), body


# --- the worker: the process whose memory is measured -------------------------------------------


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB from /proc: no psutil needed."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


@dataclass
class SoakCounts:
    ticks: int = 0
    planned: int = 0
    sent: int = 0
    not_sent: int = 0
    replies: int = 0


def soak(
    rt: Runtime, *, patients: int, days: int, step: timedelta, start: datetime
) -> dict[str, Any]:
    """Step the clock over ``days``; returns counts and RSS samples (one per simulated 6 h)."""
    buckets: dict[timedelta, list[int]] = {}
    for i in range(1, patients + 1):
        buckets.setdefault(reply_offset(i, step), []).append(i)
    counts = SoakCounts()
    samples: list[tuple[float, float]] = []
    end = start + timedelta(days=days)
    sample_every = int(timedelta(hours=6) / step)
    planned: list[int] = []
    started = time.perf_counter()

    def run_tick(now: datetime) -> None:
        planned.clear()
        tick(rt, now=now, dispatch=planned.extend)
        counts.ticks += 1
        counts.planned += len(planned)
        for outbox_id in planned:
            if deliver(rt, outbox_id, now=now) == DeliveryResult.SENT:
                counts.sent += 1
            else:
                counts.not_sent += 1

    analyse = _without_autovacuum(rt)
    daily = int(timedelta(days=1) / step)
    now, k = start, 0
    while now < end:
        if analyse and k and k % daily == 0:
            with rt.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        run_tick(now)
        elapsed = now - start
        day = elapsed.days
        due = buckets.get(elapsed - timedelta(days=day), ())
        answered = False
        for i in due:
            body = reply_body(i, day)
            if body is None:
                continue
            with rt.session() as session:
                patient = session.get_one(Patient, i)
                receive_reply(rt, session, patient, body, channel=channel_of(i), now=now)
            counts.replies += 1
            answered = True
        if answered:
            run_tick(now)  # what the next beat does with enrollments a reply made due now
        if k % sample_every == 0:
            samples.append(((now - start).total_seconds() / 86400, rss_mb()[0]))
        now += step
        k += 1
    samples.append((days, rss_mb()[0]))
    return {
        "counts": counts.__dict__,
        "samples": samples,
        "peak_mb": rss_mb()[1],
        "wall_s": time.perf_counter() - started,
    }


def _without_autovacuum(rt: Runtime) -> bool:
    """A PostgreSQL server with autovacuum off: the soak then runs ANALYZE once per simulated
    day, as autovacuum would. Without it this machine's soak slowed 12x after four simulated
    weeks, its connections keeping plans chosen when the tables were small (``campaigns
    doctor`` warns of such a server)."""
    if rt.engine.dialect.name != "postgresql":
        return False
    with rt.engine.connect() as conn:
        return not autovacuum_on(conn)


def child_main(argv: Sequence[str]) -> int:
    """``python -m bench.b7_soak URL PATIENTS DAYS STEP_MIN OUT``: the measured worker."""
    url, patients, days, step_min, out = argv
    quiet_logs()
    rt = bench_runtime(url)
    result = soak(
        rt,
        patients=int(patients),
        days=int(days),
        step=timedelta(minutes=int(step_min)),
        start=BENCH_NOW,
    )
    Path(out).write_text(json.dumps(result))
    return 0


# --- setting up and checking -----------------------------------------------------------------


def prepare(rt: Runtime, version_id: int, patients: int, step: timedelta, start: datetime) -> None:
    """Grid send times, and each enrollment in exactly the state ``pacing.start`` gives."""
    version = version_of(rt, version_id)
    rules = rules_of(version)
    window = rt.window
    with rt.session() as session:
        session.execute(
            update(Patient),
            [{"id": i, "send_time": send_time_of(i, step)} for i in range(1, patients + 1)],
        )
        rows = []
        for i in range(1, patients + 1):
            clock = PatientClock(ZoneInfo(zone_of(i)), send_time_of(i, step), window)
            state = start_pacing(rules, clock, now=start)
            rows.append({"eid": i, "due": state.next_due_at, "cadence": state.cadence_days})
        table = cast(Table, Enrollment.__table__)
        session.execute(
            update(table)
            .where(table.c.id == bindparam("eid"))
            .values(next_due_at=bindparam("due"), cadence_days=bindparam("cadence")),
            rows,
        )


Key = tuple[str, int, int, date]


def expected_plan(
    i: int, rules: PacingRules, shape: ProgramShape, window: SendWindow, *, start: datetime,
    days: int, step: timedelta,
) -> list[Key]:  # fmt: skip
    clock = PatientClock(ZoneInfo(zone_of(i)), send_time_of(i, step), window)
    replies = [
        (at, parse_reply(body, flare_phrases=rules.flare_keywords))
        for at, body in replies_for(i, start, days, step)
    ]
    result = simulate(rules, shape, clock, start=start, days=days, replies=replies)
    return [
        (s.send.track.value, s.send.index, s.send.occurrence, s.send.local_date)
        for s in result.sends
    ]


def compare(
    rt: Runtime, version_id: int, patients: int, *, start: datetime, days: int, step: timedelta
) -> dict[str, int]:
    """Outbox vs engine, per enrollment: lost, duplicated, unexpected, unsent, out of window."""
    version = version_of(rt, version_id)
    rules, shape, window = rules_of(version), shape_of(version), rt.window
    with rt.session() as session:
        steps = {
            s.id: (s.track.value if isinstance(s.track, Track) else str(s.track), s.position)
            for s in session.scalars(
                select(ProgramStep).where(ProgramStep.version_id == version_id)
            )
        }
        rows = session.execute(
            select(
                OutboxMessage.enrollment_id, OutboxMessage.step_id, OutboxMessage.occurrence,
                OutboxMessage.local_date, OutboxMessage.status, OutboxMessage.sent_at,
            )
            .where(OutboxMessage.purpose == MessagePurpose.PROGRAM)
            .order_by(OutboxMessage.enrollment_id, OutboxMessage.id)
        ).all()  # fmt: skip
    actual: dict[int, list[Key]] = {}
    out = Counter[str]()
    for enrollment_id, step_id, occurrence, local_date, status, sent_at in rows:
        track, position = steps[step_id]
        actual.setdefault(enrollment_id, []).append((track, position, occurrence, local_date))
        if status != MessageStatus.SENT or sent_at is None:
            out["not_sent"] += 1
            continue
        sent = sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)
        local = sent.astimezone(ZoneInfo(zone_of(enrollment_id)))
        if not window.contains(local.time()) or local.date() != local_date:
            out["outside_window"] += 1
    for i in range(1, patients + 1):
        want = expected_plan(i, rules, shape, window, start=start, days=days, step=step)
        got = actual.get(i, [])
        out["expected"] += len(want)
        out["outbox"] += len(got)
        want_c, got_c = Counter(want), Counter(got)
        out["lost"] += sum((want_c - got_c).values())
        out["duplicated"] += sum(n - 1 for n in got_c.values() if n > 1)
        out["unexpected"] += sum(1 for k in got_c if k not in want_c)
        out["order_mismatch"] += int(want != got and want_c == got_c)
        out["flare_messages"] += sum(1 for k in want if k[0] == Track.FLARE.value)
    for key in ("not_sent", "outside_window"):
        out.setdefault(key, 0)
    return dict(out)


# --- the ETA baseline: a real Celery worker holding M far-future tasks ------------------------


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _celery_env(work: Path) -> dict[str, str]:
    database = f"sqlite:///{work / 'celery.db'}"
    return child_env(work, database, CAMPAIGNS_BROKER_URL=REDIS_URL)


#: Keys kombu's Redis transport creates for the ``sends`` queue; deleted afterwards.
CELERY_KEYS = ("sends", "unacked", "unacked_index", "unacked_mutex", "_kombu.binding.sends")


def _wait_stable(pid: int, until: Any, timeout: float) -> float:
    """Poll until ``until()`` holds and RSS stops moving (or the timeout): the worker's RSS."""
    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        rss = rss_mb(pid)[0]
        if until() and abs(rss - last) < 0.5:
            return rss
        last = rss
        time.sleep(0.5)
    return rss_mb(pid)[0]


def eta_baseline(tasks: int, work: Path, countdown_days: int = 30) -> dict[str, Any]:
    """RSS of ``celery -A worker.app worker -Q sends -c 1`` idle, then holding ``tasks``
    ETA tasks (one per future message of the plan), published with a far ``countdown``."""
    import redis
    from celery import Celery

    work.mkdir(parents=True, exist_ok=True)
    r = redis.Redis.from_url(REDIS_URL)
    r.delete(*CELERY_KEYS)
    python = os.environ.get("BENCH_PYTHON", sys.executable)
    cmd = [
        python, "-m", "celery", "-A", "worker.app", "worker", "-Q", "sends", "-c", "1",
        "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "WARNING",
    ]  # fmt: skip
    with child_output(work / "celery.log") as log:
        proc = subprocess.Popen(cmd, env=_celery_env(work), stdout=log, stderr=log)
    try:
        idle = _wait_stable(proc.pid, lambda: r.exists("_kombu.binding.sends") > 0, 60)
        idle_children = sum(rss_mb(c)[0] for c in _children(proc.pid))
        app = Celery("bench-eta", broker=REDIS_URL)
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for n in range(tasks):
                app.send_task(
                    "campaigns.send", args=[n + 1], countdown=countdown_days * 86400,
                    queue="sends", producer=producer,
                )  # fmt: skip
        publish_s = time.perf_counter() - started
        held = _wait_stable(
            proc.pid, lambda: r.llen("sends") == 0 and r.hlen("unacked") >= tasks, 600
        )
        taken = int(r.hlen("unacked"))
        children = sum(rss_mb(c)[0] for c in _children(proc.pid))
        app.close()
    finally:
        stop(proc, 30)
        r.delete(*CELERY_KEYS, *r.scan_iter("_kombu.binding*"))
        r.close()
    return {
        "tasks": tasks,
        "taken": taken,
        "idle_mb": idle,
        "idle_children_mb": idle_children,
        "held_mb": held,
        "held_children_mb": children,
        "publish_s": publish_s,
        "per_task_kb": (held - idle) * 1024 / tasks if tasks else None,
    }


# --- the workload ------------------------------------------------------------------------------


def _slope(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares MB per simulated day, from day 1 on (day 0 is imports and caches)."""
    pts = [(d, m) for d, m in samples if d >= 1] or list(samples)
    if len(pts) < 2:
        return 0.0
    mx = sum(d for d, _ in pts) / len(pts)
    my = sum(m for _, m in pts) / len(pts)
    var = sum((d - mx) ** 2 for d, _ in pts)
    return sum((d - mx) * (m - my) for d, m in pts) / var if var else 0.0


def soak_size(db: str, patients: int, days: int, step_min: int) -> dict[str, Any]:
    """Seed, soak in a child process, compare with the engine."""
    step = timedelta(minutes=step_min)
    with fresh_database(db, "b7") as url:
        rt = bench_runtime(url)
        seeded = populate(rt, patients, now=BENCH_NOW)
        prepare(rt, seeded.version_id, patients, step, BENCH_NOW)
        out = WORK_DIR / f"b7-{db}-{patients}-{os.getpid()}.json"
        python = os.environ.get("BENCH_PYTHON", sys.executable)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        cmd = [
            python,
            "-m",
            "bench.b7_soak",
            url,
            str(patients),
            str(days),
            str(step_min),
            str(out),
        ]
        subprocess.run(cmd, env=env, check=True)
        result: dict[str, Any] = json.loads(out.read_text())
        out.unlink()
        started = time.perf_counter()
        result["check"] = compare(
            rt, seeded.version_id, patients, start=BENCH_NOW, days=days, step=step
        )
        result["check_s"] = time.perf_counter() - started
        rt.engine.dispose()
    samples = result["samples"]
    after_day1 = [m for d, m in samples if d >= 1] or [m for _, m in samples]
    result.update(
        start_mb=after_day1[0],
        end_mb=samples[-1][1],
        growth_mb=samples[-1][1] - after_day1[0],
        slope_mb_per_day=_slope(samples),
    )
    return result


def run(
    *, db: str, sizes: Sequence[int], days: int, step_min: int, eta_tasks: int | None
) -> list[Figure]:
    """One soak per size, then one ETA baseline sized like the largest plan; a figure per size
    (goal met only if memory is low and flat *and* the outbox is exactly the plan)."""
    results = {n: soak_size(db, n, days, step_min) for n in sizes}
    biggest = results[max(sizes)]
    tasks = eta_tasks if eta_tasks is not None else biggest["check"]["expected"]
    eta = eta_baseline(tasks, WORK_DIR / f"b7-celery-{os.getpid()}")
    figures = []
    for n, res in results.items():
        check = res["check"]
        exact = all(check[k] == 0 for k in ("lost", "duplicated", "unexpected", "not_sent",
                                              "outside_window", "order_mismatch"))  # fmt: skip
        flat = res["growth_mb"] < FLAT_MB
        figures.append(
            Figure(
                workload="B7",
                db=db,
                size=n,
                metric=f"soak worker peak RSS ({days} d, {step_min}-min clock)",
                unit="MB",
                better="lower",
                ours=res["peak_mb"],
                baseline=eta["held_mb"],
                baseline_desc=(
                    f"Celery worker (-c 1) holding {eta['taken']:,} ETA send tasks "
                    "(main process RSS)"
                ),
                ceiling=eta["idle_mb"],
                ceiling_desc="the same Celery worker idle (main process RSS)",
                goal=f"< {GOAL_MB:g} MB, flat; outbox == pacing plan (0 lost, 0 duplicated)",
                goal_met=res["peak_mb"] < GOAL_MB and flat and exact,
                extra={**res, "exact": exact, "flat": flat, "eta": eta},
            )
        )
    return figures


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--b7-sizes", default="100,300", help="patients per B7 soak, e.g. 1k,10k")
    p.add_argument("--b7-days", type=int, default=42, help="simulated days per B7 soak")
    p.add_argument("--b7-step-min", type=int, default=30, help="simulated minutes per step")
    p.add_argument(
        "--b7-eta-tasks", type=int, default=None, help="ETA tasks for the baseline (default: "
        "as many as messages in the largest plan)",
    )  # fmt: skip


def run_cli(args: argparse.Namespace, db: str) -> list[Figure]:
    """``bench/run`` entry point; ``--smoke`` soaks 20 patients for 8 days."""
    if args.smoke:
        return run(db=db, sizes=[20], days=8, step_min=60, eta_tasks=200)
    return run(
        db=db,
        sizes=[parse_size(s) for s in args.b7_sizes.split(",") if s],
        days=args.b7_days,
        step_min=args.b7_step_min,
        eta_tasks=args.b7_eta_tasks,
    )


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
