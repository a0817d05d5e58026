"""B3 with several processes ticking and sending at once on PostgreSQL (``SKIP LOCKED``).

Not part of ``bench/run``: a separate figure for the README. Each process runs the
product's ``tick`` with batches of 250 and sends what it planned in ``deliver_batch``
chunks; afterwards every due message must be sent exactly once.

    python -m bench.b3_procs PROCESSES DUE
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from sqlalchemy import text

from bench.b3_send import _deliver_batches, make_due
from bench.common import BENCH_NOW, bench_runtime, fresh_database, quiet_logs
from bench.datagen import populate
from campaigns.scheduler import tick

BATCH = 250


def _worker(url: str, start: Event, out: Queue[tuple[int, float, float]]) -> None:
    quiet_logs()
    rt = bench_runtime(url)
    sent = 0

    def dispatch(ids: Sequence[int]) -> None:
        nonlocal sent
        sent += _deliver_batches(rt, list(ids), BENCH_NOW)

    start.wait()
    began = time.perf_counter()
    tick(rt, now=BENCH_NOW, dispatch=dispatch, batch_size=BATCH)
    out.put((sent, began, time.perf_counter()))
    rt.engine.dispose()


def main(processes: int, due: int) -> None:
    quiet_logs()
    with fresh_database("postgresql", "procs") as url:
        rt = bench_runtime(url)
        populate(rt, 10_000, now=BENCH_NOW)
        make_due(rt, due, now=BENCH_NOW)
        ctx = mp.get_context("spawn")
        start, out = ctx.Event(), ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(url, start, out)) for _ in range(processes)]
        for w in workers:
            w.start()
        time.sleep(3)  # every process imported and connected before the clock starts
        start.set()
        results = [out.get() for _ in workers]
        for w in workers:
            w.join()
        wall = max(r[2] for r in results) - min(r[1] for r in results)
        sent = sum(r[0] for r in results)
        with rt.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT status, count(*), count(DISTINCT (enrollment_id, step_id, occurrence))"
                    " FROM outbox GROUP BY status"
                )
            ).all()
        rt.engine.dispose()
    print(
        f"processes={processes} due={due} sent={sent} per-process={[r[0] for r in results]}"
        f" wall={wall:.3f}s rate={sent / wall:.0f} msg/s outbox={rows}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
