"""B3's batch path pass after pass in one long-lived process, CPU per message from
``getrusage``: the steadier figure on a machine whose speed drifts within minutes.

Loads N enrollments, freezes the heap as a worker process does once it is set up
(``campaigns.heap``), runs one warm-up pass, then ``--passes`` passes on successive days:
each makes ``--due`` enrollments due at 09:00 (with them fall due those whose generated send
times have come, and those of earlier passes, daily), ticks, and sends the plan in
``send_batch``-sized chunks to in-process fakes (``bench.b3_send.ours``).

    python -m bench.b3_passes [--db sqlite] [--passes 8] [--due 2000] [--enrollments 10000]

Prints each pass and the median CPU per message of the passes after the first two. For a
count that does not depend on the machine at all, run it under
``valgrind --tool=callgrind`` with ``--passes 2`` and with ``--passes 0``: the difference of
the two totals, divided by the messages the two passes sent, is the instructions per
message (``bench/HISTORY.md``, fourteenth session).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from datetime import timedelta

from bench.b3_send import make_due, ours
from bench.common import BENCH_NOW, bench_runtime, fresh_database, quiet_logs
from bench.datagen import populate
from campaigns.heap import freeze_startup_heap

#: Passes left out of the median: the first days still fill caches and the page cache.
SETTLING = 2


def _cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def run(db: str, *, passes: int, due: int, enrollments: int) -> list[tuple[int, float, float]]:
    """(sent, seconds, CPU seconds) per pass."""
    quiet_logs()
    figures = []
    with fresh_database(db, "passes") as url:
        rt = bench_runtime(url)
        try:
            populate(rt, enrollments, now=BENCH_NOW)
            make_due(rt, 20, now=BENCH_NOW)
            freeze_startup_heap()  # where a worker process freezes: set up, no task run yet
            ours(rt, now=BENCH_NOW)  # warm the pool, the templates and the version caches
            for day in range(1, passes + 1):
                now = BENCH_NOW + timedelta(days=day)
                make_due(rt, due, now=now)
                cpu, started = _cpu_s(), time.perf_counter()
                sent = ours(rt, now=now)[0]
                figures.append((sent, time.perf_counter() - started, _cpu_s() - cpu))
        finally:
            rt.engine.dispose()
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    p.add_argument("--passes", type=int, default=8)
    p.add_argument("--due", type=int, default=2000, help="enrollments made due per pass")
    p.add_argument("--enrollments", type=int, default=10_000)
    args = p.parse_args()
    figures = run(args.db, passes=args.passes, due=args.due, enrollments=args.enrollments)
    for day, (sent, seconds, cpu) in enumerate(figures, start=1):
        print(f"pass {day}: {sent} sent, {sent / seconds:,.0f} msg/s, "
              f"{cpu / sent * 1e6:.1f} µs CPU per message")  # fmt: skip
    settled = [cpu / sent * 1e6 for sent, _, cpu in figures[SETTLING:] if sent]
    if settled:
        print(f"median CPU per message, passes {SETTLING + 1}-{len(figures)}: "
              f"{statistics.median(settled):.1f} µs")  # fmt: skip
    print(f"messages sent: {sum(sent for sent, _, _ in figures)}")


if __name__ == "__main__":
    main()
