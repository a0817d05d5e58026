"""The pacing engine: given an enrollment's state, what the patient said and ``now``, decide
what happens next. Pure: no database, no clock, no transport, so a 6-week program can be
replayed in milliseconds and its invariants checked over random reply histories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any

from campaigns.enums import AlertKind, EnrollmentState, Track
from campaigns.replies import DEFAULT_FLARE_PHRASES, Keyword, ParsedReply
from campaigns.sendwindow import PatientClock

S = EnrollmentState


@dataclass(frozen=True)
class PacingRules:
    """Per-program knobs, loaded from ``program.yaml`` (``pacing:`` and ``cadence_days``)."""

    cadence_days: int = 1
    flare_score_threshold: float = 7
    flare_rise_points: float = 3
    baseline_window: int = 7
    flare_keywords: tuple[str, ...] = DEFAULT_FLARE_PHRASES
    flare_cadence_days: int = 2
    resume_after_settled_reports: int = 2
    resume_after_days: int = 6
    long_flare_alert_days: int = 10
    slower_max_cadence_days: int = 4

    def __post_init__(self) -> None:
        for name in (
            "cadence_days",
            "flare_cadence_days",
            "baseline_window",
            "resume_after_settled_reports",
            "resume_after_days",
            "long_flare_alert_days",
            "slower_max_cadence_days",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"pacing.{name} must be at least 1")
        if not 0 < self.flare_score_threshold <= 10:
            raise ValueError("pacing.flare_score_threshold must be within 1-10")
        if not 0 < self.flare_rise_points <= 10:
            raise ValueError("pacing.flare_rise_points must be within 1-10")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, cadence_days: int = 1) -> PacingRules:
        known = {f for f in cls.__dataclass_fields__ if f != "cadence_days"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown pacing rule(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        if "flare_keywords" in values:
            values["flare_keywords"] = tuple(str(k).lower() for k in values["flare_keywords"])
        return cls(cadence_days=cadence_days, **values)

    def to_mapping(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "cadence_days"}
        out["flare_keywords"] = list(self.flare_keywords)
        return out


@dataclass(frozen=True)
class ProgramShape:
    """All pacing needs to know of a program version's content."""

    main_steps: int
    flare_steps: int
    has_resume: bool = True


@dataclass(frozen=True)
class PacingState:
    state: EnrollmentState = S.ACTIVE
    main_position: int = 0
    flare_position: int = 0
    flare_sent: int = 0
    cadence_days: int = 1
    next_due_at: datetime | None = None
    last_program_send_on: date | None = None
    flare_started_at: datetime | None = None
    last_flare_signal_at: datetime | None = None
    settled_reports: int = 0
    flare_alerted: bool = False
    resume_pending: bool = False
    paused_from: EnrollmentState | None = None

    def evolve(self, **changes: Any) -> PacingState:
        """``dataclasses.replace`` without its walk over the fields and the frozen
        ``__init__``'s thirteen ``object.__setattr__`` calls: the tick makes two or three of
        these per message, and doing without them took ~9% of B3's instructions per message
        (bench/HISTORY.md, fourteenth session). Unknown names still raise ``TypeError``, as
        ``replace`` does."""
        if not changes.keys() <= _STATE_NAMES:
            unknown = ", ".join(sorted(changes.keys() - _STATE_NAMES))
            raise TypeError(f"PacingState has no field(s): {unknown}")
        new = object.__new__(type(self))
        values = new.__dict__
        values.update(self.__dict__)
        values.update(changes)
        return new

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> PacingState:
        """A state from every one of its fields (a stored enrollment's), built as ``evolve``
        builds one."""
        if values.keys() != _STATE_NAMES:
            raise TypeError(f"PacingState needs exactly the fields {sorted(_STATE_NAMES)}")
        new = object.__new__(cls)
        new.__dict__.update(values)
        return new


_STATE_NAMES = frozenset(PacingState.__dataclass_fields__)


@dataclass(frozen=True)
class PacingEvent:
    kind: str
    reason: str
    from_state: EnrollmentState | None = None
    to_state: EnrollmentState | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertRequest:
    kind: AlertKind
    summary: str


@dataclass(frozen=True)
class PlannedSend:
    """Which step goes out; ``occurrence`` makes (step, occurrence) unique per enrollment."""

    track: Track
    index: int
    occurrence: int
    local_date: date
    resume: bool = False


@dataclass(frozen=True)
class Outcome:
    state: PacingState
    send: PlannedSend | None = None
    events: tuple[PacingEvent, ...] = ()
    alerts: tuple[AlertRequest, ...] = ()


# --- starting -----------------------------------------------------------------------------


def start(rules: PacingRules, clock: PatientClock, *, now: datetime) -> PacingState:
    """A new enrollment is first due at the patient's next send slot."""
    return PacingState(cadence_days=rules.cadence_days, next_due_at=clock.next_slot(now))


# --- flare detection ----------------------------------------------------------------------


def baseline(scores: Sequence[float], window: int) -> float | None:
    """Median of the most recent ``window`` scores: robust to one odd report."""
    recent = list(scores)[-window:]
    return float(median(recent)) if recent else None


def flare_reason(
    reply: ParsedReply, prior_scores: Sequence[float], rules: PacingRules
) -> str | None:
    """Why this reply signals a flare, or None when it does not."""
    score = reply.pain_score
    if score is not None and score >= rules.flare_score_threshold:
        return f"score {score:g} >= threshold {rules.flare_score_threshold:g}"
    base = baseline(prior_scores, rules.baseline_window)
    if score is not None and base is not None and score - base >= rules.flare_rise_points:
        return f"score {score:g} is {score - base:g} above baseline {base:g}"
    if Keyword.FLARE in reply.keywords:
        return "patient reported a flare"
    words = [p for p in reply.flare_phrases if p in rules.flare_keywords]
    if words:
        return f"flare words: {', '.join(words)}"
    return None


# --- replies ------------------------------------------------------------------------------


def apply_reply(
    state: PacingState,
    reply: ParsedReply,
    prior_scores: Sequence[float],
    rules: PacingRules,
    shape: ProgramShape,
    *,
    now: datetime,
) -> Outcome:
    """Fold one patient reply into the pacing state (STOP/START are consent: see callers)."""
    if state.state.is_final or state.state == S.OPTED_OUT:
        return Outcome(state)
    events: list[PacingEvent] = []
    reason = flare_reason(reply, prior_scores, rules)
    if reason is not None:
        state = _flare_signal(state, reason, events, now=now)
    elif reply.pain_score is not None:
        state = _settled_report(state, reply.pain_score, rules, shape, events, now=now)
    for keyword in sorted(reply.keywords & {Keyword.PAUSE, Keyword.RESUME, Keyword.SLOWER}):
        state = _command(state, keyword, rules, shape, events, now=now)
    return Outcome(state, events=tuple(events))


def _flare_signal(
    state: PacingState, reason: str, events: list[PacingEvent], *, now: datetime
) -> PacingState:
    if state.state == S.FLARE or (state.state == S.PAUSED and state.paused_from == S.FLARE):
        events.append(PacingEvent("flare-signal", f"flare continues: {reason}"))
        return state.evolve(last_flare_signal_at=now, settled_reports=0)
    flare = state.evolve(
        flare_started_at=now,
        last_flare_signal_at=now,
        settled_reports=0,
        flare_position=0,
        flare_alerted=False,
        resume_pending=False,
    )
    if state.state == S.PAUSED:
        events.append(PacingEvent("flare-start", f"flare while paused: {reason}"))
        return flare.evolve(paused_from=S.FLARE)
    events.append(PacingEvent("flare-start", f"main track held: {reason}", state.state, S.FLARE))
    return flare.evolve(state=S.FLARE, next_due_at=now)


def _settled_report(
    state: PacingState,
    score: float,
    rules: PacingRules,
    shape: ProgramShape,
    events: list[PacingEvent],
    *,
    now: datetime,
) -> PacingState:
    if state.state != S.FLARE:
        return state
    settled = state.settled_reports + 1
    if settled >= rules.resume_after_settled_reports:
        reason = f"{settled} settled report(s), latest {score:g}"
        return _end_flare(state.evolve(settled_reports=settled), reason, shape, events, now=now)
    events.append(PacingEvent("flare-settling", f"settled report {settled}: score {score:g}"))
    return state.evolve(settled_reports=settled)


def _end_flare(
    state: PacingState,
    reason: str,
    shape: ProgramShape,
    events: list[PacingEvent],
    *,
    now: datetime,
) -> PacingState:
    events.append(PacingEvent("flare-end", f"main track resumes: {reason}", S.FLARE, S.ACTIVE))
    return state.evolve(
        state=S.ACTIVE,
        resume_pending=shape.has_resume,
        flare_started_at=None,
        settled_reports=0,
        next_due_at=now,
    )


def _command(
    state: PacingState,
    keyword: Keyword,
    rules: PacingRules,
    shape: ProgramShape,
    events: list[PacingEvent],
    *,
    now: datetime,
) -> PacingState:
    if keyword == Keyword.PAUSE and state.state.receives_program:
        events.append(PacingEvent("pause", "patient asked to pause", state.state, S.PAUSED))
        return state.evolve(state=S.PAUSED, paused_from=state.state, next_due_at=None)
    if keyword == Keyword.RESUME and state.state == S.PAUSED:
        back = state.paused_from or S.ACTIVE
        events.append(PacingEvent("resume", "patient asked to resume", S.PAUSED, back))
        return state.evolve(state=back, paused_from=None, next_due_at=now)
    if keyword == Keyword.RESUME and state.state == S.FLARE:
        return _end_flare(state, "patient said they are ready", shape, events, now=now)
    if keyword == Keyword.SLOWER:
        # Never faster: a program already slower than the cap keeps its own cadence.
        slower = max(state.cadence_days, min(state.cadence_days * 2, rules.slower_max_cadence_days))
        events.append(
            PacingEvent(
                "slower",
                f"cadence every {state.cadence_days} -> {slower} day(s)",
                data={"from": state.cadence_days, "to": slower},
            )
        )
        return state.evolve(cadence_days=slower)
    return state


# --- consent ------------------------------------------------------------------------------


def opt_out(state: PacingState, reason: str) -> Outcome:
    """Honoured at once: nothing is due any more, whatever was pending."""
    if state.state in (S.OPTED_OUT, S.COMPLETED, S.WITHDRAWN):
        return Outcome(state)
    held = state.paused_from if state.state == S.PAUSED else state.state
    event = PacingEvent("opt-out", reason, state.state, S.OPTED_OUT)
    new = state.evolve(state=S.OPTED_OUT, paused_from=held, next_due_at=None)
    return Outcome(new, events=(event,))


def opt_in(state: PacingState, reason: str, *, now: datetime) -> Outcome:
    if state.state != S.OPTED_OUT:
        return Outcome(state)
    back = state.paused_from or S.ACTIVE
    event = PacingEvent("opt-in", reason, S.OPTED_OUT, back)
    return Outcome(state.evolve(state=back, paused_from=None, next_due_at=now), events=(event,))


def withdraw(state: PacingState, reason: str) -> Outcome:
    if state.state.is_final:
        return Outcome(state)
    event = PacingEvent("withdraw", reason, state.state, S.WITHDRAWN)
    return Outcome(state.evolve(state=S.WITHDRAWN, next_due_at=None), events=(event,))


# --- staff actions ------------------------------------------------------------------------


def pause(state: PacingState, reason: str) -> Outcome:
    """Staff pause: like the patient's PAUSE, remembering whether a flare was running."""
    if not state.state.receives_program:
        return Outcome(state)
    event = PacingEvent("pause", reason, state.state, S.PAUSED)
    new = state.evolve(state=S.PAUSED, paused_from=state.state, next_due_at=None)
    return Outcome(new, events=(event,))


def resume(state: PacingState, reason: str, *, now: datetime) -> Outcome:
    """Staff resume: back to where the pause found the patient, due at the next tick."""
    if state.state != S.PAUSED:
        return Outcome(state)
    back = state.paused_from or S.ACTIVE
    event = PacingEvent("resume", reason, S.PAUSED, back)
    return Outcome(state.evolve(state=back, paused_from=None, next_due_at=now), events=(event,))


# --- the tick -----------------------------------------------------------------------------


def advance(
    state: PacingState,
    rules: PacingRules,
    shape: ProgramShape,
    clock: PatientClock,
    *,
    now: datetime,
) -> Outcome:
    """Called when an enrollment is due: apply timed transitions, then maybe plan one send."""
    if not state.state.receives_program:
        return Outcome(state.evolve(next_due_at=None))
    if state.next_due_at is not None and now < state.next_due_at:
        return Outcome(state)
    events: list[PacingEvent] = []
    alerts: list[AlertRequest] = []
    state = _timed_transitions(state, rules, shape, events, alerts, now=now)
    send: PlannedSend | None = None
    if _may_send_now(state, rules, clock, now=now):
        state, send = _choose_send(state, shape, clock.local_date(now), events)
    if (
        state.state == S.ACTIVE
        and state.main_position >= shape.main_steps
        and not (state.resume_pending)
    ):
        events.append(PacingEvent("complete", "every main-track step sent", S.ACTIVE, S.COMPLETED))
        state = state.evolve(state=S.COMPLETED, next_due_at=None)
        return Outcome(state, send, tuple(events), tuple(alerts))
    state = state.evolve(next_due_at=_next_wakeup(state, rules, shape, clock, now=now))
    return Outcome(state, send, tuple(events), tuple(alerts))


def _timed_transitions(
    state: PacingState,
    rules: PacingRules,
    shape: ProgramShape,
    events: list[PacingEvent],
    alerts: list[AlertRequest],
    *,
    now: datetime,
) -> PacingState:
    if state.state != S.FLARE:
        return state
    started = state.flare_started_at or now
    quiet_since = state.last_flare_signal_at or started
    if now - quiet_since >= timedelta(days=rules.resume_after_days):
        # Checked first: a flare that ends for being quiet is not reported as a long one.
        reason = f"no flare signal for {rules.resume_after_days} days"
        return _end_flare(state, reason, shape, events, now=now)
    if not state.flare_alerted and now - started >= timedelta(days=rules.long_flare_alert_days):
        days = (now - started).days
        alerts.append(AlertRequest(AlertKind.LONG_FLARE, f"in a flare for {days} days"))
        events.append(PacingEvent("long-flare-alert", f"flare has lasted {days} days"))
        state = state.evolve(flare_alerted=True)
    return state


def _may_send_now(
    state: PacingState, rules: PacingRules, clock: PatientClock, *, now: datetime
) -> bool:
    """In the window, not before the patient's chosen time, and the cadence allows today
    (a timer wake-up or a reply at 08:30 must not send ahead of a 10:00 send time)."""
    today = clock.local_date(now)
    return (
        clock.in_window(now)
        and now >= clock.slot(today)
        and today >= _earliest_send_day(state, rules, today)
    )


def _choose_send(
    state: PacingState, shape: ProgramShape, today: date, events: list[PacingEvent]
) -> tuple[PacingState, PlannedSend | None]:
    if state.state == S.FLARE and shape.flare_steps > 0:
        index = _flare_index(state.flare_position, shape.flare_steps)
        send = PlannedSend(Track.FLARE, index, state.flare_sent, today)
        events.append(PacingEvent("send-flare", f"flare support {index + 1}/{shape.flare_steps}"))
        return _after_flare_send(state, today), send
    if state.state == S.FLARE:
        return state, None
    if state.resume_pending:
        send = PlannedSend(Track.FLARE, shape.flare_steps, state.flare_sent, today, resume=True)
        events.append(PacingEvent("send-resume", "welcome back to the main track"))
        new = _after_flare_send(state, today).evolve(resume_pending=False)
        return new, send
    if state.main_position < shape.main_steps:
        send = PlannedSend(Track.MAIN, state.main_position, 0, today)
        events.append(PacingEvent("send-main", f"main step {state.main_position + 1}"))
        new = state.evolve(main_position=state.main_position + 1, last_program_send_on=today)
        return new, send
    return state, None


def _after_flare_send(state: PacingState, today: date) -> PacingState:
    return state.evolve(
        flare_position=state.flare_position + 1,
        flare_sent=state.flare_sent + 1,
        last_program_send_on=today,
    )


def _flare_index(position: int, count: int) -> int:
    """First message of every flare is the first flare step; later ones cycle past it."""
    if position == 0 or count == 1:
        return 0
    return 1 + (position - 1) % (count - 1)


def _gap_days(state: PacingState, rules: PacingRules) -> int:
    """Support and the welcome back go out the next day; the rest follows the cadence."""
    if state.resume_pending or (state.state == S.FLARE and state.flare_position == 0):
        return 1
    if state.state == S.FLARE:
        return max(rules.flare_cadence_days, state.cadence_days)
    return state.cadence_days


def _earliest_send_day(state: PacingState, rules: PacingRules, today: date) -> date:
    if state.last_program_send_on is None:
        return today
    return state.last_program_send_on + timedelta(days=_gap_days(state, rules))


def _next_wakeup(
    state: PacingState,
    rules: PacingRules,
    shape: ProgramShape,
    clock: PatientClock,
    *,
    now: datetime,
) -> datetime:
    """Next send slot, or earlier when a flare timer (resume, long-flare alert) falls due."""
    wakes: list[datetime] = []
    if state.state != S.FLARE or shape.flare_steps > 0:  # a flare without support only waits
        not_before = _earliest_send_day(state, rules, clock.local_date(now))
        wakes.append(clock.next_slot(now, not_before_day=not_before))
    if state.state == S.FLARE:
        started = state.flare_started_at or now
        quiet_since = state.last_flare_signal_at or started
        timers = [quiet_since + timedelta(days=rules.resume_after_days)]
        if not state.flare_alerted:
            timers.append(started + timedelta(days=rules.long_flare_alert_days))
        wakes.extend(t for t in timers if t > now)
    return min(wakes)
