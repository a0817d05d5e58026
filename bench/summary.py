"""``python -m bench.summary [latest.json]``: a Markdown table and a small summary JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.common import size_label


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


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/latest.json")
    report = json.loads(src.read_text())
    summary = {"meta": report["meta"], "figures": rows(report), "scaling": report["scaling"]}
    (src.parent / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(markdown(report))
    print()
    print(json.dumps(report["scaling"], indent=2))


if __name__ == "__main__":
    main()
