"""``bench.b3_passes`` runs end to end at a tiny size on both databases (not timed): every
pass sends at least what it made due (more when the generated send times fall due too)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench_support import run_bench


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_passes_send_what_falls_due(db: str, tmp_path: Path) -> None:
    tiny = ["--db", db, "--passes", "3", "--due", "40", "--enrollments", "200"]
    out = run_bench("b3_passes", *tiny, work_dir=tmp_path)
    sent = [int(n) for n in re.findall(r"^pass \d: (\d+) sent", out, re.M)]
    assert len(sent) == 3 and all(n >= 40 for n in sent), out
    assert re.search(r"^median CPU per message, passes 3-3: [\d.]+ µs$", out, re.M)
    assert f"messages sent: {sum(sent)}" in out
