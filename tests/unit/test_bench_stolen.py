"""The share of CPU time a hypervisor took, from two readings of ``/proc/stat``."""

from __future__ import annotations

from bench.proc_cpu import machine_ticks, stolen_share

BEFORE = "cpu  1000 50 300 5000 20 0 30 100 0 0\ncpu0 500 25 150 2500 10 0 15 50 0 0\n"
AFTER = "cpu  1600 50 500 5300 20 0 30 500 70 0\ncpu0 800 25 250 2650 10 0 15 250 35 0\n"


def test_the_machine_line_is_read_and_steal_is_its_share_of_the_time_between() -> None:
    before, after = machine_ticks(BEFORE), machine_ticks(AFTER)
    assert before[:8] == (1000, 50, 300, 5000, 20, 0, 30, 100)
    # 600 user + 200 system + 300 idle + 400 stolen; guest (70) is inside user already
    assert stolen_share(before, after) == 400 / 1500


def test_no_time_between_or_no_steal_counter_says_nothing() -> None:
    before = machine_ticks(BEFORE)
    assert stolen_share(before, before) is None
    assert stolen_share((1, 2, 3), (4, 5, 6)) is None


def test_this_machine_can_be_read() -> None:
    ticks = machine_ticks()
    assert len(ticks) >= 8 and sum(ticks) > 0
