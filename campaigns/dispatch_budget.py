"""How many planned messages may wait in the broker at once, per channel.

The database is the real queue; the broker only needs enough work to keep the senders busy
until the next tick. Handing out more is worse than useless under a rate limit: a 10k
backlog at a long code's 1 message/s takes hours to drain, and a tick that hands every
planned row out again once it looks lost would fill Redis with copies of the same ids.
So each channel may have at most ``rate x horizon`` messages handed out and not yet sent,
and each one carries a lease (when it should have been sent, given its place in line)
before which it is not handed out again.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from campaigns.enums import Channel

#: A planned row not sent this long after it was due (or after its lease ran out) is handed
#: to a send task again.
REDISPATCH_AFTER = timedelta(minutes=2)


def horizon_for(tick_seconds: float) -> timedelta:
    """Enough queued work to outlast the next tick, and to reach the moment rows left
    waiting in the database become eligible again (``REDISPATCH_AFTER`` after planning)."""
    tick = timedelta(seconds=tick_seconds)
    return max(2 * tick, REDISPATCH_AFTER + tick)


@dataclass
class DispatchBudget:
    """Per channel: messages per second the senders may send (absent: unlimited) and how
    many are handed out now; ``take`` admits what fits and says how long it may take."""

    rates: Mapping[Channel, float]
    horizon: timedelta
    in_flight: dict[Channel, int] = field(default_factory=dict)

    def capacity(self, channel: Channel) -> float:
        rate = self.rates.get(channel)
        if rate is None:
            return math.inf
        return max(1.0, math.ceil(rate * self.horizon.total_seconds()))

    def room(self, channel: Channel) -> float:
        """How many more may be handed out (``inf`` without a rate)."""
        return max(0.0, self.capacity(channel) - self.in_flight.get(channel, 0))

    def take(self, channel: Channel, wanted: int, *, now: datetime) -> tuple[int, datetime]:
        """Admit up to ``wanted``; returns how many and their lease: how long everything
        handed out takes at the rates, plus the grace any row gets before it counts as lost.

        Every channel's share counts, not only this one's: a send task holds messages of
        both channels, and one waiting for an SMS token may hold up emails behind it."""
        admitted = int(min(wanted, self.room(channel)))
        self.in_flight[channel] = self.in_flight.get(channel, 0) + admitted
        return admitted, now + self.drain_time() + REDISPATCH_AFTER

    def leases(self, channels: Sequence[Channel], *, now: datetime) -> list[datetime | None]:
        """The lease each new row of a batch is inserted with, in order; ``None`` for the
        rows left waiting in the database. Taken before the insert, so a row is planned and
        handed out in one write instead of an insert and an update."""
        positions: dict[Channel, list[int]] = defaultdict(list)
        for position, channel in enumerate(channels):
            positions[channel].append(position)
        result: list[datetime | None] = [None] * len(channels)
        for channel, places in positions.items():
            count, lease_until = self.take(channel, len(places), now=now)
            for position in places[:count]:
                result[position] = lease_until
        return result

    def drain_time(self) -> timedelta:
        """How long what is handed out takes to send, channel after channel."""
        seconds = sum(
            count / rate
            for channel, count in self.in_flight.items()
            if (rate := self.rates.get(channel))
        )
        return timedelta(seconds=seconds)


def unlimited() -> DispatchBudget:
    """Every planned row handed out at once (no rate to respect)."""
    return DispatchBudget(rates={}, horizon=timedelta(0))
