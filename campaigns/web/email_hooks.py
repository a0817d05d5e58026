"""``POST /webhooks/email/inbound``: a mail provider hands us a patient's reply as raw MIME.

Authenticated by one shared secret (``CAMPAIGNS_INBOUND_EMAIL_SECRET``), presented as an
HTTP Bearer token or as the password of Basic auth, since providers' inbound routes offer
one or the other. Without a configured secret the endpoint refuses everything (503) rather
than accept replies from anyone.

Answers to the patient (confirmations, crisis resources) are sent after the response, so
the provider is not kept waiting on SMTP; if that send is lost the tick re-dispatches it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, status
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError

from campaigns.inbound_email import EmailOutcome, InboundEmailError, receive_email
from campaigns.logs import get_logger
from campaigns.models import utcnow
from campaigns.outbox import deliver
from campaigns.runtime import Runtime
from campaigns.web.deps import RuntimeDep

router = APIRouter(tags=["email"])
log = get_logger(__name__)
#: Replies with photos of a journal page are large; providers cap mail near this too.
MAX_BODY_BYTES = 25 * 1024 * 1024
ACCEPTED_TYPES = frozenset({"message/rfc822", "text/plain"})


class InboundEmailAnswer(BaseModel):
    reply_id: int | None
    duplicate: bool
    unsubscribed: bool = False
    ignored: str | None = None


def require_secret(request: Request, rt: RuntimeDep) -> None:
    configured = rt.settings.inbound_email_secret
    expected = configured.get_secret_value() if configured else ""
    if not expected:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "inbound email is not set up")
    presented = presented_secret(request.headers.get("authorization", ""))
    if presented is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong credentials",
            headers={"WWW-Authenticate": 'Basic realm="inbound email", Bearer'},
        )


def presented_secret(authorization: str) -> str | None:
    """The secret from ``Bearer <secret>`` or ``Basic base64(<any user>:<secret>)``."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


async def raw_message(request: Request) -> bytes:
    """The body, refused early when it is not raw MIME or is too large to be a reply."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the raw email as message/rfc822"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, "email too large")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/webhooks/email/inbound",
    dependencies=[Depends(require_secret)],
    response_model=InboundEmailAnswer,
)
def inbound_email(
    raw: Annotated[bytes, Depends(raw_message)], rt: RuntimeDep, background: BackgroundTasks
) -> InboundEmailAnswer:
    now = utcnow()
    try:
        outcome = _store(rt, raw, now=now)
    except InboundEmailError as exc:
        log.info("inbound-email-refused", reason=exc.reason)
        raise HTTPException(422, exc.reason) from None
    for outbox_id in outcome.responses:
        background.add_task(_deliver_now, rt, outbox_id)
    return InboundEmailAnswer(
        reply_id=outcome.reply_id,
        duplicate=outcome.duplicate,
        unsubscribed=outcome.unsubscribed,
        ignored=outcome.ignored,
    )


def _store(rt: Runtime, raw: bytes, *, now: datetime) -> EmailOutcome:
    """Commit the reply; a provider's concurrent retry of the same email loses the unique
    Message-ID race and, run again, finds the first one's reply as a duplicate."""
    try:
        with rt.session() as session:
            return receive_email(rt, session, raw, now=now)
    except IntegrityError:
        with rt.session() as session:
            return receive_email(rt, session, raw, now=now)


def _deliver_now(rt: Runtime, outbox_id: int) -> None:
    deliver(rt, outbox_id, now=utcnow())
