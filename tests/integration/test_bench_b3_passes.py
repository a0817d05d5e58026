"""``bench.b3_passes`` runs end to end at a tiny size on both databases (not timed): every
pass sends at least what it made due (more when the generated send times fall due too)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import REPO_ROOT


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_passes_send_what_falls_due(db: str, tmp_path: Path) -> None:
    tiny = ["--db", db, "--passes", "3", "--due", "40", "--enrollments", "200"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.b3_passes", *tiny],
        cwd=REPO_ROOT,
        env={**os.environ, "BENCH_WORK_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    sent = [int(n) for n in re.findall(r"^pass \d: (\d+) sent", done.stdout, re.M)]
    assert len(sent) == 3 and all(n >= 40 for n in sent), done.stdout
    assert re.search(r"^median CPU per message, passes 3-3: [\d.]+ µs$", done.stdout, re.M)
    assert f"messages sent: {sum(sent)}" in done.stdout
