"""Settings from the environment (prefix ``CAMPAIGNS_``), validated once at start-up.

Every value a deployment changes lives here so a bad value fails before any patient is
messaged, with an error that names the environment variable.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CAMPAIGNS_"

#: Nobody is messaged between 21:00 and 08:00 local time, whatever a clinic configures.
HARD_WINDOW_START = time(8, 0)
HARD_WINDOW_END = time(21, 0)

_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development"}


class Settings(BaseSettings):
    """One place for configuration; ``*_FILE`` variants are read for secrets by pydantic."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=None, extra="ignore", validate_default=True
    )

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = REPO_ROOT / "var"
    database_url: str = ""
    broker_url: str = ""
    templates_dir: Path = REPO_ROOT / "templates"
    secret_key: SecretStr | None = None
    #: Keys for patient phone/email at rest (Fernet's key format: `campaigns keys new`),
    #: comma-separated, newest first: the first encrypts, all decrypt, so a key can be
    #: rotated without downtime (`campaigns keys reencrypt`).
    data_keys: SecretStr | None = None
    #: HMAC key for the lookup hashes that let us find a patient by phone/email.
    lookup_key: SecretStr | None = None

    default_timezone: str = "America/New_York"
    default_send_time: time = time(10, 0)
    send_window_start: time = time(9, 0)
    send_window_end: time = time(20, 0)

    tick_batch_size: int = Field(default=500, ge=1, le=50_000)
    tick_seconds: float = Field(default=60.0, gt=0, le=3600)
    #: Rehearsals and scale tests only: a file holding an ISO-8601 UTC instant that every
    #: worker and beat task takes as "now", so a simulated week runs in minutes.
    clock_file: Path | None = None
    sending_stale_minutes: int = Field(default=15, ge=1)

    clinic_name: str = "Riverside Pain Recovery Clinic"
    clinic_phone: str = "+1 555 010 0199"
    public_base_url: str = "http://localhost:8000"
    #: ``campaigns web`` processes; 0 = one per CPU on a server database, 1 on SQLite (one
    #: file lock serialises its writers, so more processes only add lock waits).
    web_workers: int = Field(default=0, ge=0, le=64)
    #: Requests a web process runs at once in sync handlers (the rest wait their turn, in
    #: order); 0 = the database pool's capacity, so no request waits on a connection (1 on
    #: SQLite, where every transaction takes the one write lock).
    web_threads: int = Field(default=0, ge=0, le=200)

    sms_transport: Literal["file", "twilio"] = "file"
    email_transport: Literal["file", "smtp"] = "file"
    outbox_dir: Path | None = None

    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_from_number: str | None = None
    #: Only for a local fake of Twilio's API (tests, development); unset means api.twilio.com.
    twilio_api_base_url: str | None = None

    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    email_from: str = "care@localhost"
    #: Replies go to ``reply+<token>@<reply_domain>`` so they find their message again.
    reply_domain: str = "reply.localhost"
    unsubscribe_mailto: str = "unsubscribe@localhost"
    inbound_email_secret: SecretStr | None = None
    #: Optional alternative to the webhook: ``campaigns poll-imap`` reads replies from a mailbox.
    imap_host: str | None = None
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["ssl", "starttls", "none"] = "ssl"
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"

    #: Raw reply text older than this many days is blanked (scores and keywords stay).
    reply_retention_days: int | None = Field(default=None, ge=1)

    #: When set, ``/metrics`` requires ``Authorization: Bearer <token>``.
    metrics_token: SecretStr | None = None

    rate_limit_redis_url: str | None = None
    sms_per_second: float = Field(default=10.0, gt=0, le=10_000)
    email_per_second: float = Field(default=20.0, gt=0, le=10_000)
    #: Provider calls of one send batch run on this many threads per worker process: each
    #: call mostly waits on the network, so one at a time leaves the process idle. Each
    #: thread keeps its own SMTP connection, so a relay's connection limit bounds it too.
    send_threads: int = Field(default=8, ge=1, le=64)

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _window_inside_hard_limits(self) -> Settings:
        if not HARD_WINDOW_START <= self.send_window_start < self.send_window_end:
            raise ValueError(
                f"{ENV_PREFIX}SEND_WINDOW_START must be >= 08:00 and before "
                f"{ENV_PREFIX}SEND_WINDOW_END"
            )
        if self.send_window_end > HARD_WINDOW_END:
            raise ValueError(f"{ENV_PREFIX}SEND_WINDOW_END must be <= 21:00")
        return self

    @model_validator(mode="after")
    def _production_needs_real_secret(self) -> Settings:
        if self.environment != "production":
            return self
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if key.lower() in _PLACEHOLDER_SECRETS or len(key) < 32:
            raise ValueError(
                f"{ENV_PREFIX}SECRET_KEY must be set to a random value of 32+ characters "
                "in production"
            )
        missing = [n for n in ("data_keys", "lookup_key") if getattr(self, n) is None]
        if missing:
            names = " and ".join(f"{ENV_PREFIX}{n.upper()}" for n in missing)
            raise ValueError(f"{names} must be set in production (see `campaigns keys new`)")
        return self

    @model_validator(mode="after")
    def _transports_have_credentials(self) -> Settings:
        if self.sms_transport == "twilio":
            missing = [
                name
                for name, value in (
                    ("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                    ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                )
                if not value
            ]
            if not (self.twilio_messaging_service_sid or self.twilio_from_number):
                missing.append("TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER")
            if missing:
                names = ", ".join(f"{ENV_PREFIX}{m}" for m in missing)
                raise ValueError(f"SMS through Twilio needs {names}")
        return self

    @property
    def resolved_rate_limit_url(self) -> str | None:
        """Rate limits are shared through Redis; without Redis each process limits itself."""
        if self.rate_limit_redis_url:
            return self.rate_limit_redis_url
        if self.resolved_broker_url.startswith(("redis://", "rediss://")):
            return self.resolved_broker_url
        return None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'campaigns.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.db'}"

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def signing_key(self) -> bytes:
        """Outside production an unset key is generated once into the data dir, so the CLI
        and the worker agree on it; production is forced to configure one."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return self.dev_secret(".secret_key", lambda: secrets.token_hex(32)).encode()

    def dev_secret(self, name: str, generate: Callable[[], str]) -> str:
        """A development secret kept in the data dir (mode 0600), made on first use.

        Published with a hard link so processes starting together (``campaigns web
        --workers``) all read the first one written, never a half-written or second key."""
        path = self.data_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{name}.")
            try:
                with os.fdopen(fd, "w") as out:
                    out.write(generate())
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        return path.read_text().strip()


class SettingsError(RuntimeError):
    """Raised with a human message naming each bad ``CAMPAIGNS_*`` variable."""


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) if err["loc"] else ""
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        lines.append(f"{name}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Cached for the process; tests call ``get_settings.cache_clear()`` after changing env."""
    return load_settings()
