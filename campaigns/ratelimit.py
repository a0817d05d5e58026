"""A global per-channel send rate shared by every worker.

Celery's own ``rate_limit`` is per worker process, so N workers would send N times the
provider's allowance; a token bucket in Redis, updated atomically by a Lua script using
Redis's clock, is shared by all of them. Without Redis (the embedded default) the bucket
lives in the process, which is right when there is only one process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from campaigns.enums import Channel

_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or math.min(1, burst)
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 - 1e-9 then tokens = math.max(0, tokens - 1) else wait = (1 - tokens) / rate end
if wait == 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
end
return tostring(wait)
"""


_EPSILON = 1e-9


class Bucket(Protocol):
    def try_acquire(self, key: str, rate: float, burst: float) -> float:
        """Take one token: 0.0 if granted, else the seconds to wait before trying again."""
        ...


class RedisBucket:
    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_LUA)

    def try_acquire(self, key: str, rate: float, burst: float) -> float:
        return float(self._script(keys=[f"campaigns:rate:{key}"], args=[rate, burst]))


class LocalBucket:
    """In-process bucket with an injectable clock (tests drive it without sleeping)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def try_acquire(self, key: str, rate: float, burst: float) -> float:
        with self._lock:
            now = self._clock()
            tokens, ts = self._state.get(key, (min(1.0, burst), now))
            tokens = min(burst, tokens + max(0.0, now - ts) * rate)
            if tokens < 1 - _EPSILON:  # float residue must not leave a waiter spinning
                return (1 - tokens) / rate
            self._state[key] = (max(0.0, tokens - 1), now)
            return 0.0


def lateness_allowance(rate: float) -> float:
    """The bucket's capacity: one token, plus what a sender that wakes late may catch up on.

    With exactly one, every moment a sender oversleeps (or waits for the CPU) is lost for
    good, and at 150/s a loaded machine sent 7% under the rate. A little more lets the
    bucket keep what accrued meanwhile, while any second still holds at most
    ``floor(rate) + 1`` sends, as with one: ``capacity + rate`` stays below ``floor(rate) + 2``.
    """
    return 1.0 + max(0.0, min(0.9, 0.95 - (rate - math.floor(rate))))


@dataclass
class RateLimiter:
    """Blocks a sender until its channel has a token; never more than ``floor(rate) + 1``
    in any second (``burst``, the bucket's capacity, defaults to ``lateness_allowance``)."""

    bucket: Bucket
    rates: dict[Channel, float]
    burst: float | None = None
    sleep: Callable[[float], None] = time.sleep

    def wait(self, channel: Channel) -> float:
        """Returns the seconds spent waiting, for metrics."""
        rate = self.rates[channel]
        burst = self.burst if self.burst is not None else lateness_allowance(rate)
        waited = 0.0
        while (delay := self.bucket.try_acquire(channel.value, rate, burst)) > 0:
            self.sleep(delay)
            waited += delay
        return waited


def limiter_for(
    redis_url: str | None, sms_per_second: float, email_per_second: float
) -> RateLimiter:
    bucket: Bucket = RedisBucket(redis.Redis.from_url(redis_url)) if redis_url else LocalBucket()
    return RateLimiter(bucket, {Channel.SMS: sms_per_second, Channel.EMAIL: email_per_second})
