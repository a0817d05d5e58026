"""Send slots: the patient's wall-clock send time, inside the clinic window, across DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.sendwindow import HARD_END, HARD_START, PatientClock, SendWindow

WINDOW = SendWindow(time(9, 0), time(20, 0))


def clock(tz: str, send_time: time = time(9, 0), window: SendWindow = WINDOW) -> PatientClock:
    return PatientClock(ZoneInfo(tz), send_time, window)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(c: PatientClock, day: str, at: time) -> datetime:
    return datetime.combine(date.fromisoformat(day), at, tzinfo=c.tz)


# --- the window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [(time(7, 59), time(20, 0)), (time(9, 0), time(21, 1)), (time(12, 0), time(12, 0))],
)
def test_window_outside_hard_limits_or_empty_is_rejected(start: time, end: time) -> None:
    with pytest.raises(ValueError, match="08:00-21:00"):
        SendWindow(start, end)


def test_widest_window_is_the_hard_limits() -> None:
    window = SendWindow(HARD_START, HARD_END)
    assert window.contains(time(8, 0))
    assert window.contains(time(20, 59, 59))
    assert not window.contains(time(21, 0))
    assert not window.contains(time(7, 59, 59))


@pytest.mark.parametrize(
    ("wanted", "clamped"),
    [
        (time(0, 0), time(9, 0)),
        (time(8, 59), time(9, 0)),
        (time(9, 0), time(9, 0)),
        (time(14, 30), time(14, 30)),
        (time(19, 59), time(19, 59)),
        (time(20, 0), time(19, 59)),
        (time(23, 30), time(19, 59)),
    ],
)
def test_send_time_outside_window_clamps_to_nearest_edge(wanted: time, clamped: time) -> None:
    assert WINDOW.clamp(wanted) == clamped


@pytest.mark.parametrize(
    ("send_time", "expected"),
    [(time(6, 0), time(9, 0)), (time(22, 30), time(19, 59)), (time(13, 15), time(13, 15))],
)
def test_slot_uses_clamped_send_time(send_time: time, expected: time) -> None:
    c = clock("America/Chicago", send_time)
    slot = c.slot(date(2025, 6, 10))
    assert c.local(slot).time() == expected
    assert c.local_date(slot) == date(2025, 6, 10)


# --- DST and odd offsets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "day", "utc_slot"),
    [
        # America/New_York: spring forward 2025-03-09, fall back 2025-11-02.
        ("America/New_York", "2025-03-08", utc(2025, 3, 8, 14, 0)),
        ("America/New_York", "2025-03-09", utc(2025, 3, 9, 13, 0)),
        ("America/New_York", "2025-11-01", utc(2025, 11, 1, 13, 0)),
        ("America/New_York", "2025-11-02", utc(2025, 11, 2, 14, 0)),
        # Europe/London: BST from 2025-03-30, GMT again from 2025-10-26.
        ("Europe/London", "2025-03-29", utc(2025, 3, 29, 9, 0)),
        ("Europe/London", "2025-03-30", utc(2025, 3, 30, 8, 0)),
        ("Europe/London", "2025-10-25", utc(2025, 10, 25, 8, 0)),
        ("Europe/London", "2025-10-26", utc(2025, 10, 26, 9, 0)),
        # Australia/Sydney (southern hemisphere): DST ends 2025-04-06, starts 2025-10-05.
        ("Australia/Sydney", "2025-04-05", utc(2025, 4, 4, 22, 0)),
        ("Australia/Sydney", "2025-04-06", utc(2025, 4, 5, 23, 0)),
        ("Australia/Sydney", "2025-10-04", utc(2025, 10, 3, 23, 0)),
        ("Australia/Sydney", "2025-10-05", utc(2025, 10, 4, 22, 0)),
        # Asia/Kolkata: +05:30 all year.
        ("Asia/Kolkata", "2025-03-09", utc(2025, 3, 9, 3, 30)),
        ("Asia/Kolkata", "2025-11-02", utc(2025, 11, 2, 3, 30)),
        # Pacific/Chatham: +12:45 / +13:45, changes at 02:45 / 03:45 local.
        ("Pacific/Chatham", "2025-04-05", utc(2025, 4, 4, 19, 15)),
        ("Pacific/Chatham", "2025-04-06", utc(2025, 4, 5, 20, 15)),
        ("Pacific/Chatham", "2025-09-27", utc(2025, 9, 26, 20, 15)),
        ("Pacific/Chatham", "2025-09-28", utc(2025, 9, 27, 19, 15)),
    ],
)
def test_slot_keeps_wall_clock_time_across_dst(tz: str, day: str, utc_slot: datetime) -> None:
    c = clock(tz)
    slot = c.slot(date.fromisoformat(day))
    assert slot == utc_slot
    assert c.local(slot).time() == time(9, 0)
    assert c.local_date(slot) == date.fromisoformat(day)


@pytest.mark.parametrize(
    ("tz", "before", "change"),
    [
        ("America/New_York", "2025-03-08", "2025-03-09"),
        ("America/New_York", "2025-11-01", "2025-11-02"),
        ("Europe/London", "2025-03-29", "2025-03-30"),
        ("Australia/Sydney", "2025-10-04", "2025-10-05"),
        ("Pacific/Chatham", "2025-04-05", "2025-04-06"),
    ],
)
def test_next_slot_on_dst_day_is_same_wall_clock_not_24_hours(
    tz: str, before: str, change: str
) -> None:
    c = clock(tz)
    yesterday = c.slot(date.fromisoformat(before))
    after = yesterday + timedelta(minutes=1)
    nxt = c.next_slot(after, not_before_day=date.fromisoformat(change))
    assert c.local(nxt).time() == time(9, 0)
    assert c.local_date(nxt) == date.fromisoformat(change)
    assert nxt - yesterday != timedelta(hours=24)


def test_local_date_follows_patient_not_utc() -> None:
    chatham = clock("Pacific/Chatham")
    kolkata = clock("Asia/Kolkata")
    instant = utc(2025, 6, 1, 19, 0)
    assert chatham.local_date(instant) == date(2025, 6, 2)  # 07:45 next day
    assert kolkata.local_date(instant) == date(2025, 6, 2)  # 00:30 next day
    assert clock("America/New_York").local_date(instant) == date(2025, 6, 1)


@pytest.mark.parametrize(
    ("tz", "local_time", "inside"),
    [
        ("America/New_York", "2025-03-09T08:59", False),
        ("America/New_York", "2025-03-09T09:00", True),
        ("America/New_York", "2025-11-02T19:59", True),
        ("America/New_York", "2025-11-02T20:00", False),
        ("Asia/Kolkata", "2025-06-01T01:30", False),
        ("Pacific/Chatham", "2025-09-28T03:45", False),
    ],
)
def test_in_window_judges_local_wall_clock(tz: str, local_time: str, inside: bool) -> None:
    c = clock(tz)
    instant = datetime.fromisoformat(local_time).replace(tzinfo=c.tz).astimezone(UTC)
    assert c.in_window(instant) is inside


def test_send_time_in_a_daytime_dst_gap_lands_on_a_real_in_window_minute() -> None:
    # Khartoum jumped 12:00 -> 13:00 on 2000-01-15: 12:30 never happened that day.
    c = clock("Africa/Khartoum", time(12, 30))
    slot = c.slot(date(2000, 1, 15))
    assert c.in_window(slot)
    assert c.local_date(slot) == date(2000, 1, 15)
    assert c.local(slot).time() >= time(13, 0)


def test_gap_pushing_send_time_past_window_end_walks_to_an_in_window_minute() -> None:
    c = clock("Africa/Khartoum", time(12, 30), SendWindow(time(9, 0), time(12, 45)))
    slot = c.slot(date(2000, 1, 15))
    assert c.in_window(slot)
    assert c.local_date(slot) == date(2000, 1, 15)


@pytest.mark.timeout(5)
def test_skipped_calendar_day_uses_the_next_real_day() -> None:
    # Samoa skipped 2011-12-30 entirely when it crossed the date line.
    c = clock("Pacific/Apia")
    slot = c.slot(date(2011, 12, 30))
    assert c.local_date(slot) == date(2011, 12, 31)
    assert c.local(slot).time() == time(9, 0)
    nxt = c.next_slot(c.slot(date(2011, 12, 29)), not_before_day=date(2011, 12, 30))
    assert nxt == slot


# --- next_slot -----------------------------------------------------------------------------


NY = clock("America/New_York")


def test_next_slot_before_send_time_is_today() -> None:
    now = local(NY, "2025-06-10", time(7, 0))
    assert NY.next_slot(now) == local(NY, "2025-06-10", time(9, 0))


def test_next_slot_exactly_at_send_time_is_now() -> None:
    now = local(NY, "2025-06-10", time(9, 0))
    assert NY.next_slot(now) == now


def test_next_slot_late_but_in_window_returns_now() -> None:
    now = local(NY, "2025-06-10", time(19, 59))
    assert NY.next_slot(now) == now


def test_next_slot_after_window_goes_to_tomorrow() -> None:
    now = local(NY, "2025-06-10", time(20, 0))
    assert NY.next_slot(now) == local(NY, "2025-06-11", time(9, 0))
    now = local(NY, "2025-06-10", time(23, 59))
    assert NY.next_slot(now) == local(NY, "2025-06-11", time(9, 0))


def test_next_slot_just_after_midnight_is_that_mornings_slot() -> None:
    now = local(NY, "2025-06-11", time(0, 1))
    assert NY.next_slot(now) == local(NY, "2025-06-11", time(9, 0))


def test_next_slot_waits_for_not_before_day() -> None:
    now = local(NY, "2025-06-10", time(12, 0))
    got = NY.next_slot(now, not_before_day=date(2025, 6, 13))
    assert got == local(NY, "2025-06-13", time(9, 0))


def test_next_slot_ignores_not_before_day_in_the_past() -> None:
    now = local(NY, "2025-06-10", time(12, 0))
    assert NY.next_slot(now, not_before_day=date(2025, 6, 1)) == now


def test_late_send_time_at_2059_after_2100_goes_to_tomorrow() -> None:
    c = clock("America/New_York", time(20, 59), SendWindow(time(8, 0), time(21, 0)))
    now = local(c, "2025-06-10", time(21, 5))
    assert c.next_slot(now) == local(c, "2025-06-11", time(20, 59))


# --- properties ----------------------------------------------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "America/Santiago",
    "America/Havana",
]


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    start = draw(st.integers(8 * 60, 21 * 60 - 1))
    end = draw(st.integers(start + 1, 21 * 60))
    return SendWindow(time(*divmod(start, 60)), time(*divmod(end, 60)))


@settings(max_examples=300, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    send_time=st.times(),
    window=windows(),
    now=st.datetimes(datetime(2024, 1, 1), datetime(2031, 1, 1)),
    ahead=st.none() | st.integers(-3, 10),
)
def test_next_slot_is_in_window_not_before_now_and_on_an_allowed_day(
    tz: str, send_time: time, window: SendWindow, now: datetime, ahead: int | None
) -> None:
    c = PatientClock(ZoneInfo(tz), send_time, window)
    now = now.replace(tzinfo=UTC)
    not_before = None if ahead is None else c.local_date(now) + timedelta(days=ahead)
    got = c.next_slot(now, not_before_day=not_before)
    assert got >= now
    assert c.in_window(got)
    assert HARD_START <= c.local(got).time() < HARD_END
    if not_before is not None:
        assert c.local_date(got) >= not_before
    # Never later than the next day's slot: nothing is postponed more than needed.
    floor = max(c.local_date(now), not_before or c.local_date(now))
    assert c.local_date(got) <= floor + timedelta(days=1)


@settings(max_examples=100, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    send_time=st.times(),
    day=st.dates(date(2024, 1, 1), date(2031, 1, 1)),
)
def test_slot_is_on_its_day_inside_the_window(tz: str, send_time: time, day: date) -> None:
    c = PatientClock(ZoneInfo(tz), send_time, WINDOW)
    slot = c.slot(day)
    assert c.local_date(slot) == day
    assert c.in_window(slot)
    assert c.local(slot).time() == WINDOW.clamp(send_time)
