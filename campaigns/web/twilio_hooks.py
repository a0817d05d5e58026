"""Twilio's webhooks: patients' texts (``/webhooks/twilio/sms``) and delivery updates.

Both are authenticated only by ``X-Twilio-Signature``, checked against the PUBLIC url that
Twilio called (``public_base_url`` + path + query), so validation holds behind a proxy that
rewrites host, scheme or prefix. Nothing is read from or written to the database before the
signature is good. Answers the patient is owed (HELP, STOP/START confirmations, crisis
resources) go back inside the TwiML reply and their outbox rows are marked sent in the same
transaction, so the worker never sends them a second time. Twilio stops waiting for that
reply after 15 s, so a text handled later than ``TWIML_DEADLINE`` after it arrived (a queue
under a burst) gets an empty reply and its answers go out by the REST API after the response.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from campaigns import reply_queries as queries
from campaigns.channels.twilio_sms import STATUS_CALLBACK_PATH, UNSUBSCRIBED
from campaigns.enums import Channel, MessageStatus
from campaigns.field_crypto import all_hashes
from campaigns.inbound import ReplyResult, receive_reply
from campaigns.logs import get_logger
from campaigns.models import OutboxMessage, utcnow
from campaigns.outbox import deliver_batch
from campaigns.provider_status import provider_opt_out, record_provider_status
from campaigns.runtime import Runtime
from campaigns.web.deps import RuntimeDep, get_runtime
from config.settings import Settings

SMS_PATH = "/webhooks/twilio/sms"
SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_SID_LENGTH = 100
TWIML_MEDIA_TYPE = "text/xml"
#: Seconds after arrival past which an answer no longer goes in the TwiML: Twilio gives up on
#: the HTTP reply at 15 s, and an answer marked sent in a reply nobody reads is lost.
TWIML_DEADLINE = 10.0

M = MessageStatus
log = get_logger(__name__)
router = APIRouter(tags=["twilio"])

#: Twilio's MessageStatus values; None means "says nothing about our outbox row".
STATUS_MAP: dict[str, MessageStatus | None] = {
    "queued": M.SENDING,
    "accepted": M.SENDING,
    "scheduled": M.SENDING,
    "sending": M.SENDING,
    "sent": M.SENT,
    "delivered": M.DELIVERED,
    "read": M.DELIVERED,
    "undelivered": M.FAILED,
    "failed": M.FAILED,
    "canceled": M.FAILED,
    "receiving": None,
    "received": None,
}


def get_now() -> datetime:
    """The webhook clock; tests override this dependency instead of patching time."""
    return utcnow()


NowDep = Annotated[datetime, Depends(get_now)]


async def arrival() -> float:
    """When the request reached the app (monotonic), taken on the event loop before the
    handler waits for a worker thread; tests override it to play a request that waited."""
    return time.monotonic()


ArrivalDep = Annotated[float, Depends(arrival)]


def public_url(settings: Settings, path: str, query: str) -> str:
    """The URL as Twilio called it, which is what it signed."""
    url = settings.public_base_url.rstrip("/") + path
    return f"{url}?{query}" if query else url


@functools.lru_cache(maxsize=4)
def validator(token: str) -> RequestValidator:
    """One validator per auth token (it only holds the token), not one per request."""
    return RequestValidator(token)


def signed_form(path: str) -> Callable[[Request], Awaitable[dict[str, str]]]:
    """A dependency that returns the posted form only when Twilio's signature matches."""

    async def dependency(request: Request) -> dict[str, str]:
        rt = get_runtime(request)
        token = rt.settings.twilio_auth_token
        signature = request.headers.get(SIGNATURE_HEADER)
        if token is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Twilio webhooks are not configured")
        if not signature:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing Twilio signature")
        form = await request.form()
        url = public_url(rt.settings, path, request.url.query)
        if not validator(token.get_secret_value()).validate(url, form, signature):
            log.warning("twilio signature rejected", path=path)
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid Twilio signature")
        return {key: value for key, value in form.multi_items() if isinstance(value, str)}

    return dependency


@dataclass(frozen=True)
class InboundSms:
    """The fields of Twilio's incoming-message webhook that this service uses."""

    message_sid: str
    sender: str
    body: str
    num_media: int

    @classmethod
    def from_form(cls, form: dict[str, str]) -> InboundSms:
        # PostgreSQL text cannot hold NUL: keep the patient's text, with NUL shown as U+FFFD.
        form = {key: value.replace("\x00", "\ufffd") for key, value in form.items()}
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        if not sid or not form.get("From"):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "MessageSid and From are required")
        if len(sid) > MAX_SID_LENGTH:  # Twilio's are 34; the column (provider_id) holds 100
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "MessageSid is not a Twilio SID")
        media = form.get("NumMedia", "0")
        return cls(sid, form["From"], form.get("Body", ""), int(media) if media.isdigit() else 0)


def twiml(bodies: Sequence[str] = ()) -> Response:
    """Valid TwiML: an empty ``<Response/>`` or one ``<Message>`` per answer."""
    if not bodies:  # most texts: the same document each time, built once
        return Response(content=EMPTY_TWIML, media_type=TWIML_MEDIA_TYPE)
    reply = MessagingResponse()
    for body in bodies:
        reply.message(body)
    return Response(content=str(reply.to_xml()), media_type=TWIML_MEDIA_TYPE)


EMPTY_TWIML = str(MessagingResponse().to_xml())


@router.post(SMS_PATH, response_class=Response)
def incoming_sms(
    form: Annotated[dict[str, str], Depends(signed_form(SMS_PATH))],
    rt: RuntimeDep,
    now: NowDep,
    arrived: ArrivalDep,
    background: BackgroundTasks,
) -> Response:
    """Store the text once per MessageSid, act on it, and answer in the same HTTP reply."""
    sms = InboundSms.from_form(form)
    try:
        answers = receive_sms(rt, sms, now=now, deadline=arrived + TWIML_DEADLINE)
    except IntegrityError:
        # The same MessageSid delivered twice at once: the other request stored and answered it.
        log.info("twilio sms concurrent duplicate", message_sid=sms.message_sid)
        answers = Answers()
    if answers.late:
        background.add_task(deliver_batch, rt, answers.late, now=now)
    return twiml(answers.inline)


@dataclass
class Answers:
    #: Bodies claimed for the TwiML reply.
    inline: list[str] = field(default_factory=list)
    #: Planned answers left for the REST API, because Twilio no longer waits for the reply.
    late: list[int] = field(default_factory=list)


def receive_sms(rt: Runtime, sms: InboundSms, *, now: datetime, deadline: float) -> Answers:
    """One transaction: the reply, its effects, and the answers claimed for TwiML."""
    with rt.session() as session:
        patient, seen, context = queries.sender_context(
            session, all_hashes("phone", sms.sender), sms.message_sid, Channel.SMS, now
        )
        if patient is None:
            log.info("twilio sms from unknown sender", message_sid=sms.message_sid)
            return Answers()
        if seen is not None:  # Twilio delivered this text before: stored and answered then
            result = ReplyResult(seen, duplicate=True)
        else:
            result = receive_reply(
                rt,
                session,
                patient,
                sms.body,
                channel=Channel.SMS,
                now=now,
                provider_id=sms.message_sid,
                provider_id_checked=True,
                context=context,
            )
        if time.monotonic() < deadline:
            answers = Answers(
                inline=answer_inline(session, result.responses, sms.message_sid, now=now)
            )
        else:
            answers = Answers(late=list(result.responses))
    log.info(
        "twilio sms received",
        message_sid=sms.message_sid,
        reply_id=result.reply_id,
        duplicate=result.duplicate,
        num_media=sms.num_media,
        answers=len(answers.inline),
        late_answers=len(answers.late),
    )
    return answers


def answer_inline(
    session: Session, outbox_ids: Sequence[int], message_sid: str, *, now: datetime
) -> list[str]:
    """Claim each planned SMS answer as sent by TwiML; only claimed ones go in the reply."""
    bodies = []
    for n, outbox_id in enumerate(outbox_ids):
        claimed = _claim_for_twiml(session, outbox_id, f"twiml:{message_sid}:{n}", now=now)
        if claimed is not None:
            bodies.append(claimed)
    return bodies


def _claim_for_twiml(
    session: Session, outbox_id: int, provider_id: str, *, now: datetime
) -> str | None:
    """planned -> sent in one conditional UPDATE, like the worker's claim: exactly one wins.
    Returns the claimed row's body (RETURNING saves re-reading it), None if not claimed."""
    row = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == outbox_id,
            OutboxMessage.status == M.PLANNED,
            OutboxMessage.channel == Channel.SMS,
        )
        .values(
            status=M.SENT,
            sending_at=now,
            sent_at=now,
            attempts=OutboxMessage.attempts + 1,
            provider_id=provider_id,
            error=None,
        )
        .returning(OutboxMessage.body_text)
    ).first()
    return None if row is None else (row[0] or "")


@router.post(STATUS_CALLBACK_PATH, response_class=Response)
def message_status(
    form: Annotated[dict[str, str], Depends(signed_form(STATUS_CALLBACK_PATH))],
    rt: RuntimeDep,
    now: NowDep,
    outbox: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """Move the outbox row forward only; an unknown SID or status changes nothing."""
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    new_status = STATUS_MAP.get(form.get("MessageStatus", "").lower())
    code = form.get("ErrorCode") or None
    if sid and new_status is not None:
        with rt.session() as session:
            changed = record_provider_status(
                session,
                sid,
                new_status,
                now=now,
                error=f"twilio {code}" if code else None,
                outbox_id=outbox,
            )
            if changed and new_status == M.FAILED and code == str(UNSUBSCRIBED):
                provider_opt_out(session, sid, f"twilio {code}: recipient unsubscribed", now=now)
        log.info(
            "twilio status",
            message_sid=sid,
            status=new_status.value,
            changed=changed,
            error_code=code,
        )
    return Response(status_code=status.HTTP_200_OK)
