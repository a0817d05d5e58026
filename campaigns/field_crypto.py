"""Patient phone numbers and email addresses are encrypted at rest.

A stolen database dump or backup must not be a list of patients' contact details. Values are
encrypted with AES-256-GCM (``cryptography``'s AEAD, a random 96-bit nonce per value) under a
key derived from each configured data key; tokens written before 2026-11-27 are Fernet
(AES-128-CBC + HMAC-SHA256) and still read, so nothing stored needs converting (``campaigns
keys reencrypt`` rewrites them anyway). GCM is the cheaper of the two by ~7x per value, which
matters when a 100k-row enrolment encrypts 200k of them and every send decrypts one.
Because either is randomised, equality lookups go through a separate keyed hash
(HMAC-SHA256), so the database can find "the patient with this number" without holding it.
Keys come from the environment; outside production a key file in the data dir stands in.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from config.settings import ENV_PREFIX, Settings, get_settings

DEV_KEY_FILE = ".field_keys"
#: Marks an AES-GCM token (and is its associated data, so the mark cannot be swapped). Fernet
#: tokens begin with "gAAAAA" (their version byte), so the two never collide.
GCM_PREFIX = "g1:"
_GCM_AAD = GCM_PREFIX.encode()
_NONCE = 12
#: What opening a token raises when it is not ours to read: wrong key, damaged, or not a
#: token at all (bad base64 and non-ASCII text are ValueErrors).
_UNREADABLE = (InvalidToken, InvalidTag, ValueError)


class FieldKeyError(RuntimeError):
    """Keys are missing, malformed, or do not open the stored data: stop, never guess."""


def _split(keys: str) -> list[str]:
    return [k.strip() for k in keys.split(",") if k.strip()]


def _gcm(data_key: str) -> AESGCM:
    """A separate key for GCM, derived from the configured one, so no key is used by two
    ciphers."""
    hkdf = HKDF(SHA256(), 32, salt=None, info=b"campaigns patient contacts: AES-256-GCM")
    return AESGCM(hkdf.derive(base64.urlsafe_b64decode(data_key)))


@dataclass(frozen=True)
class FieldKeys:
    #: Newest first: the first encrypts, every one decrypts.
    gcms: tuple[AESGCM, ...]
    #: Reads tokens written before the switch to GCM.
    fernet: MultiFernet
    #: Newest first: hashes are written with the first, lookups match under any of them, so a
    #: patient is still found while ``campaigns keys reencrypt`` re-hashes under a new key.
    lookups: tuple[bytes, ...]
    #: How many data keys are configured; more than one means a rotation is under way.
    data_key_count: int

    @classmethod
    def parse(cls, data_keys: str, lookup_keys: str) -> FieldKeys:
        parts = _split(data_keys)
        if not parts:
            raise FieldKeyError(f"{ENV_PREFIX}DATA_KEYS is empty")
        try:
            fernets = [Fernet(k.encode()) for k in parts]
        except ValueError as exc:
            raise FieldKeyError(
                f"{ENV_PREFIX}DATA_KEYS must be comma-separated Fernet keys "
                "(32 url-safe base64 bytes; `campaigns keys new` prints some)"
            ) from exc
        lookups = _split(lookup_keys)
        if not lookups or any(len(k) < 32 for k in lookups):
            raise FieldKeyError(
                f"{ENV_PREFIX}LOOKUP_KEY must be comma-separated keys of at least 32 characters"
            )
        return cls(
            tuple(_gcm(k) for k in parts),
            MultiFernet(fernets),
            tuple(k.encode() for k in lookups),
            len(fernets),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldKeys:
        if settings.data_keys is not None and settings.lookup_key is not None:
            return cls.parse(
                settings.data_keys.get_secret_value(), settings.lookup_key.get_secret_value()
            )
        if settings.environment == "production":
            raise FieldKeyError(f"{ENV_PREFIX}DATA_KEYS and {ENV_PREFIX}LOOKUP_KEY must be set")
        stored = json.loads(settings.dev_secret(DEV_KEY_FILE, lambda: json.dumps(new_keys())))
        data = settings.data_keys.get_secret_value() if settings.data_keys else stored["data"]
        lookup = settings.lookup_key.get_secret_value() if settings.lookup_key else stored["lookup"]
        return cls.parse(data, lookup)

    def encrypt(self, value: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self.gcms[0].encrypt(nonce, value.encode(), _GCM_AAD)
        return GCM_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._open(token).decode()
        except _UNREADABLE as exc:
            raise FieldKeyError(
                f"stored patient contact data cannot be decrypted: is {ENV_PREFIX}DATA_KEYS "
                "the key set this database was written with?"
            ) from exc

    def _open(self, token: str) -> bytes:
        if not token.startswith(GCM_PREFIX):
            return self.fernet.decrypt(token.encode("ascii"))
        raw = base64.b64decode(token[len(GCM_PREFIX) :], altchars=b"-_", validate=True)
        nonce, sealed = raw[:_NONCE], raw[_NONCE:]
        for gcm in self.gcms:
            try:
                return gcm.decrypt(nonce, sealed, _GCM_AAD)
            except InvalidTag:
                continue
        raise InvalidTag

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key and format (a no-op in meaning, a new token in fact)."""
        try:
            return self.encrypt(self._open(token).decode())
        except _UNREADABLE as exc:
            raise FieldKeyError("a stored value is not readable with any configured key") from exc

    def lookup_hash(self, kind: str, value: str, *, key: int = 0) -> str:
        """``kind`` separates domains, so a phone hash never equals an email hash."""
        keyed = _keyed_hmac(self.lookups[key]).copy()
        keyed.update(f"{kind}:{normalise(kind, value)}".encode())
        return keyed.hexdigest()

    def retired_hashes(self, kind: str, value: str) -> list[str]:
        """The value's hashes under the older lookup keys (none outside a rotation)."""
        return [self.lookup_hash(kind, value, key=i) for i in range(1, len(self.lookups))]


@lru_cache(maxsize=16)
def _keyed_hmac(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 with ``key`` taken in and nothing hashed yet, to be copied per value:
    the copy skips hashing the padded key twice, 3.2 -> 2.1 µs per hash (the one-shot
    ``hmac.digest`` hashes it every time). Not kept on ``FieldKeys``, which is pickled for
    bulk enrolment's workers and an HMAC object cannot be."""
    return hmac.new(key, digestmod="sha256")


def normalise(kind: str, value: str) -> str:
    value = value.strip()
    return value.lower() if kind == "email" else value


def new_keys() -> dict[str, str]:
    return {"data": Fernet.generate_key().decode(), "lookup": Fernet.generate_key().decode()}


_active: FieldKeys | None = None


def install(keys: FieldKeys) -> None:
    """Processes install their keys once at start-up (``build_runtime`` does it)."""
    global _active
    _active = keys


def active() -> FieldKeys:
    if _active is None:
        install(FieldKeys.from_settings(get_settings()))
    assert _active is not None
    return _active


def phone_hash(value: str | None) -> str | None:
    return active().lookup_hash("phone", value) if value else None


def email_hash(value: str | None) -> str | None:
    return active().lookup_hash("email", value) if value else None


def all_hashes(kind: str, value: str) -> list[str]:
    """Every hash a stored row may carry for ``value``: the newest key's, then older ones."""
    keys = active()
    return [keys.lookup_hash(kind, value), *keys.retired_hashes(kind, value)]


class EncryptedText(TypeDecorator[str]):
    """A text column whose value the database only ever sees encrypted."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else active().encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return decrypt_stored(value)


def decrypt_stored(value: Any) -> str | None:
    """A stored (encrypted) column value in clear: what ``EncryptedText`` returns for it.

    The send path reads contact columns raw and decrypts only the one a message goes to."""
    return None if value is None else active().decrypt(str(value))
