"""The embedded default: each email as a real ``.eml`` file, each SMS as JSON, in a folder.

Lets a newcomer watch a program unfold with no mail server or Twilio account, and gives
tests real artefacts (parseable MIME) rather than mocks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from campaigns.channels.base import DeliveryError, OutgoingMessage, ProviderReceipt
from campaigns.email_headers import EmailIdentity
from campaigns.email_wire import email_bytes
from campaigns.enums import Channel
from campaigns.models import utcnow


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class FileEmailTransport:
    """Writes the same MIME bytes the SMTP transport would send (see ``email_wire``)."""

    channel = Channel.EMAIL

    def __init__(self, folder: Path, identity: EmailIdentity) -> None:
        self.folder = folder
        self.identity = identity

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        if not message.subject:
            raise DeliveryError("email without a subject", permanent=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        wire = email_bytes(message, self.identity, now=utcnow())
        _write_atomically(self.folder / f"{message.outbox_id:09d}.eml", wire.data)
        return ProviderReceipt(provider_id=wire.message_id)


class FileSmsTransport:
    channel = Channel.SMS

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            "outbox_id": message.outbox_id,
            "to": message.to,
            "body": message.body_text,
            "at": utcnow().isoformat(),
        }
        path = self.folder / f"{message.outbox_id:09d}.sms.json"
        _write_atomically(path, json.dumps(record, ensure_ascii=False, indent=1).encode())
        return ProviderReceipt(provider_id=f"file-sms-{message.outbox_id}")
