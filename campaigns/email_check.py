"""Email addresses checked and normalised by email_validator, two of its steps made cheap.

- email_validator checks the part after the @ character by character against the IDNA
  tables: about two thirds of its time per address, and a fifth of bulk enrolment's time
  per row. A clinic's CSV repeats a handful of domains, and that check is a pure function
  of its arguments, so each process remembers its results (errors are not remembered: a bad
  domain is checked, and refused, every time).
- It then splits the address at its @-sign character by character, normalising a window
  of 32 characters at each one to see whether a combining character follows it (quoted
  local parts and display names need the walk): over half of what was left per address. An
  ASCII address with an @-sign and no quote, backslash or angle bracket is the text before
  its first @-sign and the text after it, so that is what it gets; any other goes the
  library's way.

The library calls both through its module's global names, which is where these versions
go; addresses, normalised forms and error messages are unchanged (``tests/unit/
test_email_check.py`` compares them with the library's own steps over addresses that
exercise each rule).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email

__all__ = ["EmailNotValidError", "normalized"]

#: The module whose ``validate_email`` looks the domain check up by its global name.
_CALLER = sys.modules[validate_email.__module__]
_CHECK_NAME = "validate_email_domain_name"
_library_check: Any = getattr(_CALLER, _CHECK_NAME, None)
_SPLIT_NAME = "split_email"
_library_split: Any = getattr(_CALLER, _SPLIT_NAME, None)
#: Distinct domains remembered per process; an import of 100k rows has a few dozen.
DOMAINS = 4096


@lru_cache(maxsize=DOMAINS)
def _remembered(domain: str, test_environment: bool, globally_deliverable: bool) -> Any:
    return _library_check(
        domain, test_environment=test_environment, globally_deliverable=globally_deliverable
    )


def _domain_check(
    domain: str, test_environment: bool = False, globally_deliverable: bool = True
) -> Any:
    # A copy, so a caller that changed its result could not change the next address's.
    return dict(_remembered(domain, test_environment, globally_deliverable))


def _split(email: str) -> Any:
    """``split_email``'s answer: (display name, local part, unquoted local part, whether it
    was quoted, domain)."""
    plain = email.isascii() and "@" in email
    if plain and '"' not in email and "\\" not in email and "<" not in email:
        local, _, domain = email.partition("@")
        return None, local, local, False, domain
    return _library_split(email)


def installed() -> bool:
    """Whether email_validator calls the remembering check and the quick split (a library
    upgrade that renames its internals turns them off rather than breaking address checks;
    a test notices)."""
    return (
        getattr(_CALLER, _CHECK_NAME, None) is _domain_check
        and getattr(_CALLER, _SPLIT_NAME, None) is _split
    )


def normalized(address: str) -> str:
    """The address as email_validator normalises it, or ``EmailNotValidError`` saying why.
    Syntax only: whether a domain receives mail is learnt when a message bounces."""
    return validate_email(address, check_deliverability=False).normalized


if callable(_library_check):
    setattr(_CALLER, _CHECK_NAME, _domain_check)
if callable(_library_split):
    setattr(_CALLER, _SPLIT_NAME, _split)
