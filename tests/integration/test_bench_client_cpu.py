"""``bench.client_cpu`` runs end to end at a tiny size (its figures are not checked: not timed)."""

from __future__ import annotations

import re

from tests.bench_support import run_bench


def test_client_cpu_reports_both_clients_against_their_baselines() -> None:
    out = run_bench("client_cpu", "--messages", "20", "--rounds", "1", timeout=120)
    rows = re.findall(r"^(sms|email) .*?(\d+)\s+(\d+)\s+([\d.]+)x$", out, re.MULTILINE)
    assert [row[0] for row in rows] == ["sms", "email"], out
    assert all(int(ours) > 0 and int(base) > 0 for _, ours, base, _ in rows)
