"""The in-process token bucket, driven by a fake clock."""

from __future__ import annotations

import itertools

from campaigns.enums import Channel
from campaigns.ratelimit import LocalBucket, RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bucket_grants_one_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    bucket = LocalBucket(clock)
    assert bucket.try_acquire("sms", 2.0, 1.0) == 0.0
    assert bucket.try_acquire("sms", 2.0, 1.0) == 0.5
    clock.now = 0.5
    assert bucket.try_acquire("sms", 2.0, 1.0) == 0.0


def test_channels_have_separate_buckets() -> None:
    bucket = LocalBucket(FakeClock())
    assert bucket.try_acquire("sms", 1.0, 1.0) == 0.0
    assert bucket.try_acquire("email", 1.0, 1.0) == 0.0


def test_limiter_never_exceeds_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(LocalBucket(clock), {Channel.SMS: 3.0}, sleep=clock.sleep)
    grants = []
    for _ in range(31):
        limiter.wait(Channel.SMS)
        grants.append(clock.now)
    assert grants[0] == 0.0
    assert abs(grants[-1] - 10.0) < 1e-6  # 30 intervals at 3/s
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert min(gaps) >= 1 / 3 - 1e-9
