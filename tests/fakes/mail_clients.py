"""Replies as Gmail, Outlook and Apple Mail write them, built from the email we sent.

Each quotes the original the way that client does (attribution line, ">" quoting or an
Outlook From:/Sent: block, ``blockquote`` in HTML), adds its usual signature, and threads
with In-Reply-To/References unless told not to, as some forwarders drop them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from html import escape

PATIENT_NAME = "Sam Rivera"
Client = Callable[..., bytes]


def _text(original: EmailMessage, subtype: str) -> str:
    part = original.get_body((subtype,))
    assert part is not None, f"the original has no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def _body_html(original: EmailMessage) -> str:
    html = _text(original, "html")
    match = re.search(r"<body[^>]*>(.*)</body>", html, re.DOTALL | re.IGNORECASE)
    return match.group(1) if match else html


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines())


def _sender(original: EmailMessage) -> tuple[str, str]:
    address = original["From"].addresses[0]
    return address.display_name, address.addr_spec


def _reply(
    original: EmailMessage,
    patient: str,
    text: str | None,
    html: str | None,
    *,
    domain: str,
    threaded: bool = True,
) -> bytes:
    reply = EmailMessage(policy=policy.SMTP)
    reply["From"] = f"{PATIENT_NAME} <{patient}>"
    reply["To"] = str(original["Reply-To"])
    reply["Subject"] = f"Re: {original['Subject']}"
    reply["Date"] = format_datetime(parsedate_to_datetime(str(original["Date"])))
    reply["Message-ID"] = make_msgid(domain=domain)
    if threaded:
        reply["In-Reply-To"] = str(original["Message-ID"])
        reply["References"] = str(original["Message-ID"])
    if text is not None:
        reply.set_content(text)
    if html is not None and text is not None:
        reply.add_alternative(html, subtype="html")
    elif html is not None:
        reply.set_content(html, subtype="html")
    return reply.as_bytes()


def gmail(
    original: EmailMessage, patient: str, words: str, *, html_only: bool = False, **kw: bool
) -> bytes:
    name, address = _sender(original)
    when = parsedate_to_datetime(str(original["Date"]))
    stamp = f"{when:%a, %b} {when.day}, {when:%Y} at {when:%I:%M %p}".replace(" 0", " ")
    # Gmail wraps the attribution line before the address when it is long.
    quoted = _quoted(_text(original, "plain"))
    text = f"{words}\n\nOn {stamp} {name} <\n{address}> wrote:\n\n{quoted}\n"
    html = (
        f'<div dir="ltr">{escape(words)}</div><br><div class="gmail_quote">'
        f'<div dir="ltr" class="gmail_attr">On {stamp} {escape(name)} &lt;<a href="mailto:'
        f'{address}">{address}</a>&gt; wrote:<br></div><blockquote class="gmail_quote" '
        'style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);'
        f'padding-left:1ex">{_body_html(original)}</blockquote></div>'
    )
    return _reply(
        original, patient, None if html_only else text, html, domain="mail.gmail.com", **kw
    )


def outlook(
    original: EmailMessage, patient: str, words: str, *, html_only: bool = False, **kw: bool
) -> bytes:
    name, address = _sender(original)
    when = parsedate_to_datetime(str(original["Date"]))
    sent = f"{when:%A, %B} {when.day}, {when:%Y} {when:%I:%M %p}".replace(" 0", " ")
    header = (
        f"From: {name} <{address}>\nSent: {sent}\nTo: {PATIENT_NAME} <{patient}>\n"
        f"Subject: {original['Subject']}"
    )
    text = f"{words}\n\nBest regards,\nSam\n\n{'_' * 32}\n{header}\n\n{_text(original, 'plain')}\n"
    fields = (line.split(": ", 1) for line in header.split("\n"))
    html_header = "<br>".join(f"<b>{escape(k)}:</b> {escape(v)}" for k, v in fields)
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        '<style type="text/css">p{margin:0}</style></head><body dir="ltr">'
        f'<div style="font-family:Aptos,sans-serif;font-size:12pt">{escape(words)}</div>'
        "<div><br></div><div>Best regards,</div><div>Sam</div>"
        '<div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1">'
        f'<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri" style="font-size:11pt">'
        f"{html_header}</font><div>&nbsp;</div></div>{_body_html(original)}</body></html>"
    )
    return _reply(original, patient, None if html_only else text, html, domain="outlook.com", **kw)


def apple_mail(
    original: EmailMessage, patient: str, words: str, *, html_only: bool = False, **kw: bool
) -> bytes:
    name, address = _sender(original)
    when = parsedate_to_datetime(str(original["Date"]))
    stamp = f"{when:%b} {when.day}, {when:%Y}, at {when:%I:%M %p}".replace(" 0", " ")
    attribution = f"On {stamp}, {name} <{address}> wrote:"
    text = (
        f"{words}\n\nSent from my iPhone\n\n> {attribution}\n> \n"
        f"{_quoted(_text(original, 'plain'))}\n"
    )
    html = (
        '<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
        f'<body dir="auto"><div dir="ltr">{escape(words)}</div><div dir="ltr"><br></div>'
        '<div dir="ltr">Sent from my iPhone</div><div dir="ltr"><br><blockquote type="cite">'
        f"{escape(attribution)}<br><br></blockquote></div>"
        f'<blockquote type="cite"><div dir="ltr">{_body_html(original)}</div></blockquote>'
        "</body></html>"
    )
    return _reply(original, patient, None if html_only else text, html, domain="icloud.com", **kw)


CLIENTS: dict[str, Client] = {"gmail": gmail, "outlook": outlook, "apple-mail": apple_mail}
