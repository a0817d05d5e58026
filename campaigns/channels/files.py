"""The embedded default: each email as a real ``.eml`` file, each SMS as JSON, in a folder.

Lets a newcomer watch a program unfold with no mail server or Twilio account, and gives
tests real artefacts (parseable MIME) rather than mocks.
"""

from __future__ import annotations

import json
import os
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from campaigns.channels.base import DeliveryError, OutgoingMessage, ProviderReceipt
from campaigns.enums import Channel
from campaigns.models import utcnow


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class FileEmailTransport:
    channel = Channel.EMAIL

    def __init__(self, folder: Path, sender: str) -> None:
        self.folder = folder
        self.sender = sender

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        if not message.subject:
            raise DeliveryError("email without a subject", permanent=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        msgid = make_msgid(idstring=f"outbox-{message.outbox_id}", domain="campaigns.local")
        mime = EmailMessage()
        mime["From"] = self.sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = format_datetime(utcnow())
        mime["Message-ID"] = msgid
        for name, value in message.headers.items():
            mime[name] = value
        mime.set_content(message.body_text)
        if message.body_html:
            mime.add_alternative(message.body_html, subtype="html")
        _write_atomically(self.folder / f"{message.outbox_id:09d}.eml", bytes(mime))
        return ProviderReceipt(provider_id=msgid)


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
