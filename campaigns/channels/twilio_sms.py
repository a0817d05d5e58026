"""SMS through Twilio's Messages API, with the official client.

The only module that imports twilio for sending. Every failure becomes a ``DeliveryError``
so the outbox alone decides between "retry later" and "failed for good"; the reason names
Twilio's error code, never the phone number or the text (Twilio's own messages quote the
number, so they are not copied, and exceptions are re-raised ``from None``).
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)

from campaigns.channels.base import DeliveryError, OutgoingMessage, ProviderReceipt
from campaigns.channels.keepalive_http import AnswerLost
from campaigns.channels.twilio_http import PooledHttpClient
from campaigns.enums import Channel
from campaigns.logs import get_logger
from campaigns.segments import count_segments
from config.settings import Settings

log = get_logger(__name__)

#: Where Twilio posts delivery updates; the web app serves it (``campaigns.web.twilio_hooks``).
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
#: Seconds to wait for Twilio; a send task must not hang a worker slot.
REQUEST_TIMEOUT = 15.0
#: A 429 without Retry-After waits this long; any Retry-After is clamped to these bounds.
RATE_LIMIT_BACKOFF = 60.0
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1.0, 3600.0

UNSUBSCRIBED = 21610
TOO_MANY_REQUESTS = 20429
#: Error codes worth a readable word in the outbox; any other 4xx is permanent too.
KNOWN_CODES = {
    21211: "invalid 'To' number",
    21408: "no permission to send to this region",
    21610: "recipient unsubscribed (replied STOP)",
    21612: "'To' number cannot be reached from this sender",
    21614: "'To' number cannot receive SMS",
    20003: "authentication failed: check the Twilio account SID and auth token",
    20429: "too many requests",
}


class TwilioSmsTransport:
    """Sends one SMS per call; the receipt is Twilio's message SID (``SM...``).

    Thread-safe: each sending thread has its own client and keep-alive HTTP session.
    """

    channel = Channel.SMS
    waits = True  # on the provider, across the network

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        status_callback: str,
        messaging_service_sid: str | None = None,
        from_number: str | None = None,
        api_base_url: str | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not (messaging_service_sid or from_number):
            raise ValueError("a Messaging Service SID or a From number is required")
        self.status_callback = status_callback
        # A Messaging Service picks the sender from its pool; From is only used without one.
        self.sender = (
            {"messaging_service_sid": messaging_service_sid}
            if messaging_service_sid
            else {"from_": from_number}
        )
        self._credentials = (account_sid, auth_token)
        self._http_args = (api_base_url, timeout)
        self._local = threading.local()
        self._opened: list[PooledHttpClient] = []
        self._opened_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioSmsTransport:
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise ValueError("Twilio account SID and auth token are required")
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            status_callback=status_callback_url(settings),
            messaging_service_sid=settings.twilio_messaging_service_sid,
            from_number=settings.twilio_from_number,
            api_base_url=settings.twilio_api_base_url,
        )

    @property
    def http(self) -> PooledHttpClient:
        return self._thread_clients()[0]

    @property
    def client(self) -> Client:
        return self._thread_clients()[1]

    def _thread_clients(self) -> tuple[PooledHttpClient, Client]:
        """This thread's HTTP client and twilio ``Client``: the client is not promised
        thread-safe, and each keeps its own connection to Twilio open between sends."""
        pair: tuple[PooledHttpClient, Client] | None = getattr(self._local, "pair", None)
        if pair is None:
            api_base_url, timeout = self._http_args
            http = PooledHttpClient(api_base_url, timeout=timeout)
            pair = self._local.pair = (http, Client(*self._credentials, http_client=http))
            with self._opened_lock:
                self._opened.append(http)
        return pair

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        check_length(message)
        try:
            created = self.client.messages.create(
                to=message.to,
                body=message.body_text,
                # Names the row, so a callback that beats the stored SID still finds it.
                status_callback=f"{self.status_callback}?outbox={message.outbox_id}",
                **self.sender,
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            error = api_error(exc.status, exc.code, self.http.last_retry_after)
        except ReadTimeoutError:
            # The request reached Twilio: it may have queued the text. Never resend blindly.
            error = DeliveryError(
                "twilio: no answer in time; delivery unknown", permanent=True, ambiguous=True
            )
        except AnswerLost:
            error = DeliveryError(
                "twilio: connection lost after sending; delivery unknown",
                permanent=True,
                ambiguous=True,
            )
        except (HTTPError, OSError) as exc:
            error = connection_error(exc)
        else:
            return ProviderReceipt(provider_id=str(created.sid))
        log.warning(
            "twilio send failed",
            outbox_id=message.outbox_id,
            reason=error.reason,
            permanent=error.permanent,
        )
        raise error

    def check_credentials(self) -> str:
        """Fetch our own account: proves the SID and token work without sending anything."""
        try:
            account = self.client.api.v2010.accounts(self.client.account_sid).fetch()
        except TwilioRestException as exc:
            raise DeliveryError(
                f"twilio: credentials refused (code {exc.code})", permanent=True
            ) from None
        except (HTTPError, OSError) as exc:
            raise DeliveryError(
                f"twilio: unreachable ({type(exc).__name__})", permanent=False
            ) from None
        return str(account.status)

    def close(self) -> None:
        """Release every thread's pooled connections (tests, shutdown)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for http in opened:
            http.close()


def status_callback_url(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + STATUS_CALLBACK_PATH


def connection_error(exc: HTTPError | OSError) -> DeliveryError:
    """Nothing reached Twilio, or nothing that it could act on: safe to try again later."""
    # urllib3 files a refused connection under connect timeouts; name it for what it is.
    if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
        return DeliveryError("twilio: connect timed out", permanent=False)
    return DeliveryError(f"twilio: connection failed ({type(exc).__name__})", permanent=False)


def check_length(message: OutgoingMessage) -> None:
    """Refuse before calling Twilio: a long text is split and billed per segment."""
    if message.max_segments is None:
        return
    segments = count_segments(message.body_text).segments
    if segments > message.max_segments:
        raise DeliveryError(
            f"sms is {segments} segments, over the limit of {message.max_segments}",
            permanent=True,
        )


def api_error(status: int, code: int | None, retry_after: str | None) -> DeliveryError:
    """Map an API error to retry-or-fail; the reason names the code, never the recipient."""
    code = code or status
    reason = f"twilio {code} (HTTP {status})"
    if code in KNOWN_CODES:
        reason += f": {KNOWN_CODES[code]}"
    if code == UNSUBSCRIBED:
        return DeliveryError(reason, permanent=True, opted_out=True)
    if status == 429 or code == TOO_MANY_REQUESTS:
        return DeliveryError(reason, permanent=False, retry_after=retry_seconds(retry_after))
    if status >= 500 or status == 401:
        # 401 is our credentials, not the patient: keep the message for when they are fixed.
        delay = retry_seconds(retry_after) if retry_after else None
        return DeliveryError(reason, permanent=False, retry_after=delay)
    return DeliveryError(reason, permanent=True)


def retry_seconds(header: str | None, *, now: datetime | None = None) -> float:
    """Seconds from ``Retry-After`` (delta-seconds or an HTTP date), else the back-off."""
    seconds = RATE_LIMIT_BACKOFF
    if header:
        try:
            seconds = float(header)
        except ValueError:
            seconds = _seconds_until(header, now or datetime.now(UTC))
    if not math.isfinite(seconds):
        seconds = RATE_LIMIT_BACKOFF
    return min(max(seconds, MIN_RETRY_AFTER), MAX_RETRY_AFTER)


def _seconds_until(http_date: str, now: datetime) -> float:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return RATE_LIMIT_BACKOFF
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()
