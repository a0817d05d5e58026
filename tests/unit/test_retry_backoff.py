"""The outbox's own retry back-off is jittered; a provider's Retry-After is kept as given."""

from __future__ import annotations

from datetime import timedelta

from campaigns.outbox import RETRY_BACKOFF, RETRY_JITTER, retry_delay


def test_backoff_spreads_over_the_jitter_and_never_comes_early() -> None:
    delays = [retry_delay(None, spread=s / 10) for s in range(10)]
    assert delays[0] == RETRY_BACKOFF
    assert all(RETRY_BACKOFF <= d < RETRY_BACKOFF + RETRY_JITTER for d in delays)
    assert len(set(delays)) == 10, "different draws give different delays"
    assert timedelta(seconds=30) <= RETRY_JITTER, "wide enough to land in different ticks"


def test_out_of_range_spread_is_clamped() -> None:
    assert retry_delay(None, spread=-1.0) == RETRY_BACKOFF
    assert retry_delay(None, spread=7.0) == RETRY_BACKOFF + RETRY_JITTER


def test_provider_retry_after_is_exact() -> None:
    assert retry_delay(30.0, spread=0.9) == timedelta(seconds=30)
