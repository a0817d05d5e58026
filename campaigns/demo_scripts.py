"""The demo's cast and what each of them texts back.

Five reply patterns cover the paths a clinician wants to see the pacing engine take: steady
improvement, a short flare, a long flare that needs staff, an opt-out, and a patient who asks
for fewer messages and a break. Patients answer the messages they actually received (so the
conversation follows the engine, not a fixed calendar) in everyday phrasings, plus the odd
unprompted note. Everything is drawn from a ``random.Random`` seeded per patient, so a seed
replays the same story.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from campaigns.enums import Channel


class Pattern(StrEnum):
    STEADY = "steady improvement"
    MID_FLARE = "mid-program flare"
    LONG_FLARE = "long flare + alert"
    OPT_OUT = "opt-out"
    SLOWER_PAUSE = "slower + pause"

    @property
    def short(self) -> str:
        """A label narrow enough for a terminal table."""
        return {
            "steady improvement": "steady",
            "mid-program flare": "mid flare",
            "long flare + alert": "long flare",
            "slower + pause": "slow+pause",
        }.get(self.value, self.value)


PATTERNS: tuple[Pattern, ...] = tuple(Pattern)

# --- the cast ------------------------------------------------------------------------------

FIRST_NAMES = ("Maya", "Daniel", "Priya", "Tom", "Grace", "Luis", "Aisha", "Ben", "Chloe", "Omar")
LAST_NAMES = (
    "Okafor",
    "Lindqvist",
    "Sharma",
    "Whitfield",
    "Nakamura",
    "Herrera",
    "Byrne",
    "Kowalski",
    "Mensah",
    "Dubois",
)
#: Zone, a phone prefix valid there and the digits after it. New York, London and Sydney
#: change their clocks during the default six weeks; Kolkata never does.
ZONES: tuple[tuple[str, str, int], ...] = (
    ("America/New_York", "+1650253", 4),
    ("Europe/London", "+44207946", 4),
    ("America/Los_Angeles", "+1650253", 4),
    ("Australia/Sydney", "+6129374", 4),
    ("Asia/Kolkata", "+912240", 6),
)
#: 08:00 is outside the clinic window and shows the clamp to 09:00.
SEND_TIMES = (time(9, 30), time(18, 30), time(8, 0), time(12, 15), time(19, 45))
BASE_CHANNEL = {
    Pattern.STEADY: Channel.SMS,
    Pattern.MID_FLARE: Channel.EMAIL,
    Pattern.LONG_FLARE: Channel.SMS,
    Pattern.OPT_OUT: Channel.SMS,
    Pattern.SLOWER_PAUSE: Channel.EMAIL,
}


@dataclass(frozen=True)
class CastMember:
    index: int
    first_name: str
    last_name: str
    timezone: str
    channel: Channel
    send_time: time
    phone: str
    email: str
    pattern: Pattern


def cast_member(i: int) -> CastMember:
    """Patient ``i``: pattern ``i % 5``; zone, time and channel rotate at other strides so a
    larger cast mixes every pattern with every zone and channel."""
    pattern = PATTERNS[i % len(PATTERNS)]
    cycle = i // len(PATTERNS)
    zone, prefix, digits = ZONES[(i + cycle) % len(ZONES)]
    channel = BASE_CHANNEL[pattern]
    if cycle % 2:
        channel = Channel.EMAIL if channel == Channel.SMS else Channel.SMS
    first = FIRST_NAMES[i % len(FIRST_NAMES)]
    last = LAST_NAMES[(i * 3 + i // len(LAST_NAMES)) % len(LAST_NAMES)]
    return CastMember(
        index=i,
        first_name=first,
        last_name=last,
        timezone=zone,
        channel=channel,
        send_time=SEND_TIMES[(2 * i + cycle) % len(SEND_TIMES)],
        phone=f"{prefix}{i:0{digits}d}",
        email=f"{first}.{last}.{i}@example.org".lower(),
        pattern=pattern,
    )


# --- phrasings -----------------------------------------------------------------------------
# Every phrasing is pinned by a test to parse to the intended score and flare signal.

CALM = (
    "{s}/10",
    "pain is {s} today",
    "{s}",
    "about a {s} tonight",
    "doing ok, {s}",
    "Pain {s}/10.",
    "a {s} I think",
    "Slept badly but pain only a {s}",
)
BETTER = (
    "feeling better, maybe a {s}",
    "Honestly a {s} today!",
    "better today - {s}",
    "lower today, maybe {s}",
    "{s} today, best week in ages",
)
FLARE = (
    "{s}, awful flare today",
    "bad day, {s}",
    "still flaring, {s}",
    "{s} - flaring again, back is terrible",
    "{s}/10 and flaring",
    "flare",
)
JOURNAL = (
    "Did the writing exercise, felt lighter after.",
    "Walked to the shops without bracing.",
    "Noticed the pain shift when I relaxed my shoulders.",
    "Tried the breathing before bed.",
    "The tracking exercise was interesting.",
)


@dataclass(frozen=True)
class ScriptedReply:
    at: datetime
    text: str


@dataclass(frozen=True)
class Command:
    day: int
    at: time
    text: str


#: Whole-message commands on fixed program days; the patient sends them whatever arrived.
COMMANDS: dict[Pattern, tuple[Command, ...]] = {
    Pattern.OPT_OUT: (Command(9, time(20, 40), "STOP"),),
    Pattern.SLOWER_PAUSE: (
        Command(3, time(19, 5), "SLOWER"),
        Command(16, time(21, 30), "PAUSE"),
        Command(20, time(12, 40), "RESUME"),
    ),
}
MID_FLARE_DAYS = range(15, 19)
LONG_FLARE_START = 10


class PatientScript:
    """One patient's reply behaviour; ``day1`` is the local date of their first message."""

    def __init__(
        self, member: CastMember, day1: date, *, seed: int, long_flare_days: int, days: int
    ) -> None:
        self.member = member
        self.day1 = day1
        self.days = days
        self.tz = ZoneInfo(member.timezone)
        self.rng = random.Random(f"{seed}:{member.index}")
        #: Long enough that the staff alert fires, then the flare settles.
        self.long_flare = range(LONG_FLARE_START, LONG_FLARE_START + long_flare_days + 3)
        self.commands = COMMANDS.get(member.pattern, ())

    def program_day(self, at: datetime) -> int:
        return (at.astimezone(self.tz).date() - self.day1).days + 1

    @property
    def stop_day(self) -> int | None:
        return next((c.day for c in self.commands if c.text == "STOP"), None)

    def answer(self, sent_at: datetime) -> ScriptedReply | None:
        """Most messages get an answer that evening; commands replace that day's answer."""
        day = self.program_day(sent_at)
        if self._silent(day) or any(c.day == day for c in self.commands):
            return None
        if self.rng.random() > self._answer_rate(day):
            return None
        return ScriptedReply(self._reply_time(sent_at), self.text_for(day))

    def unprompted(self) -> list[ScriptedReply]:
        """Commands plus the occasional note nobody asked for (more of them in a flare)."""
        out = [ScriptedReply(self._local(c.day, c.at), c.text) for c in self.commands]
        for day in range(1, self.days + 1):
            rate = 0.5 if self._in_flare(day) else 0.06
            if not self._silent(day) and self.rng.random() < rate:
                when = self._local(day, time(self.rng.randint(17, 22), self.rng.randint(0, 59)))
                out.append(ScriptedReply(when, self.text_for(day)))
        return out

    # --- what they say ----------------------------------------------------------------------

    def score(self, day: int) -> int:
        """The pattern's curve plus at most one point of noise: outside a scripted flare a
        score never reaches 7 or rises 3 above the recent median, so flares are only ever
        the ones the script means."""
        pattern, noise = self.member.pattern, self.rng.choice((-1, 0, 0, 0, 1))
        progress = min(day - 1, 41) / 41
        if self._in_flare(day):
            return self.rng.choice((7, 8, 8, 9))
        if pattern == Pattern.STEADY:
            return _clamp(round(6 - 4 * progress) + noise, 1, 6)
        if pattern == Pattern.MID_FLARE:
            low, high = (1, 4) if day > MID_FLARE_DAYS[-1] else (3, 6)
            return _clamp(round(6 - 4 * progress) + noise, low, high)
        if pattern == Pattern.LONG_FLARE:
            return _clamp(round(5.5 - 2 * progress) + noise, 2, 6)
        return _clamp(round(6 - 3 * progress) + noise, 3, 6)

    def text_for(self, day: int) -> str:
        """Flare wording in a flare, upbeat wording sometimes when low, else neutral."""
        score = self.score(day)
        bank: tuple[str, ...]
        if self._in_flare(day):
            bank = FLARE
        elif score <= 4 and self.rng.random() < 0.5:
            bank = BETTER
        else:
            bank = CALM
        text = self.rng.choice(bank).format(s=score)
        if self.member.pattern == Pattern.STEADY and self.rng.random() < 0.3:
            text = f"{text.rstrip('.!')}. {self.rng.choice(JOURNAL)}"
        return text

    # --- helpers ----------------------------------------------------------------------------

    def _in_flare(self, day: int) -> bool:
        if self.member.pattern == Pattern.MID_FLARE:
            return day in MID_FLARE_DAYS
        return self.member.pattern == Pattern.LONG_FLARE and day in self.long_flare

    def _silent(self, day: int) -> bool:
        stop = self.stop_day
        return stop is not None and day >= stop

    def _answer_rate(self, day: int) -> float:
        return 1.0 if self._in_flare(day) else 0.85

    def _local(self, day: int, at: time) -> datetime:
        local = datetime.combine(self.day1 + timedelta(days=day - 1), at, tzinfo=self.tz)
        return local.astimezone(UTC)

    def _reply_time(self, sent_at: datetime) -> datetime:
        """Evenings mostly, sometimes past midnight, sometimes straight after the message."""
        roll = self.rng.random()
        if roll < 0.15:
            return sent_at + timedelta(minutes=self.rng.randint(8, 90))
        local_day = sent_at.astimezone(self.tz).date()
        start = time(18, 0) if roll < 0.8 else time(22, 30)
        minutes = self.rng.randint(0, 240 if roll < 0.8 else 140)
        when = datetime.combine(local_day, start, tzinfo=self.tz) + timedelta(minutes=minutes)
        return max(when.astimezone(UTC), sent_at + timedelta(minutes=10))


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
