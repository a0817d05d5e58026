"""B5 global rate limit: two senders share one RedisBucket key; the achieved rate must be
within 5% of the target and no window may hold more grants than the rate allows. Baseline:
a per-worker limit (each sender its own in-process bucket), which Celery's rate_limit is."""

from __future__ import annotations

import threading
import time
import uuid

import redis

from bench.common import REDIS_URL, Figure
from campaigns.enums import Channel
from campaigns.ratelimit import Bucket, LocalBucket, RateLimiter, RedisBucket

RATES = (1.0, 3.0, 30.0, 150.0)
SENDERS = 2


class _Prefixed:
    """Keeps the benchmark's keys apart from a running service's."""

    def __init__(self, bucket: Bucket, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix

    def take(self, key: str, rate: float, burst: float, most: int = 1) -> tuple[int, float]:
        return self.bucket.take(f"{self.prefix}:{key}", rate, burst, most)


def _drive(buckets: list[Bucket], rate: float, seconds: float) -> list[float]:
    grants: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def sender(bucket: Bucket) -> None:
        limiter = RateLimiter(bucket, {Channel.SMS: rate, Channel.EMAIL: rate})
        while True:
            limiter.wait(Channel.SMS)
            now = time.monotonic()
            if now >= stop:
                return
            with lock:
                grants.append(now)

    threads = [threading.Thread(target=sender, args=(b,)) for b in buckets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(grants)


def achieved(grants: list[float]) -> float:
    if len(grants) < 2:
        return 0.0
    return (len(grants) - 1) / (grants[-1] - grants[0])


def worst_window_excess(grants: list[float], rate: float, window: float = 1.0) -> int:
    """Most grants in any ``window`` seconds minus what burst 1 allows (<= 0 is compliant)."""
    allowed = int(window * rate) + 1
    worst, j = 0, 0
    for i, t in enumerate(grants):
        while grants[j] < t - window:
            j += 1
        worst = max(worst, i - j + 1)
    return worst - allowed


def redis_ceiling(client: redis.Redis, seconds: float = 1.0) -> float:
    bucket = RedisBucket(client)
    key = f"bench:{uuid.uuid4().hex}:ceiling"
    n, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        bucket.take(key, 1e9, 1e9)
        n += 1
    return n / seconds


def run(*, smoke: bool) -> list[Figure]:
    client = redis.Redis.from_url(REDIS_URL)
    ceiling = redis_ceiling(client, 0.5 if smoke else 1.0)
    figures: list[Figure] = []
    for rate in RATES:
        seconds = 1.5 if smoke else (6.0 if rate < 5 else 5.0)
        prefix = f"bench:{uuid.uuid4().hex}"
        ours_buckets: list[Bucket] = [
            _Prefixed(RedisBucket(redis.Redis.from_url(REDIS_URL)), prefix) for _ in range(SENDERS)
        ]
        grants = _drive(ours_buckets, rate, seconds)
        base = _drive([LocalBucket() for _ in range(SENDERS)], rate, min(seconds, 2.0))
        got = achieved(grants)
        excess = worst_window_excess(grants, rate)
        within = abs(got / rate - 1) <= 0.05 if got else False
        figures.append(
            Figure(
                workload="B5",
                db="redis",
                size=int(rate),
                metric=f"rate at {rate:g}/s",
                unit="msg/s",
                better="target",
                ours=got,
                baseline=achieved(base),
                baseline_desc=f"per-worker limit ({SENDERS} senders, own bucket each)",
                ceiling=ceiling,
                ceiling_desc="RedisBucket acquisitions/s, unthrottled (Lua round trips)",
                goal="within 5% of target, never above (1 s windows)",
                goal_met=within and excess <= 0,
                extra={
                    "grants": len(grants),
                    "seconds": seconds,
                    "window_excess": excess,
                    "error_pct": (got / rate - 1) * 100 if got else None,
                },
            )
        )
    client.close()
    return figures
