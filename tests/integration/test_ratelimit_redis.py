"""The global rate limit is shared through real Redis by concurrent senders."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from campaigns.enums import Channel
from campaigns.ratelimit import RateLimiter, RedisBucket
from tests.conftest import REDIS_URL, require_service


@pytest.fixture
def client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        require_service("Redis", exc)
    return client


def test_three_senders_together_stay_within_the_global_rate(client: redis.Redis) -> None:
    rate, per_sender = 40.0, 20
    channel_key = Channel.SMS
    bucket = RedisBucket(client)
    key = f"test-{uuid.uuid4().hex}"
    stamps: list[float] = []
    lock = threading.Lock()

    class KeyedBucket:
        def try_acquire(self, _key: str, r: float, burst: float) -> float:
            return bucket.try_acquire(key, r, burst)

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
