"""The one interface every transport implements, so SMTP and Twilio slot in beside the files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from campaigns.enums import Channel


@dataclass(frozen=True)
class OutgoingMessage:
    """Everything a provider needs; ``to`` is resolved from the patient at send time."""

    outbox_id: int
    patient_id: int
    channel: Channel
    to: str
    body_text: str
    subject: str | None = None
    body_html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: SMS only: the program's segment limit, checked again right before sending.
    max_segments: int | None = None


@dataclass(frozen=True)
class ProviderReceipt:
    provider_id: str


class DeliveryError(Exception):
    """``permanent`` failures are not retried (invalid number); the rest may be.

    ``opted_out`` means the provider knows the recipient unsubscribed (Twilio 21610): the
    caller records that as a consent change, not just a failed message. ``ambiguous`` means
    the provider may have accepted it (a read timeout): the row becomes ``unknown`` for
    staff, because retrying could text the patient twice.
    """

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        opted_out: bool = False,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent or opted_out or ambiguous
        self.opted_out = opted_out
        self.ambiguous = ambiguous
        self.retry_after = retry_after


class Transport(Protocol):
    """A transport may also say ``waits = False``: its sends only compute (an in-process
    fake), so overlapping them on threads cannot finish sooner (``waits``)."""

    channel: Channel

    def send(self, message: OutgoingMessage) -> ProviderReceipt: ...


def waits(transport: Transport) -> bool:
    """Whether a send spends its time waiting outside this process (on a provider across the
    network), which is what sending on several threads overlaps. Without the attribute a
    transport is taken to wait: threads cost a little when it does not, while one thread
    for a transport that waits would send a batch ~``send_threads`` times slower."""
    return bool(getattr(transport, "waits", True))
