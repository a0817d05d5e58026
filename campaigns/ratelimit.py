"""A global per-channel send rate shared by every worker.

Celery's own ``rate_limit`` is per worker process, so N workers would send N times the
provider's allowance; a token bucket in Redis, updated atomically by a Lua script using
Redis's clock, is shared by all of them. Without Redis (the embedded default) the bucket
lives in the process, which is right when there is only one process.

At high rates a Redis round trip per message cost a sending process more CPU than the send
itself, so above 200/s tokens are taken a hundredth of a second's worth at a time
(``block_size``) and handed out by the process; the bucket then refills a little slower
and holds that much more, so no second ever holds more than ``floor(rate) + 1`` sends
either way (``RateLimiter``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis

from campaigns.enums import Channel

_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local most = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or math.min(1, burst)
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local half = math.max(1, math.floor(most / 2))
if tokens < 1 - 1e-9 then return {0, tostring((half - tokens) / rate)} end
local granted = math.max(1, math.min(most, math.floor(tokens + 1e-9)))
tokens = math.max(0, tokens - granted)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
return {granted, '0'}
"""


_EPSILON = 1e-9
#: Tokens are taken this many seconds' worth at a time (a hundredth of a second); below
#: 200/s that is one, so a low rate behaves exactly as a token per message.
BLOCK_SECONDS = 0.01


class Bucket(Protocol):
    def take(self, key: str, rate: float, burst: float, most: int = 1) -> tuple[int, float]:
        """Up to ``most`` tokens: ``(granted, 0.0)``; with none, ``(0, seconds)`` until half
        of ``most`` have accrued, so a sender the rate holds back asks about once per half
        block, and a late wake-up still finds room in the bucket for what accrued meanwhile."""
        ...


class RedisBucket:
    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_LUA)

    def take(self, key: str, rate: float, burst: float, most: int = 1) -> tuple[int, float]:
        granted, wait = self._script(keys=[f"campaigns:rate:{key}"], args=[rate, burst, most])
        return int(granted), float(wait)


class LocalBucket:
    """In-process bucket with an injectable clock (tests drive it without sleeping)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate: float, burst: float, most: int = 1) -> tuple[int, float]:
        with self._lock:
            now = self._clock()
            tokens, ts = self._state.get(key, (min(1.0, burst), now))
            tokens = min(burst, tokens + max(0.0, now - ts) * rate)
            if tokens < 1 - _EPSILON:  # float residue must not leave a waiter spinning
                return 0, (max(1, most // 2) - tokens) / rate
            granted = max(1, min(most, math.floor(tokens + _EPSILON)))
            self._state[key] = (max(0.0, tokens - granted), now)
            return granted, 0.0


def block_size(rate: float) -> int:
    """Tokens taken per bucket call: ``BLOCK_SECONDS`` of the rate, at least one."""
    return max(1, math.floor(rate * BLOCK_SECONDS))


def bucket_terms(rate: float) -> tuple[int, float, float]:
    """(block size, refill rate, capacity) of the bucket behind ``rate``: see ``RateLimiter``."""
    most = block_size(rate)
    if most == 1:
        return 1, rate, lateness_allowance(rate)
    return most, (rate - (most - 1)) / (1 + most / rate), (most - 1) + lateness_allowance(rate)


def lateness_allowance(rate: float) -> float:
    """The bucket's capacity: one token, plus what a sender that wakes late may catch up on.

    With exactly one, every moment a sender oversleeps (or waits for the CPU) is lost for
    good, and at 150/s a loaded machine sent 7% under the rate. A little more lets the
    bucket keep what accrued meanwhile, while any second still holds at most
    ``floor(rate) + 1`` sends, as with one: ``capacity + rate`` stays below ``floor(rate) + 2``.
    """
    return 1.0 + max(0.0, min(0.9, 0.95 - (rate - math.floor(rate))))


@dataclass
class _Spare:
    """Tokens of a block this process took but has not handed out yet."""

    count: int
    until: float


@dataclass
class RateLimiter:
    """Blocks a sender until its channel has a token; never more than ``floor(rate) + 1``
    in any second (``burst``, the bucket's capacity, defaults to ``lateness_allowance``).

    A block of ``k = block_size(rate)`` tokens is one grant of k sends, handed out within
    its own duration ``k / rate`` (what is left then is dropped, never spent late). So that
    no second of hand-outs, in however many processes, holds more than ``floor(rate) + 1``,
    the bucket holds ``k - 1`` more and refills at ``(rate - (k - 1)) / (1 + k / rate)``:
    a second of hand-outs draws on at most ``1 + k / rate`` seconds of grants, which is then
    ``(k - 1) + lateness + rate - (k - 1)``, the bound of one token at a time. The price is
    running up to 2% under the rate.
    """

    bucket: Bucket
    rates: dict[Channel, float]
    burst: float | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _spare: dict[Channel, _Spare] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _asking: dict[Channel, threading.Lock] = field(default_factory=dict, init=False, repr=False)
    _terms: dict[Channel, tuple[int, float, float]] = field(
        default_factory=dict, init=False, repr=False
    )

    def wait(self, channel: Channel) -> float:
        """Returns the seconds spent waiting, for metrics. With blocks, one thread per
        channel asks the bucket (and sleeps when told to) while the process's other senders
        wait for what it brings back: sixteen threads polling Redis for the same tokens cost
        CPU for nothing. A token at a time (below 200/s) goes straight to the bucket, as it
        always has: nothing between the grant and the send."""
        terms = self._terms.get(channel) or self._terms.setdefault(
            channel, bucket_terms(self.rates[channel])
        )
        if terms[0] == 1:
            return self._ask(channel, *terms)
        if self._take_spare(channel):
            return 0.0
        started = self.clock()
        with self._lock:
            asking = self._asking.setdefault(channel, threading.Lock())
        with asking:
            if not self._take_spare(channel):
                self._ask(channel, *terms)
        return max(0.0, self.clock() - started)

    def _ask(self, channel: Channel, most: int, refill: float, capacity: float) -> float:
        burst = self.burst if self.burst is not None else capacity
        waited = 0.0
        while True:
            granted, delay = self.bucket.take(channel.value, refill, burst, most)
            if granted:
                break
            self.sleep(delay)
            waited += delay
        if granted > 1:
            with self._lock:
                until = self.clock() + most / self.rates[channel]  # the block's own duration
                self._spare[channel] = _Spare(granted - 1, until)
        return waited

    def _take_spare(self, channel: Channel) -> bool:
        with self._lock:
            spare = self._spare.get(channel)
            if spare is None or spare.count < 1 or self.clock() > spare.until:
                return False
            spare.count -= 1
            return True


def limiter_for(
    redis_url: str | None, sms_per_second: float, email_per_second: float
) -> RateLimiter:
    bucket: Bucket = RedisBucket(redis.Redis.from_url(redis_url)) if redis_url else LocalBucket()
    return RateLimiter(bucket, {Channel.SMS: sms_per_second, Channel.EMAIL: email_per_second})
