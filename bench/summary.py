"""``python -m bench.summary [RUN.json ...] [--out summary.json]``: a Markdown table and a
small summary JSON of one run or of several (one per workload or database, say), the
figures in the order given and each run's machine details kept beside them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import size_label

RESULTS = Path(__file__).resolve().parent / "results"


def _f(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("workload", "db", "size", "metric", "unit", "ours", "baseline", "vs_baseline",
            "ceiling", "ceiling_fraction", "goal_met")  # fmt: skip
    return [{k: f[k] for k in keep} for f in report["figures"]]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| work | db | size | metric | ours | baseline | x base | ceiling | of ceiling | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["figures"]:
        frac = f["ceiling_fraction"]
        met = {True: "met", False: "**missed**", None: "-"}[f["goal_met"]]
        lines.append(
            f"| {f['workload']} | {f['db']} | {size_label(f['size'])} | {f['metric']} | "
            f"{_f(f['ours'])} {f['unit']} | {_f(f['baseline'])} | {_f(f['vs_baseline'])}x | "
            f"{_f(f['ceiling'])} | {_f(frac * 100 if frac else None)}% | {met} |"
        )
    return "\n".join(lines)


def merged(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs as one report; ``meta`` is the first run's with every run's under
    ``runs`` (machine, load, CPU probe: figures from different runs compare only so far)."""
    if len(reports) == 1:
        return reports[0]
    scaling: dict[str, Any] = {}
    for report in reports:
        scaling |= report.get("scaling", {})
    return {
        "meta": {**reports[0]["meta"], "runs": [r["meta"] for r in reports]},
        "figures": [f for r in reports for f in r["figures"]],
        "scaling": scaling,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.summary")
    parser.add_argument("runs", nargs="*", type=Path, default=[RESULTS / "latest.json"])
    parser.add_argument("--out", type=Path, default=RESULTS / "summary.json")
    args = parser.parse_args(argv)
    report = merged([json.loads(path.read_text()) for path in args.runs])
    summary = {"meta": report["meta"], "figures": rows(report), "scaling": report["scaling"]}
    args.out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(markdown(report))
    print()
    print(json.dumps(report["scaling"], indent=2))


if __name__ == "__main__":
    main()
