"""Pacing behaviour, told as program timelines.

Most tests replay an enrollment with :func:`campaigns.simulation.simulate` and compare the
sends, day by day, with what the program promises; a few poke single transitions directly.
Timeline labels: ``M3`` = main step 3, ``F1`` = flare support step 1, ``R`` = welcome back.
"""

from __future__ import annotations

import time as clock_time
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaigns import simulation
from campaigns.enums import AlertKind, EnrollmentState, Track
from campaigns.pacing import (
    Outcome,
    PacingRules,
    PacingState,
    ProgramShape,
    advance,
    apply_reply,
    baseline,
    opt_out,
    start,
)
from campaigns.replies import Keyword, ParsedReply
from campaigns.sendwindow import PatientClock, SendWindow
from campaigns.simulation import SimulationResult, SimulationStuck, simulate

S = EnrollmentState
K = Keyword
TZ = ZoneInfo("America/New_York")
CLOCK = PatientClock(TZ, time(9, 0), SendWindow(time(9, 0), time(20, 0)))
DAY0 = date(2025, 6, 2)
RULES = PacingRules()
SHAPE = ProgramShape(main_steps=10, flare_steps=3, has_resume=True)


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    """The instant of program day ``day`` (0 = enrollment day) at local ``hour:minute``."""
    local = datetime.combine(DAY0 + timedelta(days=day), time(hour, minute), tzinfo=TZ)
    return local.astimezone(UTC)


def reply(
    score: float | None = None, *keywords: Keyword, phrases: tuple[str, ...] = ()
) -> ParsedReply:
    return ParsedReply(
        raw="",
        text="",
        pain_score=score,
        keywords=frozenset(keywords),
        flare_phrases=phrases,
        crisis=False,
    )


def run(
    replies: Sequence[tuple[datetime, ParsedReply]] = (),
    *,
    rules: PacingRules = RULES,
    shape: ProgramShape = SHAPE,
    days: int = 60,
    opt_out_at: datetime | None = None,
    prior_scores: Sequence[float] = (),
) -> SimulationResult:
    return simulate(
        rules,
        shape,
        CLOCK,
        start=at(0, 8),
        days=days,
        replies=replies,
        opt_out_at=opt_out_at,
        prior_scores=prior_scores,
    )


def label(track: Track, index: int, resume: bool) -> str:
    if resume:
        return "R"
    return f"{'M' if track == Track.MAIN else 'F'}{index}"


def timeline(result: SimulationResult) -> list[tuple[int, str]]:
    """(program day, label) of every send."""
    return [
        ((CLOCK.local_date(s.at) - DAY0).days, label(s.send.track, s.send.index, s.send.resume))
        for s in result.sends
    ]


def mains(first: int, last: int, *, day: int, every: int = 1) -> list[tuple[int, str]]:
    """Main steps ``first..last`` sent from ``day`` on, one every ``every`` days."""
    return [(day + i * every, f"M{step}") for i, step in enumerate(range(first, last + 1))]


def event_times(result: SimulationResult, kind: str) -> list[datetime]:
    return [e.at for e in result.events if e.event.kind == kind]


def fold(state: PacingState, *replies: ParsedReply, prior: Sequence[float] = ()) -> Outcome:
    outcome = Outcome(state)
    for r in replies:
        outcome = apply_reply(outcome.state, r, prior, RULES, SHAPE, now=at(1))
    return outcome


# --- the main track ------------------------------------------------------------------------


def test_new_enrollment_is_first_due_at_its_next_send_slot() -> None:
    assert start(RULES, CLOCK, now=at(0, 7)).next_due_at == at(0, 9)
    assert start(RULES, CLOCK, now=at(0, 12)).next_due_at == at(0, 12)
    assert start(RULES, CLOCK, now=at(0, 21)).next_due_at == at(1, 9)


def test_main_track_sends_one_step_a_day_at_send_time() -> None:
    result = run()
    assert timeline(result) == mains(0, 9, day=0)
    assert all(CLOCK.local(s.at).time() == time(9, 0) for s in result.sends)
    assert [s.send.occurrence for s in result.sends] == [0] * 10


def test_completed_after_last_main_step() -> None:
    result = run()
    assert result.final.state == S.COMPLETED
    assert result.final.next_due_at is None
    assert result.completed_at == result.sends[-1].at == at(9, 9)
    assert event_times(result, "complete") == [at(9, 9)]
    after = advance(result.final, RULES, SHAPE, CLOCK, now=at(12, 9))
    assert after.send is None
    assert after.state == result.final


def test_cadence_spaces_main_steps() -> None:
    result = run(rules=replace(RULES, cadence_days=3), days=40)
    assert timeline(result) == mains(0, 9, day=0, every=3)


@pytest.mark.parametrize(
    ("tz", "first_day"),
    [("America/New_York", date(2025, 3, 3)), ("Australia/Sydney", date(2025, 3, 31))],
)
def test_program_across_a_dst_change_keeps_local_send_time(tz: str, first_day: date) -> None:
    clock = PatientClock(ZoneInfo(tz), time(9, 0), SendWindow())
    began = datetime.combine(first_day, time(8, 0), tzinfo=clock.tz)
    result = simulate(RULES, SHAPE, clock, start=began, days=20, replies=[])
    local = [clock.local(s.at) for s in result.sends]
    assert [t.time() for t in local] == [time(9, 0)] * SHAPE.main_steps
    assert [t.date() for t in local] == [first_day + timedelta(days=i) for i in range(10)]
    assert len({t.utcoffset() for t in local}) == 2


def test_message_due_at_2059_picked_up_at_2105_waits_for_morning() -> None:
    late_window = PatientClock(TZ, time(9, 0), SendWindow(time(8, 0), time(21, 0)))
    state = PacingState(main_position=1, last_program_send_on=DAY0, next_due_at=at(1, 20, 59))
    late = advance(state, RULES, SHAPE, late_window, now=at(1, 21, 5))
    assert late.send is None
    assert late.state.next_due_at == at(2, 9)
    morning = advance(late.state, RULES, SHAPE, late_window, now=at(2, 9))
    assert morning.send is not None
    assert (morning.send.track, morning.send.index) == (Track.MAIN, 1)
    assert morning.send.local_date == DAY0 + timedelta(days=2)


def test_early_wakeup_does_nothing() -> None:
    state = start(RULES, CLOCK, now=at(0, 7))
    early = advance(state, RULES, SHAPE, CLOCK, now=at(0, 8))
    assert early == Outcome(state)


# --- flare detection -----------------------------------------------------------------------


def test_score_at_threshold_starts_flare() -> None:
    outcome = fold(PacingState(), reply(7))
    assert outcome.state.state == S.FLARE
    assert outcome.state.next_due_at == at(1)
    assert [e.kind for e in outcome.events] == ["flare-start"]


def test_rise_over_baseline_starts_flare() -> None:
    assert fold(PacingState(), reply(5.5), prior=[2, 2, 3, 2, 2]).state.state == S.FLARE
    assert fold(PacingState(), reply(4.5), prior=[2, 2, 3, 2, 2]).state.state == S.ACTIVE


def test_baseline_is_median_of_recent_window() -> None:
    assert baseline([2, 2, 9, 2, 2], 7) == 2
    assert baseline([9, 9, 9, 9, 2, 2, 3], 3) == 2
    assert baseline([], 7) is None
    assert fold(PacingState(), reply(5), prior=[2, 2, 9, 2, 2]).state.state == S.FLARE


def test_flare_keyword_and_configured_phrases_start_flare() -> None:
    assert fold(PacingState(), reply(None, K.FLARE)).state.state == S.FLARE
    assert fold(PacingState(), reply(None, phrases=("bad day",))).state.state == S.FLARE


def test_phrase_not_in_program_flare_keywords_is_ignored() -> None:
    rules = replace(RULES, flare_keywords=("setback",))
    outcome = apply_reply(
        PacingState(), reply(None, phrases=("worse",)), [], rules, SHAPE, now=at(1)
    )
    assert outcome.state.state == S.ACTIVE


def test_new_flare_signal_resets_settled_count() -> None:
    outcome = fold(PacingState(), reply(8), reply(3), reply(None, K.FLARE), reply(3))
    assert outcome.state.state == S.FLARE
    assert outcome.state.settled_reports == 1


# --- flares over time ----------------------------------------------------------------------


def test_flare_holds_main_track_until_settled() -> None:
    result = run([(at(2), reply(8)), (at(3, 18), reply(3)), (at(4, 18), reply(3))])
    assert timeline(result) == [*mains(0, 2, day=0), (3, "F0"), (4, "R"), *mains(3, 9, day=5)]
    assert event_times(result, "flare-start") == [at(2)]
    assert event_times(result, "flare-end") == [at(4, 18)]


def test_first_flare_support_goes_out_next_day_not_after_flare_cadence() -> None:
    result = run([(at(1, 10), reply(8))], rules=replace(RULES, flare_cadence_days=3))
    assert timeline(result)[:5] == [*mains(0, 1, day=0), (2, "F0"), (5, "F1"), (7, "R")]
    assert result.sends[2].at == at(2, 9)


def test_flare_support_goes_out_at_once_when_nothing_was_sent_today() -> None:
    result = run([(at(1, 14), reply(8))], rules=replace(RULES, cadence_days=2))
    assert timeline(result)[:2] == [(0, "M0"), (1, "F0")]
    assert result.sends[1].at == at(1, 14)


def test_flare_support_cycles_after_first_message() -> None:
    replies = [(at(day), reply(8)) for day in range(1, 12)]
    result = run(replies, rules=replace(RULES, flare_cadence_days=1))
    flare = [s.send for s in result.sends if s.send.track == Track.FLARE and not s.send.resume]
    assert [s.index for s in flare][:9] == [0, 1, 2, 1, 2, 1, 2, 1, 2]
    assert [s.occurrence for s in flare] == list(range(len(flare)))


def test_single_flare_step_repeats() -> None:
    replies = [(at(day), reply(8)) for day in range(1, 6)]
    shape = replace(SHAPE, flare_steps=1)
    result = run(replies, rules=replace(RULES, flare_cadence_days=1), shape=shape)
    flare = [s.send for s in result.sends if s.send.track == Track.FLARE and not s.send.resume]
    assert {s.index for s in flare} == {0}
    assert len({s.occurrence for s in flare}) == len(flare) > 1


def test_resume_message_sent_once_after_flare() -> None:
    replies = [
        (at(1), reply(8)),
        (at(2, 13), reply(2)),
        (at(3, 13), reply(2)),
        (at(6), reply(None, K.FLARE)),
        (at(7, 15), reply(None, K.RESUME)),
    ]
    result = run(replies)
    labels = [name for _, name in timeline(result)]
    assert labels.count("R") == 2
    assert labels == [
        *("M0", "M1", "F0", "R", "M2", "M3", "M4", "F0", "R"),
        *(f"M{i}" for i in range(5, 10)),
    ]
    resumes = [s.send for s in result.sends if s.send.resume]
    assert all((s.track, s.index) == (Track.FLARE, SHAPE.flare_steps) for s in resumes)
    assert len({s.occurrence for s in resumes}) == 2


def test_no_resume_step_goes_straight_back_to_main() -> None:
    shape = replace(SHAPE, has_resume=False)
    result = run([(at(1), reply(8)), (at(2, 13), reply(2)), (at(2, 14), reply(2))], shape=shape)
    assert timeline(result) == [*mains(0, 1, day=0), (2, "F0"), *mains(2, 9, day=3)]


def test_resume_after_quiet_days() -> None:
    result = run([(at(1, 10), reply(8))])
    assert event_times(result, "flare-end") == [at(7, 10)]
    assert timeline(result) == [
        *mains(0, 1, day=0),
        (2, "F0"),
        (4, "F1"),
        (6, "F2"),
        (7, "R"),
        *mains(2, 9, day=8),
    ]
    assert result.final.state == S.COMPLETED


def test_flare_signals_keep_the_flare_going() -> None:
    replies = [(at(day), reply(None, phrases=("worse",))) for day in range(1, 15)]
    result = run(replies, rules=replace(RULES, long_flare_alert_days=30))
    assert event_times(result, "flare-end") == [at(14) + timedelta(days=6)]
    assert [name for _, name in timeline(result) if name.startswith("M")] == [
        f"M{i}" for i in range(10)
    ]


def test_long_flare_raises_one_alert() -> None:
    result = run([(at(day), reply(8)) for day in range(1, 21)])
    assert [(a.at, a.alert.kind) for a in result.alerts] == [(at(11), AlertKind.LONG_FLARE)]
    assert "10 days" in result.alerts[0].alert.summary
    assert event_times(result, "long-flare-alert") == [at(11)]


def test_flare_ending_for_quiet_days_raises_no_long_flare_alert() -> None:
    # Paused three weeks into a flare with no flare signal since: RESUME ends the flare
    # (quiet for resume_after_days) and must not also report a 20-day flare to staff.
    replies = [
        (at(1), reply(8)),
        (at(2), reply(None, K.PAUSE)),
        (at(21), reply(None, K.RESUME)),
    ]
    result = run(replies)
    assert result.alerts == ()
    assert event_times(result, "flare-end") == [at(21)]
    assert timeline(result)[:4] == [*mains(0, 1, day=0), (2, "F0"), (21, "R")]


def test_long_flare_alert_wakeup_does_not_send_before_flare_cadence() -> None:
    rules = replace(RULES, long_flare_alert_days=2)
    result = run([(at(0, 10), reply(8))], rules=rules)
    assert [a.at for a in result.alerts] == [at(2, 10)]
    assert timeline(result)[:3] == [(0, "M0"), (1, "F0"), (3, "F1")]
    assert result.sends[2].at == at(3, 9)


def test_flare_without_flare_steps_sends_nothing_until_it_ends() -> None:
    shape = replace(SHAPE, flare_steps=0)
    result = run([(at(1), reply(8))], shape=shape)
    assert timeline(result) == [*mains(0, 1, day=0), (7, "R"), *mains(2, 9, day=8)]
    assert result.sends[2].at == at(7)
    assert result.wakeups < 30


# --- patient commands ----------------------------------------------------------------------


def test_slower_halves_cadence_up_to_cap() -> None:
    cadences = [
        e.event.data["to"]
        for e in run([(at(d), reply(None, K.SLOWER)) for d in (0, 1, 2)]).events
        if e.event.kind == "slower"
    ]
    assert cadences == [2, 4, 4]
    result = run([(at(0), reply(None, K.SLOWER)), (at(4), reply(None, K.SLOWER))], days=60)
    assert timeline(result) == [(0, "M0"), (2, "M1"), (4, "M2"), *mains(3, 9, day=8, every=4)]


def test_slower_never_speeds_up_a_slow_program() -> None:
    rules = replace(RULES, cadence_days=7, slower_max_cadence_days=4)
    outcome = apply_reply(
        PacingState(cadence_days=7), reply(None, K.SLOWER), [], rules, SHAPE, now=at(1)
    )
    assert outcome.state.cadence_days == 7


def test_pause_until_resume() -> None:
    result = run([(at(1), reply(None, K.PAUSE)), (at(5), reply(None, K.RESUME))])
    assert timeline(result) == [*mains(0, 1, day=0), *mains(2, 9, day=5)]
    assert result.sends[2].at == at(5)
    paused = [c for c in result.states if c.state == S.PAUSED]
    assert [c.at for c in paused] == [at(1)]


def test_pause_without_resume_holds_forever() -> None:
    result = run([(at(1), reply(None, K.PAUSE))])
    assert timeline(result) == mains(0, 1, day=0)
    assert result.final.state == S.PAUSED
    assert result.final.next_due_at is None


def test_resume_after_pause_respects_cadence() -> None:
    rules = replace(RULES, cadence_days=3)
    result = run([(at(0), reply(None, K.PAUSE)), (at(1), reply(None, K.RESUME))], rules=rules)
    assert timeline(result)[:3] == [(0, "M0"), (3, "M1"), (6, "M2")]


def test_pause_during_flare_resumes_into_flare() -> None:
    replies = [
        (at(1, 10), reply(8)),
        (at(2), reply(None, K.PAUSE)),
        (at(4), reply(None, K.RESUME)),
    ]
    result = run(replies)
    assert [c.state for c in result.states] == [
        S.ACTIVE,
        S.FLARE,
        S.PAUSED,
        S.FLARE,
        S.ACTIVE,
        S.COMPLETED,
    ]
    assert timeline(result) == [
        *mains(0, 1, day=0),
        (2, "F0"),
        (4, "F1"),
        (6, "F2"),
        (7, "R"),
        *mains(2, 9, day=8),
    ]
    assert result.sends[3].at == at(4)


def test_flare_while_paused_resumes_into_flare() -> None:
    replies = [
        (at(1), reply(None, K.PAUSE)),
        (at(2), reply(8)),
        (at(3), reply(None, K.RESUME)),
    ]
    result = run(replies)
    assert timeline(result)[:3] == [(0, "M0"), (1, "M1"), (3, "F0")]
    assert result.sends[2].at == at(3)


def test_resume_keyword_in_flare_ends_flare() -> None:
    replies = [(at(1, 10), reply(8)), (at(2, 15), reply(None, K.RESUME))]
    result = run(replies)
    assert event_times(result, "flare-end") == [at(2, 15)]
    assert timeline(result) == [*mains(0, 1, day=0), (2, "F0"), (3, "R"), *mains(2, 9, day=4)]


# --- consent -------------------------------------------------------------------------------


def test_opted_out_gets_nothing() -> None:
    replies = [(at(3), reply(8)), (at(4), reply(None, K.RESUME))]
    result = run(replies, opt_out_at=at(2, 8))
    assert timeline(result) == mains(0, 1, day=0)
    assert result.final.state == S.OPTED_OUT
    assert result.final.next_due_at is None
    stale = advance(replace(result.final, next_due_at=at(5, 9)), RULES, SHAPE, CLOCK, now=at(5, 9))
    assert stale.send is None
    assert stale.state.next_due_at is None


def test_opt_out_during_pause_keeps_nothing_due() -> None:
    paused = fold(PacingState(), reply(None, K.PAUSE)).state
    out = opt_out(paused, "STOP")
    assert out.state.state == S.OPTED_OUT
    assert out.state.next_due_at is None


def test_stop_and_start_replies_act_on_consent() -> None:
    stop = reply(None, K.STOP)
    start_again = reply(None, K.START)
    result = run([(at(1, 8), stop), (at(3), start_again)])
    assert timeline(result)[:3] == [(0, "M0"), (3, "M1"), (4, "M2")]
    assert result.sends[1].at == at(3)


# --- the simulator -------------------------------------------------------------------------


def test_wakeup_due_at_a_reply_instant_runs_first() -> None:
    result = run([(at(1, 9), reply(8))])
    assert timeline(result)[:3] == [(0, "M0"), (1, "M1"), (2, "F0")]


def test_opt_out_at_a_due_instant_wins() -> None:
    result = run(opt_out_at=at(1, 9))
    assert timeline(result) == [(0, "M0")]


def test_prior_and_replied_scores_make_the_baseline() -> None:
    assert run([(at(1), reply(5.5))], prior_scores=[2] * 7).states[1].state == S.FLARE
    replies = [(at(d), reply(2)) for d in range(1, 4)] + [(at(4), reply(5.5))]
    assert [c.at for c in run(replies).states if c.state == S.FLARE] == [at(4)]


def test_replies_outside_the_simulated_period_are_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        run([(at(0, 7), reply(3))])
    with pytest.raises(ValueError, match="outside"):
        run([(at(11), reply(3))], days=10)
    with pytest.raises(ValueError, match="aware"):
        simulate(RULES, SHAPE, CLOCK, start=datetime(2025, 6, 2), days=1, replies=[])


def test_unordered_replies_are_applied_in_time_order() -> None:
    replies = [(at(4, 18), reply(3)), (at(2), reply(8)), (at(3, 18), reply(3))]
    assert timeline(run(replies)) == timeline(run(sorted(replies, key=lambda r: r[0])))


def test_wakeup_that_does_not_move_forward_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def stuck(state: PacingState, *args: object, now: datetime) -> Outcome:
        return Outcome(replace(state, next_due_at=now))

    monkeypatch.setattr(simulation, "advance", stuck)
    with pytest.raises(SimulationStuck, match="next_due_at"):
        run()


def test_wakeups_that_crawl_forward_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def crawl(state: PacingState, *args: object, now: datetime) -> Outcome:
        return Outcome(replace(state, next_due_at=now + timedelta(seconds=1)))

    monkeypatch.setattr(simulation, "advance", crawl)
    with pytest.raises(SimulationStuck, match="spinning"):
        run(days=2)


def test_six_week_program_with_daily_replies_simulates_fast() -> None:
    shape = ProgramShape(main_steps=42, flare_steps=4)
    scores = [3, 4, 8, 8, 5, 3, 2, 6, 3, 2]
    replies = [(at(d, 19), reply(float(scores[d % len(scores)]))) for d in range(42)]
    timings = []
    for _ in range(5):
        began = clock_time.perf_counter()
        result = simulate(RULES, shape, CLOCK, start=at(0, 8), days=100, replies=replies)
        timings.append(clock_time.perf_counter() - began)
    assert result.final.state == S.COMPLETED
    assert min(timings) < 0.05, timings


def test_an_early_morning_flare_reply_waits_for_the_patients_send_time() -> None:
    clock = PatientClock(TZ, time(15, 0), SendWindow(time(9, 0), time(20, 0)))
    state = replace(start(RULES, clock, now=at(0, 8)), last_program_send_on=DAY0)
    flare = apply_reply(state, reply(9), [], RULES, SHAPE, now=at(1, 8, 30)).state
    assert flare.state == S.FLARE
    early = advance(flare, RULES, SHAPE, clock, now=at(1, 9, 5))
    assert early.send is None
    assert early.state.next_due_at == at(1, 15)
    on_time = advance(early.state, RULES, SHAPE, clock, now=at(1, 15))
    assert on_time.send is not None and on_time.send.track == Track.FLARE


def test_evolve_is_replace_and_keeps_the_state_frozen() -> None:
    """The tick's fast copy must be indistinguishable from ``dataclasses.replace``."""
    base = PacingState(main_position=3, next_due_at=datetime(2025, 6, 2, 13, tzinfo=UTC))
    fast = base.evolve(state=S.FLARE, flare_sent=2, last_program_send_on=DAY0)
    slow = replace(base, state=S.FLARE, flare_sent=2, last_program_send_on=DAY0)
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert base.state == S.ACTIVE and base.flare_sent == 0  # the original is untouched
    with pytest.raises(FrozenInstanceError):
        fast.main_position = 9  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"no field.*main_postion"):
        base.evolve(main_postion=4)


def test_of_needs_every_field() -> None:
    whole = {name: getattr(PacingState(), name) for name in PacingState.__dataclass_fields__}
    assert PacingState.of({**whole, "settled_reports": 2}) == PacingState(settled_reports=2)
    with pytest.raises(TypeError, match="exactly the fields"):
        PacingState.of({k: v for k, v in whole.items() if k != "paused_from"})
    with pytest.raises(TypeError, match="exactly the fields"):
        PacingState.of({**whole, "extra": 1})
