"""From a reply's MIME body to the words the patient actually wrote.

Quoted program text ("Reply STOP to opt out", "call 988") and signatures must never be
parsed as the patient's own words, so they are cut here, with a maintained library first
and a conservative fallback.
"""

from __future__ import annotations

import re
from email.message import EmailMessage, MIMEPart
from html.parser import HTMLParser

from mailparser_reply import EmailMessage as ReplyThread

from campaigns.replies import parse_reply

#: A "signature" longer than this is more likely the patient's words than a sign-off.
MAX_SIGNATURE_LINES = 6


def body_text(message: EmailMessage) -> str | None:
    """The plain part, else the HTML part as text; None when the email has no text at all."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return None
    text = _decoded(part)
    return html_to_text(text) if part.get_content_type() == "text/html" else text


def _decoded(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


# --- the patient's new words ----------------------------------------------------------------


_QUOTED = re.compile(r"^[ \t]*>.*(?:\n|$)", re.MULTILINE)
_ATTRIBUTION = re.compile(r"^[ \t]*on\b[^\n]{0,300}\bwrote:[ \t]*(?:\n|$)", re.I | re.M)
_FALLBACK_CUT = re.compile(
    r"^[ \t]*(?:on\b.{0,300}\bwrote:[ \t]*$|-{2,}[ \t]*original message|_{10,}[ \t]*$"
    r"|from:[ \t].*\n[ \t]*(?:sent|date):|--[ \t]*$|sent from my\b|get outlook for\b)",
    re.IGNORECASE | re.MULTILINE,
)


def new_words(body: str) -> str:
    """What the patient wrote above (or between) the quoted email, without signatures.

    ``mailparser_reply`` splits the thread at "On ... wrote:" and Outlook "From:/Sent:"
    headers and finds signatures; ">" lines are dropped after it. Two guards keep a
    patient's words from being mistaken for cruft: a "signature" longer than a few lines
    is kept, and if dropping the signature would hide crisis language, it is kept too.
    """
    text = body.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    try:
        words = _library_words(text)
    except Exception:  # a parser bug must not lose the reply: fall back
        words = None
    return words if words is not None else _fallback_words(text)


def _library_words(text: str) -> str | None:
    replies = ReplyThread(text=text, languages=["en"], keep_hyphen_lists=True).read().replies
    for reply in replies:
        with_signature = _unquoted(reply.full_body)
        without = _unquoted(reply.body)
        if not with_signature:
            continue
        if not without or len(reply.signatures.splitlines()) > MAX_SIGNATURE_LINES:
            return with_signature
        if parse_reply(with_signature).crisis and not parse_reply(without).crisis:
            return with_signature
        return without
    return None


def _fallback_words(text: str) -> str:
    cut = _FALLBACK_CUT.search(text)
    head = text[: cut.start()] if cut else text
    return _unquoted(head) or _unquoted(text)


def _unquoted(text: str) -> str:
    return _ATTRIBUTION.sub("", _QUOTED.sub("", text)).strip()


# --- HTML-only replies ----------------------------------------------------------------------


_BLOCKS = frozenset(
    {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
)
_SKIPPED = frozenset({"head", "style", "script", "title", "template"})
_QUOTE_CLASSES = ("yahoo_quoted",)  # Yahoo quotes in a div, not a blockquote
_OUTLOOK_SEPARATOR = "_" * 32


class _TextExtractor(HTMLParser):
    """Text with line breaks where blocks end; blockquote content becomes "> " lines so
    the same quote stripping serves plain-text and HTML-only replies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._quote_depth = 0
        self._line_depth = 0
        self._skip = 0
        self._stack: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skip = 0  # an unclosed <head> must not hide the whole message
        if tag in _SKIPPED:
            self._skip += 1
        quoting = tag == "blockquote" or any(
            name == "class" and value and any(c in value for c in _QUOTE_CLASSES)
            for name, value in attrs
        )
        if tag not in ("br", "hr", "img", "meta", "link", "input"):
            self._stack.append((tag, quoting))
        if tag in _BLOCKS:
            self._break()
        if tag == "hr":  # Outlook puts one above the quoted message's From:/Sent: block
            self._break()
            self.lines.extend(["", _OUTLOOK_SEPARATOR])
        if quoting:
            self._break()
            self._quote_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._break()
        if all(open_tag != tag for open_tag, _ in self._stack):
            return  # a stray end tag closes nothing
        while self._stack:
            open_tag, quoting = self._stack.pop()
            if quoting:
                self._break()
                self._quote_depth -= 1
            if open_tag in _SKIPPED:
                self._skip -= 1
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._line:
            self._line_depth = self._quote_depth
        self._line.append(data)

    def _break(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self._line)).strip()
        self._line = []
        if text:
            self.lines.append("> " * self._line_depth + text)

    def text(self) -> str:
        self._break()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return extractor.text()
