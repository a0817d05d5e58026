"""Unsubscribe tokens: the cached signer must keep the format links already sent use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from itsdangerous import URLSafeTimedSerializer

from campaigns.enums import Channel
from campaigns.tokens import (
    UNSUBSCRIBE_SALT,
    InvalidToken,
    UnsubscribeClaim,
    read_unsubscribe_token,
    unsubscribe_token,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def _old(key: bytes) -> URLSafeTimedSerializer:
    """How tokens were made before the signer was cached: a fresh serializer per call."""
    return URLSafeTimedSerializer(key, salt=UNSUBSCRIBE_SALT)


@pytest.mark.parametrize("channel", list(Channel))
def test_same_token_as_the_old_code_path(channel: Channel) -> None:
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), tick=False):
        assert unsubscribe_token(KEY, 4321, channel) == _old(KEY).dumps([4321, channel.value])


def test_old_tokens_verify_with_the_new_code() -> None:
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), tick=False):
        token = _old(KEY).dumps([17, Channel.EMAIL.value])
    with time_machine.travel(datetime(2026, 4, 2, 9, 0, tzinfo=UTC), tick=False):
        assert read_unsubscribe_token(KEY, token) == UnsubscribeClaim(17, Channel.EMAIL)


def test_new_tokens_verify_with_the_old_code() -> None:
    token = unsubscribe_token(KEY, 99, Channel.SMS)
    assert _old(KEY).loads(token, max_age=60) == [99, Channel.SMS.value]


def test_keys_are_not_mixed_up_by_the_cache() -> None:
    mine = unsubscribe_token(KEY, 5, Channel.SMS)
    theirs = unsubscribe_token(OTHER_KEY, 5, Channel.SMS)
    assert mine != theirs
    assert read_unsubscribe_token(OTHER_KEY, theirs).patient_id == 5
    with pytest.raises(InvalidToken, match="not valid"):
        read_unsubscribe_token(OTHER_KEY, mine)


def test_tampered_and_expired_tokens_are_refused() -> None:
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), tick=False):
        token = unsubscribe_token(KEY, 8, Channel.SMS)
    with pytest.raises(InvalidToken, match="not valid"):
        read_unsubscribe_token(KEY, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    with (
        time_machine.travel(datetime(2027, 3, 2, 9, 0, tzinfo=UTC), tick=False),
        pytest.raises(InvalidToken, match="expired"),
    ):
        read_unsubscribe_token(KEY, token)


@pytest.mark.parametrize("patient_id", [1, 4321, 10**9 + 7, 2**62, 1111111111111111111])
@pytest.mark.parametrize("channel", list(Channel))
def test_direct_signing_matches_itsdangerous_or_verifies_with_it(
    patient_id: int, channel: Channel
) -> None:
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), tick=False):
        token = unsubscribe_token(KEY, patient_id, channel)
        old = _old(KEY).dumps([patient_id, channel.value])
    if not old.startswith("."):  # itsdangerous zlib-compresses repetitive payloads only
        assert token == old
    with time_machine.travel(datetime(2026, 3, 3, 9, 0, tzinfo=UTC), tick=False):
        assert _old(KEY).loads(token, max_age=86_400 * 2) == [patient_id, channel.value]
        assert read_unsubscribe_token(KEY, token) == UnsubscribeClaim(patient_id, channel)
        assert read_unsubscribe_token(KEY, old) == UnsubscribeClaim(patient_id, channel)
