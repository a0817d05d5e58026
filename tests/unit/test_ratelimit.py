"""The in-process token bucket, driven by a fake clock."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest

from campaigns.enums import Channel
from campaigns.ratelimit import (
    LocalBucket,
    RateLimiter,
    block_size,
    bucket_terms,
    lateness_allowance,
)


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
    assert bucket.take("sms", 2.0, 1.0) == (1, 0.0)
    assert bucket.take("sms", 2.0, 1.0) == (0, 0.5)
    clock.now = 0.5
    assert bucket.take("sms", 2.0, 1.0) == (1, 0.0)


def test_channels_have_separate_buckets() -> None:
    bucket = LocalBucket(FakeClock())
    assert bucket.take("sms", 1.0, 1.0) == (1, 0.0)
    assert bucket.take("email", 1.0, 1.0) == (1, 0.0)


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


class LateClock(FakeClock):
    """A sender that wakes ``late`` seconds after it asked to (a loaded machine)."""

    def __init__(self, late: Callable[[], float]) -> None:
        super().__init__()
        self.late = late

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.late()


def _most_in_a_second(grants: list[float]) -> int:
    most, j = 0, 0
    for i, t in enumerate(grants):
        while grants[j] < t - 1.0 - 1e-9:
            j += 1
        most = max(most, i - j + 1)
    return most


def test_a_sender_that_wakes_late_still_keeps_the_rate() -> None:
    """Oversleeping 2 ms per wait at 150/s lost ~23% with a one-token bucket."""
    clock = LateClock(lambda: 0.002)
    limiter = RateLimiter(LocalBucket(clock), {Channel.SMS: 150.0}, sleep=clock.sleep)
    grants = []
    for _ in range(1501):
        limiter.wait(Channel.SMS)
        grants.append(clock.now)
    achieved = 1500 / (grants[-1] - grants[0])
    assert 150 * 0.99 <= achieved <= 150.0 + 1e-6
    assert _most_in_a_second(grants) <= 151


@pytest.mark.parametrize("rate", [1.0, 2.5, 2.99, 3.0, 30.0, 149.7, 150.0])
def test_no_second_ever_holds_more_than_floor_rate_plus_one(rate: float) -> None:
    rng = random.Random(int(rate * 100))
    clock = LateClock(lambda: rng.choice([0.0, 0.0, 0.001, 0.004, 0.02, 0.3]))
    limiter = RateLimiter(LocalBucket(clock), {Channel.SMS: rate}, sleep=clock.sleep)
    grants = []
    for _ in range(int(rate * 20) + 5):
        limiter.wait(Channel.SMS)
        grants.append(clock.now)
        if rng.random() < 0.05:  # now and then the sender has nothing to send for a while
            clock.now += rng.uniform(0, 3)
    assert _most_in_a_second(grants) <= math.floor(rate) + 1
    assert lateness_allowance(rate) >= 1.0


def test_a_bucket_grants_at_most_what_it_holds_and_what_was_asked() -> None:
    clock = FakeClock()
    bucket = LocalBucket(clock)
    assert bucket.take("sms", 100.0, 10.0, most=5) == (1, 0.0), "a new bucket holds one"
    clock.now = 1.0  # refilled to its capacity of 10
    assert bucket.take("sms", 100.0, 10.0, most=4) == (4, 0.0)
    assert bucket.take("sms", 100.0, 10.0, most=50) == (6, 0.0)
    granted, wait = bucket.take("sms", 100.0, 10.0, most=1)
    assert granted == 0 and wait == pytest.approx(0.01)
    granted, wait = bucket.take("sms", 100.0, 10.0, most=8)
    assert granted == 0 and wait == pytest.approx(0.04), "until half the block has accrued"


def test_blocks_are_a_hundredth_of_a_second_and_one_below_200_per_second() -> None:
    assert [block_size(r) for r in (1, 3, 30, 150, 199.9, 200, 250.5, 10_000)] == [
        1, 1, 1, 1, 1, 2, 2, 100,
    ]  # fmt: skip


class CountingBucket(LocalBucket):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls = 0

    def take(self, key: str, rate: float, burst: float, most: int = 1) -> tuple[int, float]:
        self.calls += 1
        return super().take(key, rate, burst, most)


@pytest.mark.parametrize("rate", [200.0, 250.5, 1000.0, 4321.5, 10_000.0])
@pytest.mark.parametrize("send_cost", [0.0, 0.5, 0.95])
def test_high_rates_ask_the_bucket_per_block_yet_no_second_holds_more(
    rate: float, send_cost: float
) -> None:
    """Each send takes ``send_cost / rate`` s, so a block's tokens are handed out over time,
    and the sender sometimes wakes late: still at most floor(rate) + 1 sends in any second,
    at least 97.5% of the rate, and a bucket call per block or so, not per send."""
    rng = random.Random(int(rate * 10 + send_cost * 100))
    clock = LateClock(lambda: rng.choice([0.0, 0.0, 0.0005, 0.002]))
    bucket = CountingBucket(clock)
    limiter = RateLimiter(bucket, {Channel.SMS: rate}, sleep=clock.sleep, clock=clock)
    sends = []
    for _ in range(int(rate * 4)):
        limiter.wait(Channel.SMS)
        sends.append(clock.now)
        clock.now += send_cost / rate
    assert _most_in_a_second(sends) <= math.floor(rate) + 1
    achieved = (len(sends) - 1) / (sends[-1] - sends[0])
    assert rate * 0.975 <= achieved <= rate
    # a refusal, then what accrued: half a block or more once the sender waits for it
    assert bucket.calls <= 8 * len(sends) / block_size(rate) + 2


def test_a_block_s_tokens_are_dropped_once_its_time_has_passed() -> None:
    """A sender that stops for a while must not come back and spend old tokens at once."""
    clock = FakeClock()
    bucket = CountingBucket(clock)
    limiter = RateLimiter(bucket, {Channel.SMS: 1000.0}, sleep=clock.sleep, clock=clock)
    limiter.wait(Channel.SMS)  # a new bucket holds one token
    clock.now = 5.0  # now it is full: a block of 10, 9 of them spare
    limiter.wait(Channel.SMS)
    limiter.wait(Channel.SMS)
    assert bucket.calls == 2
    clock.now += 0.011  # past the block's 10 ms
    limiter.wait(Channel.SMS)
    assert bucket.calls == 3


@pytest.mark.parametrize("rate", [200.0, 250.5, 999.9, 4321.5, 10_000.0])
@pytest.mark.parametrize("late", ["any-block", "a-full-bucket-s-first"])
def test_blocks_from_many_processes_spent_as_late_as_allowed_keep_every_second(
    rate: float, late: str
) -> None:
    """The worst the limiter allows: three processes take blocks whenever the bucket has
    tokens, and some blocks are spent at the last moment their duration allows (any of
    them, at random; or those of a full bucket's first moments, the rest at once)."""
    rng = random.Random(int(rate))
    most, refill, capacity = bucket_terms(rate)
    clock = FakeClock()
    bucket = LocalBucket(clock)
    bucket.take("sms", refill, capacity, most)
    clock.now = start = 5.0  # full
    spent: list[float] = []
    while clock.now < start + 3.0:
        for _process in range(3):
            granted, _ = bucket.take("sms", refill, capacity, most)
            early = clock.now < start + most / rate
            is_late = rng.random() < 0.5 if late == "any-block" else early
            spent += [clock.now + (most / rate if is_late else 0.0)] * granted
        clock.now += rng.choice([0.0001, 0.001, 0.003])
    spent.sort()
    assert _most_in_a_second(spent) <= math.floor(rate) + 1
    assert len(spent) / 3.0 >= rate * 0.97


def test_without_the_slower_refill_late_blocks_would_break_the_bound() -> None:
    """The check above can fail: with the plain rate as refill, the blocks of a full
    bucket's first 10 ms spent late and the next second's spent at once overflow it."""
    rate = 1000.0
    most, _, capacity = bucket_terms(rate)
    clock = FakeClock()
    bucket = LocalBucket(clock)
    bucket.take("sms", rate, capacity, most)
    clock.now = start = 5.0  # full
    late_until = start + most / rate
    spent: list[float] = []
    while clock.now < start + 2.0:
        granted, _ = bucket.take("sms", rate - (most - 1), capacity, most)
        spent += [clock.now + most / rate if clock.now < late_until else clock.now] * granted
        clock.now += 0.0001
    spent.sort()
    assert _most_in_a_second(spent) > math.floor(rate) + 1
