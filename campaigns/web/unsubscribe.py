"""``/unsubscribe/{token}``: leave the program from a link, with no login.

GET only shows a confirmation page: link scanners and mail-client previews fetch every URL
in an email, and a GET that unsubscribed would unsubscribe patients who never clicked.
POST unsubscribes, both from the page's button and as RFC 8058 one-click, which mail
clients send as ``List-Unsubscribe=One-Click`` to the List-Unsubscribe URL.

The pages show no patient data (a forwarded email's link reveals nothing) and are never
cached or sent as a Referer, since the token is in the URL.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from campaigns.email_headers import ONE_CLICK
from campaigns.enums import Channel
from campaigns.inbound_email import unsubscribe
from campaigns.models import utcnow
from campaigns.runtime import Runtime
from campaigns.tokens import InvalidToken, UnsubscribeClaim, read_unsubscribe_token
from campaigns.web.deps import RuntimeDep

router = APIRouter(tags=["unsubscribe"])
ONE_CLICK_METHOD = "email one-click unsubscribe"
PAGE_METHOD = "unsubscribe page"
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}
_STYLE = (
    "body{font-family:Helvetica,Arial,sans-serif;background:#f3f1ec;color:#2b2b2b;margin:0}"
    "main{max-width:480px;margin:48px auto;background:#fff;border:1px solid #e2ded6;"
    "border-radius:10px;padding:28px}h1{font-size:22px;color:#2f4f46}"
    "button{font-size:16px;padding:10px 18px;border-radius:6px;border:0;"
    "background:#2f6b5c;color:#fff;cursor:pointer}"
)


async def is_one_click(request: Request) -> bool:
    """RFC 8058 bodies come form-encoded or as multipart/form-data; both are read."""
    async with request.form() as form:
        return form.get("List-Unsubscribe") == ONE_CLICK.partition("=")[2]


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def confirm_page(token: str, rt: RuntimeDep) -> HTMLResponse:
    claim = _claim(rt, token)
    if isinstance(claim, str):
        return _invalid(rt, claim)
    messages = _messages(claim.channel)
    return _page(
        rt,
        f"Stop {messages} from {rt.settings.clinic_name}?",
        f"<p>You will no longer get program {messages} from "
        f"{escape(rt.settings.clinic_name)}.</p>"
        '<form method="post"><button type="submit" name="confirm" value="yes">'
        "Unsubscribe</button></form>",
    )


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_now(
    token: str, one_click: Annotated[bool, Depends(is_one_click)], rt: RuntimeDep
) -> HTMLResponse:
    claim = _claim(rt, token)
    if isinstance(claim, str):
        return _invalid(rt, claim)
    method = ONE_CLICK_METHOD if one_click else PAGE_METHOD
    try:
        with rt.session() as session:
            unsubscribe(session, claim, method=method, now=utcnow())
    except LookupError:
        return _invalid(rt, "this link is not valid")
    return _page(
        rt,
        "You are unsubscribed",
        f"<p>{escape(rt.settings.clinic_name)} will send you no more program "
        f"{_messages(claim.channel)}.</p>{_contact(rt)}",
    )


def _claim(rt: Runtime, token: str) -> UnsubscribeClaim | str:
    """The claim, or why the link does not work (expired or not valid)."""
    try:
        return read_unsubscribe_token(rt.settings.signing_key, token)
    except InvalidToken as exc:
        return str(exc)


def _messages(channel: Channel) -> str:
    return "emails" if channel == Channel.EMAIL else "text messages"


def _contact(rt: Runtime) -> str:
    phone = rt.settings.clinic_phone
    return f"<p>Changed your mind or need help? Call us at {escape(phone)}.</p>" if phone else ""


def _invalid(rt: Runtime, reason: str) -> HTMLResponse:
    body = (
        f"<p>Sorry, {escape(reason)}. Nothing has been changed.</p>"
        "<p>You can still stop messages by replying STOP to any of them.</p>" + _contact(rt)
    )
    return _page(rt, "This unsubscribe link is invalid or has expired", body, status_code=400)


def _page(rt: Runtime, title: str, body: str, *, status_code: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><main><h1>{escape(title)}</h1>{body}"
        f"<p><small>{escape(rt.settings.clinic_name)}</small></p></main></body></html>"
    )
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)
