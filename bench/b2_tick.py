"""B2 idle tick: one scheduler pass when nothing is due, via the partial due index,
beside a tick that scans every live enrollment, and a bare one-query transaction."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, text, update

from bench.common import Figure, median, percentile
from campaigns.enums import EnrollmentState
from campaigns.models import Enrollment
from campaigns.runtime import Runtime
from campaigns.scheduler import tick

GOAL_MS = 1.0
LIVE = (EnrollmentState.ACTIVE, EnrollmentState.FLARE)


def _samples(fn: Callable[[], object], n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def scan_every_enrollment(rt: Runtime, *, now: datetime, limit: int = 500) -> list[int]:
    """The baseline: read every live enrollment and decide in Python which are due."""
    with rt.session() as session:
        rows = session.execute(
            select(Enrollment.id, Enrollment.next_due_at).where(Enrollment.state.in_(LIVE))
        ).all()
    due = sorted((d, i) for i, d in rows if d is not None and d <= now)
    return [i for _, i in due[:limit]]


def bare_transaction(rt: Runtime) -> None:
    with rt.session() as session:
        session.execute(text("SELECT 1"))


def all_at_nine(rt: Runtime, *, now: datetime) -> None:
    """Every enrollment next due at one instant tomorrow (09:00 in New York), the other
    shape of the schedule: the probe must not care how due times are distributed."""
    nine = (now + timedelta(days=1)).replace(hour=14, minute=0, second=0, microsecond=0)
    with rt.session() as session:
        session.execute(
            update(Enrollment).where(Enrollment.state.in_(LIVE)).values(next_due_at=nine)
        )
    with rt.engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def run(rt: Runtime, *, db: str, size: int, now: datetime, smoke: bool, shape: str = "") -> Figure:
    ours = _samples(lambda: tick(rt, now=now), 20 if smoke else 300, warmup=5)
    base_n = 3 if smoke or size >= 1_000_000 else 5 if size >= 100_000 else 20
    base = _samples(lambda: scan_every_enrollment(rt, now=now), base_n, warmup=1)
    ceiling = _samples(lambda: bare_transaction(rt), 20 if smoke else 300, warmup=5)
    ours_ms = median(ours)
    return Figure(
        workload="B2",
        db=db,
        size=size,
        metric="idle tick p50" + (f", {shape}" if shape else ""),
        unit="ms",
        better="lower",
        ours=ours_ms,
        baseline=median(base),
        baseline_desc="tick scanning every live enrollment, due check in Python",
        ceiling=median(ceiling),
        ceiling_desc="one transaction running SELECT 1 (the least a tick can cost)",
        goal=f"<= {GOAL_MS} ms at 1M; <= 2x slower 10k -> 1M",
        goal_met=ours_ms <= GOAL_MS,
        extra={
            "p95_ms": percentile(ours, 95),
            "samples": len(ours),
            "baseline_samples": len(base),
        },
    )
