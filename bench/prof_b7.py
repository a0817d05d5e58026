"""Where B7's memory goes: ``python -m bench.prof_b7 sqlite|postgresql [PATIENTS] [DAYS]``.

Runs ``b7_soak.soak`` in this process under tracemalloc and prints, for ticks, deliveries and
replies, the most Python memory one of them held at once (with the allocations behind the
largest), then RSS against what tracemalloc still traces. RSS growing while the traced
total stays small means the memory is outside Python's heap (a C library's caches); that is
how the SQLite driver's prepared statements were found (``bench/HISTORY.md``, B7 at 10k).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench import b7_soak
from bench.common import BENCH_NOW, bench_runtime, fresh_database, quiet_logs
from bench.datagen import populate

#: Snapshots are kept only for operations that held more than this (MB): they are large.
SNAPSHOT_ABOVE_MB = 3.0


def _watched(
    name: str,
    fn: Callable[..., Any],
    peaks: dict[str, float],
    snapshots: dict[str, tracemalloc.Snapshot],
) -> Callable[..., Any]:
    def watched(*args: Any, **kwargs: Any) -> Any:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        try:
            return fn(*args, **kwargs)
        finally:
            held = (tracemalloc.get_traced_memory()[1] - base) / 1e6
            if held > peaks.get(name, 0.0):
                peaks[name] = held
                if held > SNAPSHOT_ABOVE_MB:
                    snapshots[name] = tracemalloc.take_snapshot()

    return watched


def main(db: str, patients: int = 1000, days: int = 4) -> None:
    quiet_logs()
    step = timedelta(minutes=30)
    with fresh_database(db, "prof") as url:
        rt = bench_runtime(url)
        seeded = populate(rt, patients, now=BENCH_NOW)
        b7_soak.prepare(rt, seeded.version_id, patients, step, BENCH_NOW)
        peaks: dict[str, float] = {}
        snapshots: dict[str, tracemalloc.Snapshot] = {}
        for name in ("tick", "deliver", "receive_reply"):
            setattr(b7_soak, name, _watched(name, getattr(b7_soak, name), peaks, snapshots))
        tracemalloc.start(8)
        started = time.perf_counter()
        result = b7_soak.soak(rt, patients=patients, days=days, step=step, start=BENCH_NOW)
        traced, _ = tracemalloc.get_traced_memory()
        print(f"{db}, {patients} patients x {days} d in {time.perf_counter() - started:.0f} s")
        print(f"RSS {b7_soak.rss_mb()[0]:.1f} MB; still traced {traced / 1e6:.1f} MB")
        print("most held at once (MB):", {k: round(v, 2) for k, v in peaks.items()})
        print("RSS by simulated day:", [(round(d, 1), round(m, 1)) for d, m in result["samples"]])
        for name, snapshot in snapshots.items():
            print(f"== the largest {name}")
            for stat in snapshot.statistics("traceback")[:5]:
                print(stat)
                for line in stat.traceback.format()[-6:]:
                    print("   ", line)
        rt.engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
