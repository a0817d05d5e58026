"""Replay one enrollment over simulated time, the way the scheduler and inbound handling would.

Pure: no database, no clock, no I/O. The scheduler wakes an enrollment exactly at its
``next_due_at``; replies are applied at their timestamps, interleaved with those wake-ups. It
backs the property tests, the demo and "what if" questions about a program's pacing rules.

Ordering at one instant: an opt-out is honoured before anything else due then, and a wake-up
due at a reply's timestamp runs before the reply (the scheduler got there first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from campaigns.enums import EnrollmentState
from campaigns.pacing import (
    AlertRequest,
    Outcome,
    PacingEvent,
    PacingRules,
    PacingState,
    PlannedSend,
    ProgramShape,
    advance,
    apply_reply,
    opt_in,
    opt_out,
)
from campaigns.pacing import start as start_pacing
from campaigns.replies import Keyword, ParsedReply
from campaigns.sendwindow import PatientClock

#: Actors, as the production code records them.
SCHEDULER = "scheduler"
PATIENT = "patient"
#: A healthy enrollment wakes a few times a day at most; far more means pacing is spinning.
MAX_WAKEUPS_PER_DAY = 48


class SimulationStuck(RuntimeError):
    """Pacing failed to move an enrollment's wake-up forward: a pacing bug, not bad input."""


@dataclass(frozen=True)
class TimedSend:
    """A program message planned at ``at`` (the scheduler's ``now``, a UTC-comparable instant)."""

    at: datetime
    send: PlannedSend


@dataclass(frozen=True)
class TimedEvent:
    at: datetime
    actor: str
    event: PacingEvent


@dataclass(frozen=True)
class TimedAlert:
    at: datetime
    alert: AlertRequest


@dataclass(frozen=True)
class StateChange:
    """The enrollment entered ``state`` at ``at``."""

    at: datetime
    state: EnrollmentState


@dataclass(frozen=True)
class SimulationResult:
    """Everything that happened in ``[start, end)``, in time order."""

    start: datetime
    end: datetime
    sends: tuple[TimedSend, ...]
    events: tuple[TimedEvent, ...]
    alerts: tuple[TimedAlert, ...]
    states: tuple[StateChange, ...]
    final: PacingState
    wakeups: int

    @property
    def completed_at(self) -> datetime | None:
        """When the last main-track step completed the program, if it did."""
        done = [c.at for c in self.states if c.state == EnrollmentState.COMPLETED]
        return done[0] if done else None


def simulate(
    rules: PacingRules,
    shape: ProgramShape,
    clock: PatientClock,
    *,
    start: datetime,
    days: int,
    replies: Sequence[tuple[datetime, ParsedReply]],
    opt_out_at: datetime | None = None,
    prior_scores: Sequence[float] = (),
) -> SimulationResult:
    """Enroll at ``start`` and run ``days`` days of scheduler wake-ups and replies.

    ``replies`` (any order; ties keep their given order) and ``opt_out_at`` must fall within
    ``[start, start + days)``. STOP and START in a reply act on consent as inbound handling
    does. ``prior_scores`` are pain scores reported before enrollment, oldest first.
    Raises :class:`SimulationStuck` if pacing does not move a wake-up forward.
    """
    end = start + timedelta(days=days)
    inputs = _inputs(start, end, replies, opt_out_at)
    budget = MAX_WAKEUPS_PER_DAY * (days + 1) + 2 * len(inputs)
    run = _Run(rules, shape, clock, start=start, prior_scores=prior_scores, budget=budget)
    for at, reply in inputs:
        run.wake_until(at, inclusive=reply is not None)
        if reply is None:
            run.opt_out(at)
        else:
            run.reply(at, reply)
    run.wake_until(end, inclusive=False)
    return run.result(end)


def _inputs(
    start: datetime,
    end: datetime,
    replies: Sequence[tuple[datetime, ParsedReply]],
    opt_out_at: datetime | None,
) -> list[tuple[datetime, ParsedReply | None]]:
    """Replies and the opt-out (as ``None``) in time order; at a tie the opt-out goes first."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if end < start:
        raise ValueError("days must not be negative")
    items: list[tuple[datetime, ParsedReply | None]] = (
        [] if opt_out_at is None else [(opt_out_at, None)]
    )
    items.extend(replies)
    for at, _ in items:
        if at.tzinfo is None or not start <= at < end:
            raise ValueError(f"{at.isoformat()} is outside the simulated period or naive")
    return sorted(items, key=lambda item: item[0])


class _Run:
    """Mutable bookkeeping of one simulation; only :func:`simulate` touches it."""

    def __init__(
        self,
        rules: PacingRules,
        shape: ProgramShape,
        clock: PatientClock,
        *,
        start: datetime,
        prior_scores: Sequence[float],
        budget: int,
    ) -> None:
        self.rules, self.shape, self.clock, self.start = rules, shape, clock, start
        self.state = start_pacing(rules, clock, now=start)
        self.scores = list(prior_scores)
        self.sends: list[TimedSend] = []
        self.events: list[TimedEvent] = []
        self.alerts: list[TimedAlert] = []
        self.states = [StateChange(start, self.state.state)]
        self.wakeups = 0
        self.budget = budget

    def wake_until(self, limit: datetime, *, inclusive: bool) -> None:
        """Run every wake-up due before ``limit`` (or at it, when ``inclusive``)."""
        while (due := self.state.next_due_at) is not None and (
            due < limit or (inclusive and due == limit)
        ):
            self._wake(due)

    def _wake(self, now: datetime) -> None:
        self.wakeups += 1
        if self.wakeups > self.budget:
            raise SimulationStuck(f"more than {self.budget} wake-ups; pacing is spinning")
        outcome = advance(self.state, self.rules, self.shape, self.clock, now=now)
        self._record(now, SCHEDULER, outcome)
        nxt = self.state.next_due_at
        if nxt is not None and nxt <= now:
            raise SimulationStuck(
                f"wake-up at {now.isoformat()} left next_due_at at {nxt.isoformat()} "
                f"(state {self.state.state}, main {self.state.main_position}, "
                f"flare {self.state.flare_position})"
            )

    def reply(self, at: datetime, reply: ParsedReply) -> None:
        """What inbound handling does with a reply's pacing-relevant parts."""
        prior = self.scores[-self.rules.baseline_window :]
        if reply.pain_score is not None:
            self.scores.append(reply.pain_score)
        if Keyword.STOP in reply.keywords:
            self._record(at, PATIENT, opt_out(self.state, "patient sent STOP"))
            return
        if Keyword.START in reply.keywords:
            self._record(at, PATIENT, opt_in(self.state, "patient sent START", now=at))
        outcome = apply_reply(self.state, reply, prior, self.rules, self.shape, now=at)
        self._record(at, PATIENT, outcome)

    def opt_out(self, at: datetime) -> None:
        self._record(at, PATIENT, opt_out(self.state, "patient opted out"))

    def _record(self, at: datetime, actor: str, outcome: Outcome) -> None:
        if outcome.send is not None:
            self.sends.append(TimedSend(at, outcome.send))
        self.events.extend(TimedEvent(at, actor, ev) for ev in outcome.events)
        self.alerts.extend(TimedAlert(at, alert) for alert in outcome.alerts)
        if outcome.state.state != self.state.state:
            self.states.append(StateChange(at, outcome.state.state))
        self.state = outcome.state

    def result(self, end: datetime) -> SimulationResult:
        return SimulationResult(
            start=self.start,
            end=end,
            sends=tuple(self.sends),
            events=tuple(self.events),
            alerts=tuple(self.alerts),
            states=tuple(self.states),
            final=self.state,
            wakeups=self.wakeups,
        )
