"""Signed, expiring tokens for links patients click without logging in (unsubscribe)."""

from __future__ import annotations

import hmac
import json
import time
from base64 import urlsafe_b64encode
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


@lru_cache(maxsize=16)
def _derived_key(key: bytes) -> bytes:
    return _serializer(key).make_signer().derive_key()


_CHANNEL_JSON = {c: json.dumps(c.value) for c in Channel}


def _b64(data: bytes) -> bytes:
    return urlsafe_b64encode(data).rstrip(b"=")


def unsubscribe_token(key: bytes, patient_id: int, channel: Channel) -> str:
    """itsdangerous' ``URLSafeTimedSerializer`` token, built directly: its layers (JSON
    encoder, a zlib attempt, signer objects) were most of a message's signing cost.

    The payload is never compressed (it is ~15 bytes; itsdangerous compresses only when that
    is shorter, e.g. for ids like 1111111111), which its ``loads`` accepts like any other.
    """
    payload = _b64(f"[{int(patient_id)},{_CHANNEL_JSON[channel]}]".encode())
    now = int(time.time())
    value = payload + b"." + _b64(now.to_bytes((now.bit_length() + 7) // 8, "big"))
    return (value + b"." + _b64(hmac.digest(_derived_key(key), value, "sha1"))).decode()


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
