"""The benchmark suite runs end to end at smoke size and writes complete JSON.

Nothing here is timed: figures on a CI runner mean nothing, only that ``bench/run`` works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, PG_URL, REDIS_URL, REPO

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

FIGURE_KEYS = (
    "workload", "db", "size", "metric", "unit", "ours", "baseline", "vs_baseline",
    "ceiling", "ceiling_fraction", "goal", "goal_met",
)  # fmt: skip


def _services_up() -> str | None:
    import redis
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as exc:
        return repr(exc)
    return None


@pytest.mark.timeout(600)
def test_smoke_run_writes_every_workload(tmp_path: Path) -> None:
    problem = _services_up()
    if problem:
        if IN_CI:
            pytest.fail(f"bench smoke needs PostgreSQL and Redis: {problem}")
        pytest.skip(f"PostgreSQL/Redis not available: {problem}")
    out = tmp_path / "smoke.json"
    env = {
        **os.environ,
        "BENCH_PYTHON": sys.executable,
        "BENCH_POSTGRES_URL": PG_URL,
        "BENCH_REDIS_URL": REDIS_URL,
        "BENCH_WORK_DIR": str(tmp_path / "work"),
    }
    proc = subprocess.run(
        [str(REPO / "bench" / "run"), "--smoke", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["errors"] == []
    assert report["meta"]["smoke"] is True
    assert all(report["meta"]["cpu_probe_ms"][k] > 0 for k in ("start", "end"))
    seen = {(f["workload"], f["db"]) for f in report["figures"]}
    for db in ("sqlite", "postgresql"):
        for workload in ("B1", "B2", "B3", "B4", "B6", "B7"):
            assert (workload, db) in seen, f"{workload} on {db} missing"
    b5 = [f for f in report["figures"] if f["workload"] == "B5"]
    assert {f["size"] for f in b5 if f["db"] == "redis"} == {1, 3, 30, 150}
    for db in ("sqlite", "postgresql"):
        # a backlog draining at each rate: every message sent, each handed out once
        queue = [f for f in b5 if f["db"] == db]
        assert len(queue) == 4, queue
        for figure in queue:
            ours = figure["extra"]["ours"]
            assert ours["sent"] == ours["planned"] == figure["extra"]["backlog"], ours
            assert ours["most_per_message"] == 1 and figure["goal_met"], figure
    for figure in report["figures"]:
        missing = [k for k in FIGURE_KEYS if k not in figure]
        assert not missing, f"{figure['workload']} lacks {missing}"
        assert figure["ours"] > 0 or "steady" in figure["metric"], figure
    assert not report["not_implemented"]
    b3 = [f["metric"] for f in report["figures"] if f["workload"] == "B3"]
    assert sum("2 processes" in m for m in b3) == 2, b3
    b4 = [f for f in report["figures"] if f["workload"] == "B4"]
    assert sum("cpu_s" in f["extra"] for f in b4) == 4, "both burst figures of each database"
    for figure in report["figures"]:
        extra = figure["extra"]
        if figure["workload"] == "B6":
            # every signed text from a patient stored exactly once, a stranger's never
            assert extra["stored_once"] and extra["verify"]["wrong"] == 0, extra["verify"]
            assert extra["verify"]["stored"] == extra["verify"]["known_senders"] > 0
            assert extra["ours"]["errors"] == 0 and extra["ours"]["ok"] == extra["ours"]["sent"]
        if figure["workload"] == "B1":
            # CPU per stored row, by part (PostgreSQL's server processes on PostgreSQL)
            cpu = extra["cpu_us_per_row"]
            assert cpu["parent"] > 0 and cpu["prepare_workers"] >= 0, cpu
            assert ("postgresql" in cpu) == (figure["db"] == "postgresql"), cpu
        if figure["workload"] == "B3" and "2 processes" in figure["metric"]:
            # the worker's two processes share the due rows: every one planned once, sent
            outbox = extra["outbox"]
            assert outbox["planned"] == outbox["sent"] == outbox["distinct_messages"], outbox
            assert sum(extra["sent_per_process"]) == outbox["sent"] > 0, extra
            assert len(extra["sent_per_process"]) == 2 and extra["one_process_per_s"] > 0
        if figure["workload"] == "B4" and "cpu_s" in extra:
            # where the burst's CPU went (Redis may use less than a clock tick for 40 sends)
            cpu = extra["cpu_s"]
            assert cpu["worker"] > 0 and cpu["fakes_and_bench"] > 0 and cpu["redis"] >= 0, cpu
            assert ("postgresql" in cpu) == (figure["db"] == "postgresql"), cpu
        if figure["workload"] == "B4" and "steady" in figure["metric"]:
            # 20/s for 2 s, through beat and the worker, then as countdown tasks
            for steps in (extra["steps"], extra["baseline_steps"]):
                assert [s["count"] for s in steps] == [40], steps
                assert 0 <= steps[0]["p50_s"] <= steps[0]["p95_s"] < 60, steps
        if figure["workload"] == "B7":
            # the outbox is exactly the pacing engine's plan
            check = extra["check"]
            assert check["expected"] > 0 and check["outbox"] == check["expected"], check
            for key in ("lost", "duplicated", "unexpected", "not_sent", "outside_window"):
                assert check[key] == 0, (key, check)
            assert extra["counts"]["replies"] > 0 and check["flare_messages"] > 0
            assert extra["eta"]["taken"] == extra["eta"]["tasks"] > 0
