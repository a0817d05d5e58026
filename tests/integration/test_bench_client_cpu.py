"""``bench.client_cpu`` runs end to end at a tiny size (its figures are not checked: not timed)."""

from __future__ import annotations

import re
import subprocess
import sys

from config.settings import REPO_ROOT


def test_client_cpu_reports_both_clients_against_their_baselines() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.client_cpu", "--messages", "20", "--rounds", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = re.findall(r"^(sms|email) .*?(\d+)\s+(\d+)\s+([\d.]+)x$", done.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["sms", "email"], done.stdout
    assert all(int(ours) > 0 and int(base) > 0 for _, ours, base, _ in rows)
