"""The global rate limit is shared through real Redis by concurrent senders."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from campaigns.enums import Channel
from campaigns.ratelimit import RateLimiter, RedisBucket
from tests.conftest import REDIS_URL, require_service

#: A gap between two sends this long means nobody could run: the host or the interpreter
#: stood still (at 2,000/s and blocks of 20, sends are ~0.5 ms apart and blocks 10 ms).
STALL = 0.05


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        require_service("Redis", exc)
    yield client
    # The senders' threads opened a connection each: closed here, not by the collector
    # in whichever later test it runs (an unclosed socket warning fails that test).
    client.close()
    client.connection_pool.disconnect()


def test_three_senders_together_stay_within_the_global_rate(client: redis.Redis) -> None:
    rate, per_sender = 40.0, 20
    channel_key = Channel.SMS
    bucket = RedisBucket(client)
    key = f"test-{uuid.uuid4().hex}"
    stamps: list[float] = []
    lock = threading.Lock()

    class KeyedBucket:
        def take(self, _key: str, r: float, burst: float, most: int = 1) -> tuple[int, float]:
            return bucket.take(key, r, burst, most)

    def sender() -> None:
        limiter = RateLimiter(KeyedBucket(), {channel_key: rate})
        for _ in range(per_sender):
            limiter.wait(channel_key)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stamps.sort()
    elapsed = stamps[-1] - stamps[0]
    achieved = (len(stamps) - 1) / elapsed
    assert len(stamps) == 60
    assert achieved <= rate * 1.02
    assert achieved >= rate * 0.8
    client.delete(f"campaigns:rate:{key}")


def test_high_rate_senders_share_blocks_of_tokens_and_keep_every_second_within_the_rate(
    client: redis.Redis,
) -> None:
    """Two sending processes (two limiters) of three threads each at 2,000/s: blocks of 20
    tokens, so Redis is asked about once per block rather than once per message."""
    rate, seconds = 2000.0, 1.5
    bucket = RedisBucket(client)
    key = f"test-{uuid.uuid4().hex}"
    stamps: list[float] = []
    calls = [0]
    lock = threading.Lock()

    class Counted:
        def take(self, _key: str, r: float, burst: float, most: int = 1) -> tuple[int, float]:
            with lock:
                calls[0] += 1
            return bucket.take(key, r, burst, most)

    limiters = [RateLimiter(Counted(), {Channel.SMS: rate}) for _ in range(2)]
    stop = time.monotonic() + seconds

    def sender(limiter: RateLimiter) -> None:
        while time.monotonic() < stop:
            limiter.wait(Channel.SMS)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=sender, args=(lim,)) for lim in limiters for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stamps.sort()
    # Per second, the bound is checked on a simulated clock (tests/unit/test_ratelimit.py);
    # here six threads' stamps trail their grants by thread switches, so the run's average.
    elapsed = stamps[-1] - stamps[0]
    assert (len(stamps) - 1) / elapsed <= rate * 1.002
    # Not under the rate while the senders ran. When the host or the interpreter stands
    # still (a stamp every 0.5 ms, then none for 50 ms or more), nothing can be sent, and by
    # design what accrues meanwhile is not sent late: such stalls (a stop of 0.25 s takes a
    # run to ~85% of the rate) are left out, and must stay rare.
    stalls = [b - a for a, b in itertools.pairwise(stamps) if b - a >= STALL]
    assert sum(stalls) <= elapsed / 4, stalls
    assert (len(stamps) - 1) / (elapsed - sum(stalls)) >= rate * 0.9
    # one per message (and more, refusals) without blocks; two processes competing for the
    # same tokens are refused more often than one
    assert calls[0] <= len(stamps) / 2, "Redis asked per block, not per message"
    client.delete(f"campaigns:rate:{key}")
