"""Signed, expiring tokens for links patients click without logging in (unsubscribe)."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from campaigns.enums import Channel

UNSUBSCRIBE_SALT = "unsubscribe-v1"
UNSUBSCRIBE_MAX_AGE = 60 * 60 * 24 * 180  # links in old emails keep working for six months


class InvalidToken(ValueError):
    pass


@dataclass(frozen=True)
class UnsubscribeClaim:
    patient_id: int
    channel: Channel


def _serializer(key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=UNSUBSCRIBE_SALT)


def unsubscribe_token(key: bytes, patient_id: int, channel: Channel) -> str:
    return _serializer(key).dumps([patient_id, channel.value])


def read_unsubscribe_token(
    key: bytes, token: str, *, max_age: int = UNSUBSCRIBE_MAX_AGE
) -> UnsubscribeClaim:
    try:
        patient_id, channel = _serializer(key).loads(token, max_age=max_age)
        return UnsubscribeClaim(int(patient_id), Channel(channel))
    except SignatureExpired:
        raise InvalidToken("this link has expired") from None
    except (BadSignature, ValueError, TypeError):
        raise InvalidToken("this link is not valid") from None
