"""The dispatch budget: how many messages may wait in the broker, and for how long."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from campaigns.dispatch_budget import REDISPATCH_AFTER, DispatchBudget, horizon_for, unlimited
from campaigns.enums import Channel

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_the_horizon_outlasts_the_next_tick_and_the_redispatch_grace() -> None:
    assert horizon_for(60) == REDISPATCH_AFTER + timedelta(seconds=60)
    assert horizon_for(600) == timedelta(seconds=1200)
    assert horizon_for(2) == REDISPATCH_AFTER + timedelta(seconds=2)


def test_a_channel_gets_rate_times_horizon_and_no_more() -> None:
    budget = DispatchBudget(rates={Channel.SMS: 1.0}, horizon=timedelta(seconds=180))
    admitted, _ = budget.take(Channel.SMS, 150, now=NOW)
    assert admitted == 150
    admitted, _ = budget.take(Channel.SMS, 100, now=NOW)
    assert admitted == 30
    assert budget.take(Channel.SMS, 5, now=NOW)[0] == 0
    assert budget.in_flight == {Channel.SMS: 180}


def test_what_is_already_handed_out_counts() -> None:
    budget = DispatchBudget(
        rates={Channel.SMS: 1.0}, horizon=timedelta(seconds=180), in_flight={Channel.SMS: 170}
    )
    assert budget.room(Channel.SMS) == 10
    assert budget.take(Channel.SMS, 50, now=NOW)[0] == 10


def test_channels_are_budgeted_apart_and_a_missing_rate_is_unlimited() -> None:
    budget = DispatchBudget(rates={Channel.SMS: 0.5}, horizon=timedelta(seconds=60))
    assert budget.take(Channel.SMS, 100, now=NOW)[0] == 30
    assert budget.take(Channel.EMAIL, 100_000, now=NOW)[0] == 100_000
    assert budget.room(Channel.EMAIL) == math.inf


def test_a_slow_rate_still_lets_one_message_out() -> None:
    budget = DispatchBudget(rates={Channel.SMS: 0.001}, horizon=timedelta(seconds=60))
    assert budget.take(Channel.SMS, 10, now=NOW)[0] == 1


def test_the_lease_is_the_last_ones_place_in_line_plus_the_grace() -> None:
    budget = DispatchBudget(
        rates={Channel.SMS: 2.0}, horizon=timedelta(seconds=600), in_flight={Channel.SMS: 100}
    )
    admitted, lease = budget.take(Channel.SMS, 50, now=NOW)
    assert admitted == 50
    assert lease == NOW + timedelta(seconds=150 / 2.0) + REDISPATCH_AFTER


def test_the_lease_covers_every_channel_handed_out() -> None:
    budget = DispatchBudget(
        rates={Channel.SMS: 2.0, Channel.EMAIL: 10.0},
        horizon=timedelta(seconds=600),
        in_flight={Channel.EMAIL: 500},
    )
    _, lease = budget.take(Channel.SMS, 100, now=NOW)
    assert lease == NOW + timedelta(seconds=100 / 2.0 + 500 / 10.0) + REDISPATCH_AFTER


def test_unlimited_admits_everything_with_the_plain_grace() -> None:
    admitted, lease = unlimited().take(Channel.SMS, 10**6, now=NOW)
    assert admitted == 10**6
    assert lease == NOW + REDISPATCH_AFTER


def test_a_batch_is_leased_in_order_up_to_each_channels_room() -> None:
    """The tick's rows get their leases before they are inserted: each channel's first rows
    up to its room, with the lease ``take`` gives; the rest ``None``, left in the database."""
    budget = DispatchBudget(rates={Channel.SMS: 0.01}, horizon=timedelta(seconds=300))
    sms, email = Channel.SMS, Channel.EMAIL
    batch = [sms, email, sms, sms, email, sms]
    leases = budget.leases(batch, now=NOW)
    assert [lease is not None for lease in leases] == [True, True, True, True, True, False]
    # SMS has room for 3 (0.01/s x 300 s); their lease is the SMS drain time plus the grace
    sms_lease = NOW + timedelta(seconds=3 / 0.01) + REDISPATCH_AFTER
    assert [leases[i] for i in (0, 2, 3)] == [sms_lease] * 3
    assert leases[1] == leases[4] == sms_lease  # email, unlimited, waits behind those SMS
    assert budget.in_flight == {sms: 3, email: 2}
    assert budget.leases([sms, email], now=NOW) == [None, sms_lease]


def test_an_empty_batch_takes_nothing() -> None:
    budget = DispatchBudget(rates={Channel.SMS: 1.0}, horizon=timedelta(seconds=60))
    assert budget.leases([], now=NOW) == []
    assert budget.in_flight == {}
