"""Lanes: each lane's items in order, lanes overlapping, and a clean stop on the first error."""

from __future__ import annotations

import threading
import time

import pytest

from campaigns.lanes import group, run_lanes


def test_group_keeps_each_keys_items_in_order_and_lanes_by_first_item() -> None:
    items = [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)]
    assert group(items, key=lambda item: item[0]) == [
        [("b", 1), ("b", 3)],
        [("a", 2), ("a", 5)],
        [("c", 4)],
    ]


def test_lanes_overlap_but_each_lanes_items_run_one_at_a_time_in_order() -> None:
    lanes = [[(lane, n) for n in range(4)] for lane in range(6)]
    lock = threading.Lock()
    done: list[tuple[int, int]] = []
    running: dict[int, int] = {}
    overlap = {"lanes": 0, "same_lane": 0}

    def step(item: tuple[int, int], stop: threading.Event) -> None:
        lane, _ = item
        with lock:
            running[lane] = running.get(lane, 0) + 1
            overlap["same_lane"] = max(overlap["same_lane"], running[lane])
            overlap["lanes"] = max(overlap["lanes"], sum(1 for v in running.values() if v))
        time.sleep(0.01)
        with lock:
            running[lane] -= 1
            done.append(item)

    run_lanes(lanes, step, threads=4)
    assert sorted(done) == sorted(item for lane in lanes for item in lane)
    for lane in range(6):
        assert [n for name, n in done if name == lane] == [0, 1, 2, 3]
    assert overlap["same_lane"] == 1
    assert overlap["lanes"] > 1


def test_the_first_error_stops_every_lane_and_is_raised_after_running_items_finish() -> None:
    lanes = [[(lane, n) for n in range(20)] for lane in range(4)]
    lock = threading.Lock()
    finished: list[tuple[int, int]] = []
    saw_stop: list[bool] = []

    def step(item: tuple[int, int], stop: threading.Event) -> None:
        if item == (1, 2):
            raise RuntimeError("boom")
        time.sleep(0.02)
        with lock:
            finished.append(item)
            saw_stop.append(stop.is_set())

    with pytest.raises(RuntimeError, match="boom"):
        run_lanes(lanes, step, threads=4)
    finished_after = len(finished)
    time.sleep(0.1)
    assert len(finished) == finished_after, "nothing still running once the error is raised"
    assert (1, 3) not in finished, "the failing lane went no further"
    assert len(finished) < 4 * 20 - 1, "the other lanes stopped early"
    assert saw_stop.count(True) <= 3, "at most the items already running saw the stop"


def test_one_thread_runs_everything_in_order_on_the_callers_thread() -> None:
    seen: list[tuple[str, int]] = []
    caller = threading.get_ident()

    def step(item: int, stop: threading.Event) -> None:
        seen.append((str(item), threading.get_ident()))

    run_lanes([[1, 2], [3]], step, threads=1)
    assert seen == [("1", caller), ("2", caller), ("3", caller)]
