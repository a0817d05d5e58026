"""What time the worker and beat processes take as "now".

The domain takes "now" as an argument everywhere; this is the one place processes read it.
A clock file lets a rehearsal or a scale test drive many real worker processes through a
simulated week in minutes, while production reads the system clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from campaigns.models import utcnow


class ClockFileError(RuntimeError):
    """The clock file is set but unreadable: stop rather than guess the time."""


def read_clock_file(path: Path) -> datetime:
    try:
        text = path.read_text(encoding="utf-8").strip()
        value = datetime.fromisoformat(text)
    except (OSError, ValueError) as exc:
        raise ClockFileError(f"clock file {path} does not hold an ISO-8601 time: {exc}") from exc
    if value.tzinfo is None:
        raise ClockFileError(f"clock file {path} must give a UTC offset")
    return value.astimezone(UTC)


def write_clock_file(path: Path, value: datetime) -> None:
    """Atomic, so a reader never sees half a timestamp."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(value.astimezone(UTC).isoformat(), encoding="utf-8")
    tmp.replace(path)


def now(clock_file: Path | None) -> datetime:
    return utcnow() if clock_file is None else read_clock_file(clock_file)
