"""How a send task claims its rows and on how many threads it sends them.

A claim is what a killed worker can leave ``unknown``, so it covers about a second of
sending: a process's first ``FIRST_CLAIM`` rows, then what the last claim sent per
``CLAIM_SECONDS``.
Sends that only compute share one claim's statements and run on the task's own thread.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from campaigns import outbox
from campaigns.channels.base import OutgoingMessage, ProviderReceipt, waits
from campaigns.enums import Channel, MessageStatus
from campaigns.models import OutboxMessage
from campaigns.outbox import DeliveryResult, deliver_batch
from campaigns.ratelimit import LocalBucket, RateLimiter
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
DUE = MONDAY + timedelta(hours=10)


class Recording:
    """Accepts everything; remembers each row and the thread that sent it."""

    channel = Channel.SMS

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.sent: list[int] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        time.sleep(self.pause)
        with self._lock:
            self.sent.append(message.outbox_id)
            self.threads.add(threading.current_thread().name)
        return ProviderReceipt(provider_id=f"ok-{message.outbox_id}")


class Computing(Recording):
    waits = False


def _planned(rt: Runtime, patients: int) -> list[int]:
    version = load_program(rt)
    for _ in range(patients):
        make_enrollment(rt, version, now=MONDAY)
    ids = sorted(tick(rt, now=DUE).planned)
    assert len(ids) == patients
    return ids


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The ids of each claim ``deliver_batch`` makes, in order."""
    made: list[list[int]] = []
    chunk = outbox._deliver_chunk

    def recorded(rt: Runtime, ids: list[int], *, now: datetime) -> dict[int, DeliveryResult]:
        made.append(list(ids))
        return chunk(rt, ids, now=now)

    monkeypatch.setattr(outbox, "_deliver_chunk", recorded)
    return made


def _limiter(*, sms: float) -> RateLimiter:
    """A limit of ``sms`` per second with room for a test's rows at once (no waiting)."""
    return RateLimiter(LocalBucket(), {Channel.SMS: sms, Channel.EMAIL: 5000.0}, burst=50.0)


def _unlimited(rt: Runtime, monkeypatch: pytest.MonkeyPatch, *, first_claim: int) -> None:
    """No rate limit, and a first claim of ``first_claim`` rows."""
    monkeypatch.setattr(outbox, "FIRST_CLAIM", first_claim)
    rt.limiter = None


def _statuses(rt: Runtime, ids: list[int]) -> set[MessageStatus]:
    with rt.session() as session:
        return {session.get_one(OutboxMessage, i).status for i in ids}


def test_fast_sends_are_claimed_together_after_the_first_claim(
    rt: Runtime, claims: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _planned(rt, 12)
    _unlimited(rt, monkeypatch, first_claim=3)
    rt.transports[Channel.SMS] = transport = Recording()
    assert deliver_batch(rt, ids, now=DUE) == dict.fromkeys(ids, DeliveryResult.SENT)
    assert claims == [ids[:3], ids[3:]], "3 rows sent in far under a second: the rest at once"
    assert sorted(transport.sent) == ids
    assert _statuses(rt, ids) == {MessageStatus.SENT}


def test_the_next_batch_starts_at_the_pace_the_last_claim_went_out(
    rt: Runtime, claims: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _planned(rt, 12)
    _unlimited(rt, monkeypatch, first_claim=3)
    rt.transports[Channel.SMS] = Recording()
    deliver_batch(rt, ids[:4], now=DUE)
    assert rt.send_pace is not None and rt.send_pace > 8, "rows per second, far over 8"
    deliver_batch(rt, ids[4:], now=DUE)
    assert claims == [ids[:3], ids[3:4], ids[4:]]
    rt.transports[Channel.SMS] = Recording(pause=0.025)
    monkeypatch.setattr(outbox, "CLAIM_SECONDS", 0.05)
    rt.send_pace = 1.0  # a slow last claim: back to FIRST_CLAIM rows at a time
    claims.clear()
    more = _planned(rt, 4)
    deliver_batch(rt, more, now=DUE)
    assert claims[0] == more[:3]


def test_slow_sends_are_claimed_about_a_second_at_a_time(
    rt: Runtime, claims: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _planned(rt, 7)
    monkeypatch.setattr(outbox, "FIRST_CLAIM", 2)
    monkeypatch.setattr(outbox, "CLAIM_SECONDS", 0.05)  # "a second" of 0.05 s: 2 sends
    rt.settings = rt.settings.model_copy(update={"send_threads": 1})
    rt.limiter = _limiter(sms=1000.0)  # allows far more than these sends' pace
    rt.transports[Channel.SMS] = transport = Recording(pause=0.025)
    assert deliver_batch(rt, ids, now=DUE) == dict.fromkeys(ids, DeliveryResult.SENT)
    assert claims == [ids[0:2], ids[2:4], ids[4:6], ids[6:]]
    assert transport.sent == ids


def test_a_failed_claim_leaves_the_later_rows_unclaimed(
    rt: Runtime, claims: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _planned(rt, 5)
    _unlimited(rt, monkeypatch, first_claim=2)
    rt.settings = rt.settings.model_copy(update={"send_threads": 1})

    class BrokenOnThird(Recording):
        def send(self, message: OutgoingMessage) -> ProviderReceipt:
            if len(self.sent) == 2:
                raise RuntimeError("bug in the transport")
            return super().send(message)

    rt.transports[Channel.SMS] = BrokenOnThird()
    with pytest.raises(RuntimeError):
        deliver_batch(rt, ids, now=DUE)
    assert claims == [ids[:2], ids[2:]]
    assert _statuses(rt, ids[:2]) == {MessageStatus.SENT}
    assert _statuses(rt, ids[2:3]) == {MessageStatus.SENDING}  # the sweep flags it
    assert _statuses(rt, ids[3:]) == {MessageStatus.PLANNED}  # sent by the retry


def test_with_a_rate_limit_each_claim_is_a_second_of_tokens(
    rt: Runtime, claims: list[list[int]]
) -> None:
    ids = _planned(rt, 5)
    rt.limiter = _limiter(sms=2.0)
    rt.transports[Channel.SMS] = Recording()
    assert deliver_batch(rt, ids, now=DUE) == dict.fromkeys(ids, DeliveryResult.SENT)
    assert claims == [ids[0:2], ids[2:4], ids[4:]]


def test_sends_that_only_compute_run_on_the_tasks_own_thread(rt: Runtime) -> None:
    ids = _planned(rt, 6)
    rt.settings = rt.settings.model_copy(update={"send_threads": 4})
    rt.transports[Channel.SMS] = computing = Computing()
    assert not waits(computing)
    deliver_batch(rt, ids, now=DUE)
    assert computing.threads == {threading.current_thread().name}
    assert sorted(computing.sent) == ids


def test_sends_that_wait_overlap_on_the_send_threads(rt: Runtime) -> None:
    ids = _planned(rt, 6)
    rt.settings = rt.settings.model_copy(update={"send_threads": 4})
    rt.transports[Channel.SMS] = waiting = Recording(pause=0.02)
    assert waits(waiting), "a transport that does not say is taken to wait"
    deliver_batch(rt, ids, now=DUE)
    assert waiting.threads and all(name.startswith("send") for name in waiting.threads)
    assert len(waiting.threads) > 1
    assert sorted(waiting.sent) == ids


@pytest.mark.parametrize(
    ("sms_rate", "pace", "rows"),
    [
        (None, None, 100),  # no claim yet: FIRST_CLAIM
        (None, 40.0, 100),  # slow sends: never under FIRST_CLAIM at once
        (None, 2345.6, 2345),  # fast sends: a second of them
        (10.0, None, 10),  # a second of tokens
        (10.0, 2345.6, 10),
        (0.5, 2345.6, 1),  # under one token a second: one row at a time
        (1000.0, 300.0, 300),
    ],
)
def test_claim_size(rt: Runtime, sms_rate: float | None, pace: float | None, rows: int) -> None:
    rt.limiter = None if sms_rate is None else _limiter(sms=sms_rate)
    assert outbox._claim_size(rt, pace) == rows
