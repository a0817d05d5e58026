"""``bench.staff_history`` runs end to end at a tiny size (its figures are not checked: not
timed), building both index designs on both databases."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from config.settings import REPO_ROOT


def test_staff_history_reports_each_figure_against_the_old_indexes(tmp_path: Path) -> None:
    tiny = ["--patients", "60", "--days", "3", "--rounds", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.staff_history", *tiny],
        cwd=REPO_ROOT,
        env={**os.environ, "BENCH_WORK_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    rows = re.findall(
        r"^(sqlite|postgresql) +(.+?) +([\d.]+) +([\d.]+) +[\d.]+x$", done.stdout, re.M
    )
    assert [(db, name) for db, name, *_ in rows] == [
        ("sqlite", "list of 200 (ms)"),
        ("sqlite", "needs attention (ms)"),
        ("postgresql", "list of 200 (ms)"),
        ("postgresql", "needs attention (ms)"),
        ("postgresql", "outbox indexes (MB)"),
    ], done.stdout
    assert all(float(ours) > 0 and float(base) > 0 for *_, ours, base in rows), done.stdout
