"""Structured logs that never carry patient data.

Health data stays in the database: log records name rows by id. As a second line of
defence a processor drops any field whose name suggests contact details or message text,
and masks anything in a value that looks like a phone number or an email address.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SENSITIVE_KEYS = frozenset(
    {
        "phone",
        "phone_e164",
        "to",
        "email",
        "body",
        "body_text",
        "body_html",
        "text",
        "raw",
        "raw_text",
        "subject",
        "first_name",
        "last_name",
        "name",
        "address",
    }
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
REDACTED = "[redacted]"


def scrub(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SENSITIVE_KEYS:
            event[key] = REDACTED
    message = event.get("event")
    if isinstance(message, str):
        event["event"] = _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, message))
    return event


def _stderr_logger(*_args: Any) -> structlog.WriteLogger:
    """Looks ``sys.stderr`` up per logger, not once: it may be replaced after configuration
    (daemonisation, test capture), and a captured stream bound at start-up goes stale."""
    return structlog.WriteLogger(sys.stderr)


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """JSON lines, each written with one ``write``: a worker's pool processes share its
    stderr, and ``print`` writes the line and its newline separately, so on an unbuffered
    stream (``PYTHONUNBUFFERED=1``, as in containers) two processes' lines ran together."""
    structlog.configure(
        logger_factory=structlog.WriteLoggerFactory(stream) if stream else _stderr_logger,
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            scrub,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
