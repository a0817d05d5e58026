"""B4 under steady arrival: messages fall due one after another at a fixed rate.

A burst says how fast a backlog clears; the goal's "sustained" rate and its due-to-sent
p95 are about a stream. Each step makes ``rate x seconds`` fresh enrollments due evenly
spaced (``due_i = start + i / rate``) and waits until all are sent. Ours: beat ticks every
``TICK_SECONDS`` and the worker sends what each tick planned. Baseline (same worker): the
rows planned up front, then one ``campaigns.send`` task per row published with a countdown
to its own due moment. Latency is each row's ``sent_at`` minus its own due moment
(``sent_at`` is stamped when its send batch starts, so a batch's own duration, ~0.1 s,
is not in it). Steps go up until p95 passes twice the goal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bench import proc_cpu
from bench.b4_due import make_due
from bench.common import bench_settings, percentile
from bench.outbox_poll import any_unsent
from campaigns.models import OutboxMessage, utcnow
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from worker.app import SEND_TASK, create_app

#: Seconds between making a step's rows due and its first due moment.
LEAD_S = 3.0


@dataclass
class Step:
    rate: float
    count: int
    p50_s: float
    p95_s: float
    p99_s: float
    #: Messages per second from the first due moment to the last send: the offered rate,
    #: less the last message's latency, while the sender keeps up.
    cleared_per_s: float
    cpu_ms_per_msg: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sent_by_enrollment(rt: Runtime, first: int, count: int) -> dict[int, datetime]:
    with rt.session() as session:
        rows = session.execute(
            select(OutboxMessage.enrollment_id, OutboxMessage.sent_at).where(
                OutboxMessage.enrollment_id.between(first, first + count - 1),
                OutboxMessage.sent_at.is_not(None),
            )
        ).all()
    return {eid: sent for eid, sent in rows if eid is not None and sent is not None}


def _measure(
    rt: Runtime, first: int, count: int, rate: float, start: datetime,
    sent_of: dict[int, datetime], cpu: dict[str, float],
) -> Step:  # fmt: skip
    latencies = [
        (sent_of[first + i] - (start + timedelta(seconds=i / rate))).total_seconds()
        for i in range(count)
        if first + i in sent_of
    ]
    span = (max(sent_of.values()) - start).total_seconds() if sent_of else 0.0
    return Step(
        rate=rate,
        count=count,
        p50_s=percentile(latencies, 50),
        p95_s=percentile(latencies, 95),
        p99_s=percentile(latencies, 99),
        cleared_per_s=len(latencies) / span if span > 0 else 0.0,
        cpu_ms_per_msg={part: s * 1000 / count for part, s in cpu.items()},
    )


def _sent_count(rt: Runtime, first: int, count: int) -> int:
    with rt.session() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    OutboxMessage.enrollment_id.between(first, first + count - 1),
                    OutboxMessage.sent_at.is_not(None),
                )
            )
            or 0
        )


def _wait_all(
    rt: Runtime, first: int, count: int, *, not_before: datetime, timeout: float
) -> dict[int, datetime]:
    """Nothing is polled while rows are still falling due (this process serves the fakes);
    then one index probe for an unsent row, and the full count only once nothing is unsent."""
    time.sleep(max(0.0, (not_before - utcnow()).total_seconds()))
    deadline = time.monotonic() + timeout
    while any_unsent(rt) or _sent_count(rt, first, count) < count:
        if time.monotonic() > deadline:
            sent = _sent_count(rt, first, count)
            raise TimeoutError(f"steady step: {sent} of {count} sent in {timeout:.0f} s")
        time.sleep(0.1)
    return _sent_by_enrollment(rt, first, count)


def _stepped(
    rt: Runtime, rates: Sequence[float], seconds: float, first: int,
    parts: Callable[[], dict[str, list[int]]], limit_s: float,
    begin: Callable[[float, int, int], datetime], per_row_s: float,
) -> tuple[list[Step], int]:  # fmt: skip
    """Each rate on fresh rows: ``begin(rate, first, count)`` sets them going and returns the
    first due moment; a step is measured once all its rows are sent."""
    steps: list[Step] = []
    for rate in rates:
        count = max(1, int(rate * seconds))
        start = begin(rate, first, count)
        before = proc_cpu.snapshot(parts())
        last_due = start + timedelta(seconds=(count - 1) / rate)
        sent = _wait_all(rt, first, count, not_before=last_due, timeout=60 + count * per_row_s)
        step = _measure(rt, first, count, rate, start, sent,
                        proc_cpu.spent(before, proc_cpu.snapshot(parts())))  # fmt: skip
        steps.append(step)
        first += count
        if step.p95_s > limit_s:
            break
    return steps, first


def ours(
    rt: Runtime, rates: Sequence[float], seconds: float, first: int,
    parts: Callable[[], dict[str, list[int]]], limit_s: float,
) -> tuple[list[Step], int]:  # fmt: skip
    """Beat is running: each step's rows are planned by its ticks as they fall due."""

    def begin(rate: float, first: int, count: int) -> datetime:
        start = utcnow() + timedelta(seconds=LEAD_S)
        make_due(rt, first, count, at=start, every_s=1 / rate)
        return start

    return _stepped(rt, rates, seconds, first, parts, limit_s, begin, per_row_s=1 / 50)


def countdown(
    rt: Runtime, broker: str, rates: Sequence[float], seconds: float, first: int,
    parts: Callable[[], dict[str, list[int]]], limit_s: float,
) -> tuple[list[Step], int]:  # fmt: skip
    """Each step's rows planned in-process, then one countdown task per row."""
    app = create_app(bench_settings(rt.settings.resolved_database_url, broker_url=broker))

    def begin(rate: float, first: int, count: int) -> datetime:
        now = utcnow()
        make_due(rt, first, count, at=now - timedelta(seconds=count / rate + 1),
                 every_s=1 / rate)  # fmt: skip
        planned = tick(rt, now=now).planned
        with rt.session() as session:
            rows = session.execute(
                select(OutboxMessage.id, OutboxMessage.enrollment_id).where(
                    OutboxMessage.id.in_(planned)
                )
            ).all()
        eid_of = {oid: eid for oid, eid in rows if eid is not None}
        # publishing takes a while: the first due moment comes after the last publish
        start = utcnow() + timedelta(seconds=LEAD_S + count / 2000)
        with app.producer_or_acquire() as producer:
            for outbox_id in planned:
                due = start + timedelta(seconds=(eid_of[outbox_id] - first) / rate)
                wait = (due - utcnow()).total_seconds()
                app.send_task(SEND_TASK, args=[outbox_id], countdown=max(wait, 0),
                              producer=producer)  # fmt: skip
        return start

    try:
        return _stepped(rt, rates, seconds, first, parts, limit_s, begin, per_row_s=1 / 20)
    finally:
        app.close()


def best_rate(steps: Sequence[Step], goal_s: float) -> float:
    """The highest offered rate whose p95 met ``goal_s`` (0 if none did)."""
    return max((s.rate for s in steps if s.p95_s <= goal_s), default=0.0)


def rows_needed(rates: Sequence[float], seconds: float) -> int:
    return sum(max(1, int(r * seconds)) for r in rates)
