"""Profile B3 in process: ``python -m bench.prof_b3 sqlite|postgresql [DUE] [ROWS]``.

Loads a 10k-enrollment database, makes DUE of them due, then runs ``tick`` and the send
batches under cProfile, as ``bench.b3_send.ours`` does, to say where a message's time goes.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

from bench.b3_send import make_due, ours
from bench.common import BENCH_NOW, bench_runtime, fresh_database, quiet_logs
from bench.datagen import populate


def main(db: str, due: int = 2000, rows: int = 40) -> None:
    quiet_logs()
    with fresh_database(db, "prof") as url:
        rt = bench_runtime(url)
        populate(rt, 10_000, now=BENCH_NOW)
        make_due(rt, 20, now=BENCH_NOW)
        ours(rt, now=BENCH_NOW)  # warm the pool, the templates and the version caches
        make_due(rt, due, now=BENCH_NOW)
        prof = cProfile.Profile()
        started = time.perf_counter()
        prof.enable()
        sent, total_s, plan_s = ours(rt, now=BENCH_NOW)
        prof.disable()
        elapsed = time.perf_counter() - started
        print(f"{db}: {sent} sent, {sent / elapsed:.0f} msg/s under the profiler")
        print(f"plan {plan_s:.3f} s, send {total_s - plan_s:.3f} s")
        stats = pstats.Stats(prof)
        stats.sort_stats("cumulative").print_stats(rows)
        stats.sort_stats("tottime").print_stats(rows)
        rt.engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
