"""B3 as the worker runs it: its 2 processes ticking and sending at once.

A worker started with ``-c 2`` has two processes, each running the tick (claims are locked
with ``SKIP LOCKED`` on PostgreSQL, so they share the due rows) and sending what it planned.
Each process here runs the product's ``tick`` with batches of 250 and sends its plans in
``deliver_batch`` chunks; the same run with one process is the comparison, both spawned the
same way, on the next two simulated days of the table B3 just used, with the same rows due
(the table's other rows are moved a month on: the B2 run after B3 resets them). Each process
first compiles every step's templates, as a worker that has ticked before has them. Afterwards
every message must be in the outbox once and sent. On SQLite the processes take turns at
the one writer lock, so a second process is expected to add little there.

    python -m bench.b3_procs PROCESSES DUE [sqlite|postgresql]   (a one-off run, printed)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import TypeVar

from sqlalchemy import func, select, text, update

from bench.b3_send import GOAL_PER_S, _deliver_batches, make_due, warm
from bench.common import BENCH_NOW, Figure, bench_runtime, fresh_database, quiet_logs
from bench.datagen import populate
from campaigns.enums import MessageStatus
from campaigns.models import Enrollment, OutboxMessage, ProgramVersion
from campaigns.runtime import Runtime
from campaigns.scheduler import tick

T = TypeVar("T")
BATCH = 250
#: Where the rows not measured are put, out of the way.
LATER = timedelta(days=30)


@dataclass(frozen=True)
class Run:
    processes: int
    due: int
    sent: list[int]
    wall: float
    #: Outbox rows planned at ``now`` by status, and how many distinct (enrollment, step,
    #: occurrence) they hold: equal counts mean nothing was planned twice.
    planned: int
    sent_rows: int
    distinct: int

    @property
    def rate(self) -> float:
        return sum(self.sent) / self.wall if self.wall else 0.0


def _worker(
    url: str,
    now: datetime,
    ready: Queue[int],
    go: Event,
    out: Queue[tuple[int, float, float]],
) -> None:
    quiet_logs()
    rt = bench_runtime(url)
    with rt.session() as session:
        versions = session.scalars(select(ProgramVersion.id)).all()
    warm(rt, versions)
    sent = 0

    def dispatch(ids: Sequence[int]) -> None:
        nonlocal sent
        sent += _deliver_batches(rt, list(ids), now)

    ready.put(os.getpid())
    if not go.wait(timeout=600):  # every process warm, then all at once
        return
    began = time.perf_counter()
    tick(rt, now=now, dispatch=dispatch, batch_size=BATCH)
    out.put((sent, began, time.perf_counter()))
    rt.engine.dispose()


def _gather(workers: Sequence[BaseProcess], out: Queue[T]) -> list[T]:
    """One item from each process; a process that died says so at once, not after a
    timeout."""
    results: list[T] = []
    deadline = time.monotonic() + 600
    while len(results) < len(workers):
        try:
            results.append(out.get(timeout=1.0))
        except queue.Empty:
            failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                raise RuntimeError(f"B3 process failed (exit codes {failed})") from None
    return results


def _vacuum(rt: Runtime) -> None:
    """Clear the entries the move above left in ``ix_enrollments_due``, as autovacuum would.

    Moving every other row leaves its old entry behind in the index, dead, at the due time it
    had: tomorrow's rows lie inside the claim's range on the second day. This machine's
    PostgreSQL runs without autovacuum, so the first claims stepped over ~1M dead entries
    at 1M enrollments, both processes at once, before either could mark them (bench/HISTORY.md,
    eighth session). That measured the bench's own move, not the tick: the product never
    re-times a whole table, and the entries its ticks leave behind are marked by the next
    claim that passes them."""
    if rt.engine.dialect.name != "postgresql":
        return
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM enrollments"))


def measure(rt: Runtime, processes: int, due: int, *, now: datetime) -> Run:
    """The first ``due`` enrollments fall due at ``now``; ``processes`` spawned processes
    tick and send until none is left."""
    make_due(rt, due, now=now)
    with rt.session() as session:  # the table's other rows fell due meanwhile: not now
        session.execute(
            update(Enrollment).where(Enrollment.id > due).values(next_due_at=now + LATER)
        )
    _vacuum(rt)
    url = rt.settings.resolved_database_url
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(url, now, ready, go, out)) for _ in range(processes)
    ]
    for w in workers:
        w.start()
    _gather(workers, ready)
    go.set()
    results = _gather(workers, out)
    for w in workers:
        w.join()
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    with rt.session() as session:
        mine = select(OutboxMessage).where(OutboxMessage.planned_at == now).subquery()
        planned, sent_rows = session.execute(
            select(func.count(), func.count().filter(mine.c.status == MessageStatus.SENT))
        ).one()
        messages = select(mine.c.enrollment_id, mine.c.step_id, mine.c.occurrence).distinct()
        distinct = session.scalar(select(func.count()).select_from(messages.subquery()))
    return Run(processes, due, [r[0] for r in results], wall, planned, sent_rows, distinct or 0)


def run(rt: Runtime, *, db: str, size: int, due: int, now: datetime, single: Figure) -> Figure:
    """One process then two, on the two days after ``now``; ``single`` is B3's in-process
    figure of the same table, whose baseline this row repeats."""
    one = measure(rt, 1, due, now=now + timedelta(days=1))
    two = measure(rt, 2, due, now=now + timedelta(days=2))
    return Figure(
        workload="B3",
        db=db,
        size=size,
        metric=f"claim->send, 2 processes ({sum(two.sent)} due)",
        unit="msg/s",
        better="higher",
        ours=two.rate,
        baseline=single.baseline,
        baseline_desc=single.baseline_desc,
        ceiling=single.ceiling,
        ceiling_desc=single.ceiling_desc,
        goal=single.goal,
        goal_met=two.rate >= GOAL_PER_S,
        extra={
            "one_process_per_s": one.rate,
            "x_one_process": two.rate / one.rate if one.rate else None,
            "sent_per_process": two.sent,
            "outbox": {
                "planned": two.planned,
                "sent": two.sent_rows,
                "distinct_messages": two.distinct,
            },
            "seconds": two.wall,
        },
    )


def main(processes: int, due: int, db: str = "postgresql") -> None:
    quiet_logs()
    with fresh_database(db, "procs") as url:
        rt = bench_runtime(url)
        populate(rt, 10_000, now=BENCH_NOW)
        result = measure(rt, processes, due, now=BENCH_NOW)
        rt.engine.dispose()
    print(
        f"processes={processes} due={due} sent={sum(result.sent)} per-process={result.sent}"
        f" wall={result.wall:.3f}s rate={result.rate:.0f} msg/s planned={result.planned}"
        f" sent_rows={result.sent_rows} distinct={result.distinct}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:4])
