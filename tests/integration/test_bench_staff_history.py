"""``bench.staff_history`` runs end to end at a tiny size (its figures are not checked: not
timed), building both index designs on both databases."""

from __future__ import annotations

import re
from pathlib import Path

from tests.bench_support import run_bench


def test_staff_history_reports_each_figure_against_the_old_indexes(tmp_path: Path) -> None:
    tiny = ["--patients", "60", "--days", "3", "--rounds", "1"]
    out = run_bench("staff_history", *tiny, work_dir=tmp_path)
    rows = re.findall(r"^(sqlite|postgresql) +(.+?) +([\d.]+) +([\d.]+) +[\d.]+x$", out, re.M)
    assert [(db, name) for db, name, *_ in rows] == [
        ("sqlite", "list of 200 (ms)"),
        ("sqlite", "needs attention (ms)"),
        ("postgresql", "list of 200 (ms)"),
        ("postgresql", "needs attention (ms)"),
        ("postgresql", "outbox indexes (MB)"),
    ], out
    assert all(float(ours) > 0 and float(base) > 0 for *_, ours, base in rows), out
