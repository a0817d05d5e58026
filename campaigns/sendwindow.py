"""When a patient may be messaged: their send time, inside the clinic window, in local time.

Pure functions over aware datetimes; zoneinfo decides local dates so DST changes shift
the UTC instant, never the patient's wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HARD_START = time(8, 0)
HARD_END = time(21, 0)
#: Instants and days remembered per clock (see ``PatientClock``).
MEMO_SIZE = 16


@dataclass(frozen=True)
class SendWindow:
    """Local wall-clock window; always inside 08:00-21:00 whatever a clinic configures."""

    start: time = time(9, 0)
    end: time = time(20, 0)

    def __post_init__(self) -> None:
        if not HARD_START <= self.start < self.end <= HARD_END:
            raise ValueError("send window must lie within 08:00-21:00 and start before it ends")

    def contains(self, local: time) -> bool:
        return self.start <= local < self.end

    def clamp(self, wanted: time) -> time:
        """A send time outside the window moves to its nearest edge."""
        if wanted < self.start:
            return self.start
        if wanted >= self.end:
            latest = datetime.combine(date.min, self.end) - timedelta(minutes=1)
            return latest.time()
        return wanted


@dataclass(frozen=True)
class PatientClock:
    """Everything timing needs about one patient.

    Patients who share a zone and a send time share a clock (``enrollments.clock_of``),
    which remembers the local time of the instants and the slots of the days it was asked
    about: a tick asks the same few for every patient of a batch.
    """

    tz: ZoneInfo
    send_time: time
    window: SendWindow
    _locals: dict[datetime, datetime] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _slots: dict[date, datetime] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def local(self, now: datetime) -> datetime:
        local = self._locals.get(now)
        if local is None:
            local = now.astimezone(self.tz)
            if len(self._locals) >= MEMO_SIZE:
                self._locals.clear()
            self._locals[now] = local
        return local

    def local_date(self, now: datetime) -> date:
        return self.local(now).date()

    def in_window(self, now: datetime) -> bool:
        return self.window.contains(self.local(now).time())

    def slot(self, day: date) -> datetime:
        """The UTC instant of this patient's send time on a local date."""
        instant = self._slots.get(day)
        if instant is None:
            instant = self._slot(day)
            if len(self._slots) >= MEMO_SIZE:
                self._slots.clear()
            self._slots[day] = instant
        return instant

    def _slot(self, day: date) -> datetime:
        wanted = self.window.clamp(self.send_time)
        instant = datetime.combine(day, wanted, tzinfo=self.tz).astimezone(UTC)
        if self.in_window(instant) and self.local_date(instant) == day:
            return instant
        # Only a DST gap can land here: walk forward to the first real in-window minute.
        probe = datetime.combine(day, self.window.start, tzinfo=self.tz).astimezone(UTC)
        while not (self.in_window(probe) and self.local_date(probe) == day):
            if self.local_date(probe) > day:
                # No in-window minute that day (Samoa skipped 2011-12-30): use the next one.
                return self.slot(day + timedelta(days=1))
            probe += timedelta(minutes=15)
        return probe

    def next_slot(self, now: datetime, *, not_before_day: date | None = None) -> datetime:
        """Earliest slot at or after ``now`` on a day no earlier than ``not_before_day``."""
        day = self.local_date(now)
        if not_before_day is not None and not_before_day > day:
            day = not_before_day
        candidate = self.slot(day)
        if candidate >= now:
            return candidate
        if day == self.local_date(now) and self.in_window(now):
            return now  # late today but still inside the window: go now rather than tomorrow
        return self.slot(day + timedelta(days=1))
