"""``bench.summary`` merges several runs into one table and summary file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import summary


def _figure(workload: str, db: str, ours: float) -> dict[str, Any]:
    return {
        "workload": workload, "db": db, "size": 10_000, "metric": "m", "unit": "msg/s",
        "ours": ours, "baseline": ours / 2, "vs_baseline": 2.0, "ceiling": None,
        "ceiling_fraction": None, "goal_met": False, "extra": {"big": "not summarised"},
    }  # fmt: skip


def _run(started: str, figures: list[dict[str, Any]], scaling: dict[str, Any]) -> dict[str, Any]:
    return {"meta": {"started": started, "cpu_probe_ms": {"start": 20.0}}, "figures": figures,
            "scaling": scaling}  # fmt: skip


def test_several_runs_become_one_summary_in_the_order_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "b1.json"
    second = tmp_path / "b3.json"
    first.write_text(json.dumps(_run("t1", [_figure("B1", "sqlite", 9000.0)], {})))
    second.write_text(
        json.dumps(_run("t2", [_figure("B3", "postgresql", 3000.0)], {"B3/postgresql": 1.1}))
    )
    out = tmp_path / "summary.json"
    summary.main([str(first), str(second), "--out", str(out)])
    written = json.loads(out.read_text())
    assert [f["workload"] for f in written["figures"]] == ["B1", "B3"]
    assert "extra" not in written["figures"][0]
    assert [r["started"] for r in written["meta"]["runs"]] == ["t1", "t2"]
    assert written["scaling"] == {"B3/postgresql": 1.1}
    table = capsys.readouterr().out
    assert "| B1 | sqlite | 10k | m | 9,000 msg/s |" in table
    assert "| B3 | postgresql |" in table


def test_one_run_is_summarised_as_it_is(tmp_path: Path) -> None:
    run = _run("t1", [_figure("B2", "sqlite", 0.5)], {"B2/sqlite": 1.3})
    assert summary.merged([run]) is run
