"""Shared patient clocks remember instants and slots without changing any answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaigns.enrollments import clock_of
from campaigns.sendwindow import MEMO_SIZE, PatientClock, SendWindow


@dataclass
class _Patient:
    timezone: str
    send_time: time


@pytest.mark.parametrize("tz", ["America/New_York", "Europe/London", "Pacific/Apia", "UTC"])
def test_a_shared_clock_answers_like_a_fresh_one_across_dst(tz: str) -> None:
    window = SendWindow()
    shared = clock_of(_Patient(tz, time(9, 30)), window)
    assert shared is clock_of(_Patient(tz, time(9, 30)), window)
    start = datetime(2011, 3, 1, 0, 0, tzinfo=UTC)
    for step in range(0, 24 * 400, 7):  # every 7 hours over 400 days, twice: memo hits too
        now = start + timedelta(hours=step)
        for _ in range(2):
            fresh = PatientClock(ZoneInfo(tz), time(9, 30), window)
            assert shared.local(now) == fresh.local(now)
            assert shared.local(now).utcoffset() == fresh.local(now).utcoffset()
            assert shared.in_window(now) == fresh.in_window(now)
            assert shared.next_slot(now) == fresh.next_slot(now)
            day = date(2011, 3, 1) + timedelta(days=step // 24)
            assert shared.slot(day) == fresh.slot(day)
    assert len(shared._locals) <= MEMO_SIZE and len(shared._slots) <= MEMO_SIZE


def test_different_send_times_or_windows_get_different_clocks() -> None:
    a = clock_of(_Patient("UTC", time(9, 0)), SendWindow())
    assert a is not clock_of(_Patient("UTC", time(10, 0)), SendWindow())
    assert a is not clock_of(_Patient("UTC", time(9, 0)), SendWindow(time(8, 0), time(21, 0)))
