"""Signed, expiring tokens for links patients click without logging in (unsubscribe)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import want_bytes
from itsdangerous.signer import Signer

from campaigns.enums import Channel

UNSUBSCRIBE_SALT = "unsubscribe-v1"
UNSUBSCRIBE_MAX_AGE = 60 * 60 * 24 * 180  # links in old emails keep working for six months


class InvalidToken(ValueError):
    pass


@dataclass(frozen=True)
class UnsubscribeClaim:
    patient_id: int
    channel: Channel


class _KeyedSigner(TimestampSigner):
    """itsdangerous derives the HMAC key from the secret and salt on every sign and check;
    the derived key never changes, so it is worked out once. Same derivation, same tokens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived = super().derive_key()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is None:
            return self._derived
        return super().derive_key(secret_key)


class _Serializer(URLSafeTimedSerializer):
    """Hands out one signer for its own salt instead of building one per token (a signer
    keeps no per-call state, so sharing it is safe across threads)."""

    signer = _KeyedSigner

    def __init__(self, key: bytes, *, salt: str) -> None:
        super().__init__(key, salt=salt)
        self._signer = super().make_signer()

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        if salt is None or want_bytes(salt) == self.salt:
            return self._signer
        return super().make_signer(salt)


@lru_cache(maxsize=16)
def _serializer(key: bytes) -> URLSafeTimedSerializer:
    """One serializer per signing key: the tick signs a link for every message it renders."""
    return _Serializer(key, salt=UNSUBSCRIBE_SALT)


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
