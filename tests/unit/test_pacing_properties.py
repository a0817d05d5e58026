"""Pacing invariants over random reply histories, time zones, send times and rules.

Replies are built as ``ParsedReply`` values directly, so these properties test pacing, not
parsing. Each example replays a whole enrollment with :func:`campaigns.simulation.simulate`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.enums import EnrollmentState, Track
from campaigns.pacing import PacingRules, ProgramShape
from campaigns.replies import DEFAULT_FLARE_PHRASES, Keyword, ParsedReply
from campaigns.sendwindow import HARD_END, HARD_START, PatientClock, SendWindow
from campaigns.simulation import SimulationResult, TimedSend, simulate

S = EnrollmentState
K = Keyword

#: DST zones in both hemispheres, half- and quarter-hour offsets, a 30-minute DST shift.
ZONES = [
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Santiago",
    "America/Havana",
    "Europe/London",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tehran",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
]
#: A few weeks before the DST changes of both hemispheres, so programs straddle them.
NEAR_DST = [
    datetime(2025, 2, 1),
    datetime(2025, 3, 1),
    datetime(2025, 8, 25),
    datetime(2025, 10, 1),
]
COMMANDS = [K.FLARE, K.PAUSE, K.RESUME, K.SLOWER]
PHRASES = (*DEFAULT_FLARE_PHRASES, "ouch", "tired")
MINUTES_PER_DAY = 24 * 60
#: DST shifts and slot clamping move a send by hours, never a day.
SLACK = timedelta(hours=3)


@dataclass(frozen=True)
class Scenario:
    rules: PacingRules
    shape: ProgramShape
    clock: PatientClock
    start: datetime
    span_days: int
    replies: tuple[tuple[datetime, ParsedReply], ...]
    opt_out_at: datetime | None

    def main_cadence_cap(self) -> int:
        """The slowest main cadence SLOWER can reach (it never speeds a program up)."""
        return max(self.rules.cadence_days, self.rules.slower_max_cadence_days)

    def finish_bound(self) -> timedelta:
        """How long after the last reply the program must be COMPLETED, if nothing holds it.

        A flare still running at the last reply ends by its quiet timer within
        ``resume_after_days``. From then on the enrollment is ACTIVE: the next send (the
        welcome back, or a main step) is due within ``c`` local days of the later of the last
        send and the flare's end, i.e. within ``c + 1`` days; each of at most ``main_steps``
        further sends follows within ``c`` days (``c`` = the slowest main cadence).
        """
        c = self.main_cadence_cap()
        days = self.rules.resume_after_days + (c + 1) + self.shape.main_steps * c
        return timedelta(days=days) + SLACK

    def horizon_days(self) -> int:
        return self.span_days + self.finish_bound().days + 2

    def last_input(self) -> datetime:
        return max([self.start, *(t for t, _ in self.replies)])

    def holds_a_pause(self) -> bool:
        """Is the last PAUSE not followed (or accompanied) by a RESUME?"""
        ordered = sorted(self.replies, key=lambda item: item[0])
        paused = False
        for _, r in ordered:
            paused = (paused or K.PAUSE in r.keywords) and K.RESUME not in r.keywords
        return paused


# --- strategies ----------------------------------------------------------------------------

halves = st.integers(0, 20).map(lambda n: n / 2)
zones = st.one_of(st.sampled_from(ZONES).map(ZoneInfo), st.timezones())
starts = st.one_of(
    st.datetimes(datetime(2024, 1, 1), datetime(2030, 12, 31)),
    st.builds(
        lambda base, minutes: base + timedelta(minutes=minutes),
        st.sampled_from(NEAR_DST),
        st.integers(0, 40 * MINUTES_PER_DAY),
    ),
).map(lambda d: d.replace(tzinfo=UTC))
rules_st = st.builds(
    PacingRules,
    cadence_days=st.integers(1, 7),
    flare_score_threshold=st.integers(2, 20).map(lambda n: n / 2),
    flare_rise_points=st.integers(1, 20).map(lambda n: n / 2),
    baseline_window=st.integers(1, 10),
    flare_keywords=st.sampled_from([DEFAULT_FLARE_PHRASES, ("flare", "setback"), ()]),
    flare_cadence_days=st.integers(1, 5),
    resume_after_settled_reports=st.integers(1, 4),
    resume_after_days=st.integers(1, 10),
    long_flare_alert_days=st.integers(1, 15),
    slower_max_cadence_days=st.integers(1, 8),
)
shapes = st.builds(
    ProgramShape,
    main_steps=st.integers(1, 45),
    flare_steps=st.integers(0, 5),
    has_resume=st.booleans(),
)
parsed_replies = st.builds(
    lambda score, keywords, phrases: ParsedReply(
        raw="", text="", pain_score=score, keywords=keywords, flare_phrases=phrases, crisis=False
    ),
    st.one_of(st.none(), halves),
    st.one_of(st.just(frozenset()), st.frozensets(st.sampled_from(COMMANDS), max_size=2)),
    st.one_of(st.just(()), st.lists(st.sampled_from(PHRASES), max_size=2, unique=True).map(tuple)),
)


@st.composite
def windows(draw: st.DrawFn) -> SendWindow:
    begin = draw(st.integers(8 * 60, 21 * 60 - 1))
    end = draw(st.integers(begin + 1, 21 * 60))
    return SendWindow(time(*divmod(begin, 60)), time(*divmod(end, 60)))


@st.composite
def scenarios(draw: st.DrawFn, *, settle: bool = False) -> Scenario:
    """``settle``: no opt-out, and any PAUSE left open is RESUMEd after the last reply."""
    start = draw(starts)
    span_days = draw(st.integers(42, 70))
    offsets = st.integers(0, span_days * MINUTES_PER_DAY - 1)
    replies = [
        (start + timedelta(minutes=draw(offsets)), draw(parsed_replies))
        for _ in range(draw(st.integers(0, 70)))
    ]
    opt_out = None if settle else draw(st.none() | offsets)
    scenario = Scenario(
        rules=draw(rules_st),
        shape=draw(shapes),
        clock=PatientClock(draw(zones), draw(st.times()), draw(windows())),
        start=start,
        span_days=span_days,
        replies=tuple(replies),
        opt_out_at=None if opt_out is None else start + timedelta(minutes=opt_out),
    )
    if settle and scenario.holds_a_pause():
        resume = ParsedReply("", "", None, frozenset({K.RESUME}), (), False)
        closing = (scenario.last_input() + timedelta(minutes=1), resume)
        scenario = replace(scenario, replies=(*replies, closing))
    return scenario


def run(scenario: Scenario) -> SimulationResult:
    return simulate(
        scenario.rules,
        scenario.shape,
        scenario.clock,
        start=scenario.start,
        days=scenario.horizon_days(),
        replies=scenario.replies,
        opt_out_at=scenario.opt_out_at,
    )


# --- invariants ----------------------------------------------------------------------------


def day_of(clock: PatientClock, send: TimedSend) -> date:
    return clock.local_date(send.at)


def check_one_message_per_local_day(scenario: Scenario, result: SimulationResult) -> None:
    days = Counter(day_of(scenario.clock, s) for s in result.sends)
    assert max(days.values(), default=0) <= 1, days.most_common(3)
    for s in result.sends:
        assert s.send.local_date == day_of(scenario.clock, s)


def check_inside_send_window(scenario: Scenario, result: SimulationResult) -> None:
    for s in result.sends:
        local = scenario.clock.local(s.at)
        assert scenario.clock.in_window(s.at), local
        assert HARD_START <= local.time() < HARD_END, local
        assert s.at >= scenario.start


def check_main_steps_in_order_once(scenario: Scenario, result: SimulationResult) -> None:
    main = [s.send.index for s in result.sends if s.send.track == Track.MAIN]
    assert main == list(range(len(main)))
    assert len(main) <= scenario.shape.main_steps
    assert all(s.send.occurrence == 0 for s in result.sends if s.send.track == Track.MAIN)


def check_outbox_keys_unique(result: SimulationResult) -> None:
    keys = [(s.send.track, s.send.index, s.send.occurrence) for s in result.sends]
    assert len(keys) == len(set(keys))


def check_opt_out_honoured(scenario: Scenario, result: SimulationResult) -> None:
    if scenario.opt_out_at is None:
        return
    assert all(s.at < scenario.opt_out_at for s in result.sends)
    completed = result.completed_at
    if completed is None or completed >= scenario.opt_out_at:
        assert result.final.state == S.OPTED_OUT
        assert result.final.next_due_at is None


def check_cadence(scenario: Scenario, result: SimulationResult) -> None:
    """SLOWER only ever slows a program down, within the configured cap."""
    cadence = result.final.cadence_days
    assert scenario.rules.cadence_days <= cadence <= scenario.main_cadence_cap()


class StoryWalk:
    """Replays the event log, checking each send against what the log says came before.

    Flares hold the main track; the first flare support is the first program message after a
    flare starts and goes out on the next possible day; after a flare ends the welcome back
    precedes the next main step, once, also on the next possible day; cadences are kept.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.state = S.ACTIVE
        self.flare_open = False
        self.first_support_due = False
        self.resume_due = False
        self.alerted = False
        self.last_send_day: date | None = None
        self.expect: tuple[str, date] | None = None  # the next send's kind and local day

    def check(self, result: SimulationResult) -> None:
        sends = iter(result.sends)
        for timed in result.events:
            kind = timed.event.kind
            if kind.startswith("send-"):
                self.on_send(kind, next(sends))
            elif kind == "flare-start":
                self.on_flare_start()
            elif kind == "flare-end":
                self.on_flare_end()
            elif kind == "long-flare-alert":
                assert self.flare_open and not self.alerted
                self.alerted = True
            self.on_state(timed.event.to_state, timed.at)
        assert next(sends, None) is None, "every send has its event"
        alert_events = [e.at for e in result.events if e.event.kind == "long-flare-alert"]
        assert [a.at for a in result.alerts] == alert_events

    def on_send(self, kind: str, timed: TimedSend) -> None:
        send, day = timed.send, day_of(self.scenario.clock, timed)
        gap = None if self.last_send_day is None else (day - self.last_send_day).days
        assert gap is None or gap >= 1
        assert self.expect is None or self.expect == (kind, day), (self.expect, kind, day)
        if kind == "send-main":
            assert (send.track, send.resume) == (Track.MAIN, False)
            assert self.state == S.ACTIVE and not self.flare_open and not self.resume_due
            assert gap is None or gap >= self.scenario.rules.cadence_days
        elif kind == "send-flare":
            assert (send.track, send.resume) == (Track.FLARE, False)
            assert self.state == S.FLARE and self.flare_open
            assert send.index < self.scenario.shape.flare_steps
            if self.first_support_due:
                assert send.index == 0
            else:
                assert gap is None or gap >= self.scenario.rules.flare_cadence_days
            self.first_support_due = False
        else:
            assert kind == "send-resume"
            assert (send.track, send.resume) == (Track.FLARE, True)
            assert send.index == self.scenario.shape.flare_steps
            assert self.state == S.ACTIVE and self.resume_due
            self.resume_due = False
        self.last_send_day, self.expect = day, None

    def on_flare_start(self) -> None:
        assert not self.flare_open
        self.flare_open, self.first_support_due = True, self.scenario.shape.flare_steps > 0
        self.resume_due, self.alerted = False, False

    def on_flare_end(self) -> None:
        assert self.flare_open and self.state == S.FLARE
        self.flare_open, self.first_support_due = False, False
        self.resume_due = self.scenario.shape.has_resume

    def on_state(self, to_state: EnrollmentState | None, at: datetime) -> None:
        if to_state is None or to_state == self.state:
            return
        self.state, self.expect = to_state, None
        if to_state == S.FLARE and self.first_support_due:
            self.expect = ("send-flare", self.next_possible_day(at))
        elif to_state == S.ACTIVE and self.resume_due:
            self.expect = ("send-resume", self.next_possible_day(at))

    def next_possible_day(self, at: datetime) -> date:
        """The first day after the last send whose window is still open at or after ``at``."""
        clock = self.scenario.clock
        floor = clock.local_date(at)
        if self.last_send_day is not None:
            floor = max(floor, self.last_send_day + timedelta(days=1))
        return clock.local_date(clock.next_slot(at, not_before_day=floor))


def check_all(scenario: Scenario, result: SimulationResult) -> None:
    check_one_message_per_local_day(scenario, result)
    check_inside_send_window(scenario, result)
    check_main_steps_in_order_once(scenario, result)
    check_outbox_keys_unique(result)
    check_opt_out_honoured(scenario, result)
    check_cadence(scenario, result)
    StoryWalk(scenario).check(result)


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants_hold_for_any_reply_history(scenario: Scenario) -> None:
    check_all(scenario, run(scenario))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(settle=True))
def test_program_always_finishes(scenario: Scenario) -> None:
    result = run(scenario)
    check_all(scenario, result)
    assert result.final.state == S.COMPLETED, result.final
    completed = result.completed_at
    assert completed is not None
    assert completed <= scenario.last_input() + scenario.finish_bound()
    main = [s for s in result.sends if s.send.track == Track.MAIN]
    assert len(main) == scenario.shape.main_steps
    assert main[-1].at == completed
