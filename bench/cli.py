"""``bench/run``: every workload at every size and database, as a table and a JSON file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import (
    b1_enrol,
    b2_tick,
    b3_procs,
    b3_send,
    b4_e2e,
    b5_queue,
    b5_ratelimit,
    b6_replies,
    b7_soak,
    proc_cpu,
)
from bench.common import (
    BENCH_NOW,
    Figure,
    bench_runtime,
    cpu_probe,
    fresh_database,
    parse_size,
    quiet_logs,
    size_label,
)
from bench.datagen import populate

WORKLOADS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
NOT_IMPLEMENTED: dict[str, str] = {}
console = Console(width=max(Console().width, 150))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    p.add_argument("--sizes", default="10k,100k", help="enrollment counts, e.g. 10k,100k,1M")
    p.add_argument("--db", default="sqlite,postgresql", help="sqlite,postgresql")
    p.add_argument("--only", default=",".join(WORKLOADS), help="workloads to run, e.g. B2,B3")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: proves it runs, times nothing")
    p.add_argument("--out", default="bench/results/latest.json")
    p.add_argument("--b1-rows", default="100k", help="rows in the B1 CSV")
    p.add_argument("--b3-due", type=int, default=2000, help="messages due in each B3 run")
    p.add_argument("--b3-max-size", default="100k", help="skip B3 above this table size")
    p.add_argument("--b4-burst", default="10k", help="messages due at once in B4")
    p.add_argument("--b4-baseline", default="2k", help="countdown tasks in B4's baseline")
    p.add_argument("--b4-steady", default="250,500,1000,1500,2000",
                   help="B4 steady-arrival rates (msg/s), stepped up; '' skips them")  # fmt: skip
    p.add_argument("--b4-steady-seconds", type=float, default=10.0, help="seconds per step")
    b6_replies.add_arguments(p)
    b7_soak.add_arguments(p)
    return p.parse_args(argv)


def _guard(errors: list[dict[str, str]], label: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """One failing workload is reported, not fatal: the rest still measure."""
    try:
        return fn(**kwargs)
    except Exception as exc:
        errors.append({"workload": label, "error": repr(exc), "trace": traceback.format_exc()})
        console.print(f"[red]{label} failed: {exc!r}[/red]")
        return None


def run_database(
    args: argparse.Namespace, db: str, figures: list[Figure], errors: list[Any]
) -> None:
    only = set(args.only.split(","))
    sizes = [200] if args.smoke else [parse_size(s) for s in args.sizes.split(",")]
    b3_max = parse_size(args.b3_max_size)
    for size in sizes:
        if not only & {"B2", "B3"}:
            break
        with fresh_database(db, size_label(size).lower()) as url:
            rt = bench_runtime(url)
            started = time.perf_counter()
            seeded = populate(rt, size, now=BENCH_NOW)
            load_s = time.perf_counter() - started
            console.print(f"{db} {size_label(size)}: loaded in {load_s:.1f}s")
            if "B2" in only:
                fig = _guard(
                    errors, f"B2 {db} {size}", b2_tick.run,
                    rt=rt, db=db, size=size, now=BENCH_NOW, smoke=args.smoke,
                )  # fmt: skip
                if fig:
                    fig.extra["load_s"] = load_s
                    figures.append(fig)
            if "B3" in only and size <= b3_max:
                due = min(size, 100 if args.smoke else args.b3_due)
                fig = _guard(
                    errors, f"B3 {db} {size}", b3_send.run,
                    rt=rt, db=db, size=size, version_id=seeded.version_id, now=BENCH_NOW,
                    due=due, base_n=max(10, due // 10),
                )  # fmt: skip
                if fig:
                    figures.append(fig)
                    procs = _guard(
                        errors, f"B3 {db} {size} 2 processes", b3_procs.run,
                        rt=rt, db=db, size=size, due=due, now=BENCH_NOW, single=fig,
                    )  # fmt: skip
                    if procs:
                        figures.append(procs)
            if "B2" in only:  # the same table with every due time at one instant
                b2_tick.all_at_nine(rt, now=BENCH_NOW)
                fig = _guard(
                    errors, f"B2 {db} {size} at 09:00", b2_tick.run,
                    rt=rt, db=db, size=size, now=BENCH_NOW, smoke=args.smoke,
                    shape="all at 09:00",
                )  # fmt: skip
                if fig:
                    figures.append(fig)
            rt.engine.dispose()
    if "B5" in only:
        figures += _guard(errors, f"B5 {db}", b5_queue.run, db=db, smoke=args.smoke) or []
    if "B4" in only:
        burst = 40 if args.smoke else parse_size(args.b4_burst)
        base_n = 20 if args.smoke else parse_size(args.b4_baseline)
        rates = [20.0] if args.smoke else [float(r) for r in args.b4_steady.split(",") if r]
        steady_s = 2.0 if args.smoke else args.b4_steady_seconds
        with fresh_database(db, "b4") as url:
            rt = bench_runtime(url)
            figures += _guard(
                errors, f"B4 {db}", b4_e2e.run,
                rt=rt, db=db, n=burst, base_n=base_n, smoke=args.smoke,
                steady_rates=rates, steady_s=steady_s,
            ) or []  # fmt: skip
            rt.engine.dispose()
    if "B6" in only:
        fig = _guard(errors, f"B6 {db}", b6_replies.run_cli, args=args, db=db)
        if fig:
            figures.append(fig)
    if "B7" in only:
        figures += _guard(errors, f"B7 {db}", b7_soak.run_cli, args=args, db=db) or []
    if "B1" in only:
        rows = 200 if args.smoke else parse_size(args.b1_rows)
        fig = _guard(
            errors, f"B1 {db}", b1_enrol.in_own_process,
            db=db, rows=rows, base_n=20 if args.smoke else 300,
        )  # fmt: skip
        if fig:
            figures.append(fig)


def scaling(figures: list[Figure]) -> dict[str, Any]:
    """B2/B3 from the smallest to the largest size per database (and per schedule shape):
    the goals' second half. Keys are ``workload/db``, plus ``/metric`` for a second shape."""
    out: dict[str, Any] = {}
    for workload, limit in (("B2", 2.0), ("B3", 1.2)):
        metrics = list(dict.fromkeys(f.metric for f in figures if f.workload == workload))
        for db in {f.db for f in figures if f.workload == workload}:
            for metric in metrics:
                rows = sorted(
                    (f for f in figures
                     if f.workload == workload and f.db == db and f.metric == metric),
                    key=lambda f: f.size,
                )  # fmt: skip
                if len(rows) < 2:
                    continue
                small, big = rows[0], rows[-1]
                slowdown = big.ours / small.ours if workload == "B2" else small.ours / big.ours
                key = f"{workload}/{db}" + (f"/{metric}" if metric != metrics[0] else "")
                out[key] = {
                    "from": small.size, "to": big.size, "slowdown": slowdown,
                    "limit": limit, "goal_met": slowdown <= limit,
                }  # fmt: skip
    return out


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.3g}{unit}"


def print_table(figures: list[Figure]) -> None:
    table = Table(title="campaigns benchmarks (ours vs baseline vs ceiling)")
    for col in ("work", "db", "size", "metric", "ours", "baseline", "x baseline",
                "ceiling", "of ceiling", "goal met"):  # fmt: skip
        table.add_column(col)
    for f in figures:
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[f.goal_met]
        table.add_row(
            f.workload, f.db, size_label(f.size), f.metric, _fmt(f.ours, f" {f.unit}"),
            _fmt(f.baseline), _fmt(f.vs_baseline, "x"), _fmt(f.ceiling),
            _fmt(f.ceiling_fraction and f.ceiling_fraction * 100, "%"), met,
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_logs()
    figures: list[Figure] = []
    errors: list[dict[str, str]] = []
    started = datetime.now(UTC)
    probe = {"start": cpu_probe()}
    ticks = proc_cpu.machine_ticks()
    for db in args.db.split(","):
        run_database(args, db.strip(), figures, errors)
    if "B5" in args.only.split(","):
        figures += _guard(errors, "B5", b5_ratelimit.run, smoke=args.smoke) or []
    print_table(figures)
    stolen = proc_cpu.stolen_share(ticks, proc_cpu.machine_ticks())
    report = {
        "meta": {
            "started": started.isoformat(),
            "seconds": (datetime.now(UTC) - started).total_seconds(),
            "smoke": args.smoke,
            "args": vars(args),
            "python": platform.python_version(),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
            # lower is faster; compare runs made on different days with it
            "cpu_probe_ms": probe | {"end": cpu_probe()},
            "cpu_stolen_share": stolen,
        },
        "figures": [f.as_dict() for f in figures],
        "scaling": scaling(figures),
        "not_implemented": NOT_IMPLEMENTED,
        "errors": errors,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"scaling: {json.dumps(report['scaling'])}")
    console.print(f"cpu probe: {probe['start']:.0f} ms at the start (lower is faster)")
    if stolen is not None:
        console.print(f"the hypervisor took {stolen:.1%} of this machine's CPU time during the run")
    console.print(f"saved {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
