"""Phone numbers checked and written as E.164 by phonenumbers, two of its steps sped up.

- ``phonenumbers.parse`` strips a number to its digits twice, character by character
  through a Unicode digit lookup (it accepts Arabic-Indic and full-width digits): ~4 of the
  ~21 µs a US number takes, which bulk enrolment pays per row. For an ASCII string the
  answer is its characters 0-9 (or the string itself, when non-digits are kept), which
  ``str.translate`` gives in one C call; anything else goes to the library's own filter.
- It then searches the number for an extension ("x12", ";ext=12", "#12", ",,12", ...) with
  one large pattern tried at every position. Each of its forms needs a letter, "#", ",",
  ";", "~" or a character outside ASCII, so a number of digits, spaces and ``+-()./`` has
  none, which one small pattern tells; anything else goes to the library's own search.

The library calls both through its module's global names, which is where the faster ones
go; numbers and errors are unchanged (``tests/unit/test_phone_check.py`` compares them with
the library's own steps). The library's own switch for checking many numbers, keeping every
compiled metadata pattern (otherwise ~12 look-ups in the ``re`` module's cache per number),
is on.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, phonenumberutil

from campaigns.translate_tables import ascii_complete

__all__ = ["installed", "normalized"]

_CHECK_NAME = "normalize_digits_only"
_library_filter: Any = getattr(phonenumberutil, _CHECK_NAME, None)
#: ``str.translate`` table deleting every ASCII character but 0-9.
_ASCII_NON_DIGITS = ascii_complete(dict.fromkeys(c for c in range(128) if not 48 <= c <= 57))


def _digits_only(number: Any, keep_non_digits: bool = False) -> Any:
    if isinstance(number, str) and number.isascii():
        return number if keep_non_digits else number.translate(_ASCII_NON_DIGITS)
    return _library_filter(number, keep_non_digits)


_EXTENSION_NAME = "_maybe_strip_extension"
_library_strip: Any = getattr(phonenumberutil, _EXTENSION_NAME, None)
#: Numbers in which none of the library's extension forms can occur.
_NO_EXTENSION = re.compile(r"[0-9 +\-()./\t]*")


def _strip_extension(number: Any) -> Any:
    """(extension or "", the number before it), as the library answers."""
    if isinstance(number, str) and _NO_EXTENSION.fullmatch(number):
        return "", number
    return _library_strip(number)


def installed() -> bool:
    """Whether phonenumbers calls the faster steps (a library upgrade that renames its
    internals turns them off rather than breaking number checks; a test notices)."""
    return (
        getattr(phonenumberutil, _CHECK_NAME, None) is _digits_only
        and getattr(phonenumberutil, _EXTENSION_NAME, None) is _strip_extension
    )


def normalized(raw: str, region: str = "US") -> str:
    """E.164 or a ValueError saying why; a number that cannot receive texts is refused."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone {raw!r} is not a phone number ({exc})") from None
    if not _valid(number):
        raise ValueError(f"phone {raw!r} is not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _valid(number: phonenumbers.PhoneNumber) -> bool:
    """``phonenumbers.is_valid_number``, with one pass over the number-type patterns instead
    of two for a number valid in its calling code's main region (the US for +1): the library
    first finds the number's region by trying each region's patterns in turn, the main region
    first, then tries that region's patterns again. A number valid in the main region is the
    one the library would find there (when that region names no leading digits), so it is
    valid; any other number gets the library's own answer."""
    main = _main_region(number.country_code)
    if main is not None and phonenumbers.is_valid_number_for_region(number, main):
        return True
    return bool(phonenumbers.is_valid_number(number))


@cache
def _main_region(country_code: int) -> str | None:
    """The region ``region_code_for_number`` settles on first for a number valid there."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions:
        return None
    metadata = PhoneMetadata.metadata_for_region(regions[0], None)
    if metadata is None or (len(regions) > 1 and metadata.leading_digits is not None):
        return None
    return str(regions[0])


phonenumbers.enable_pattern_cache()
if callable(_library_filter):
    setattr(phonenumberutil, _CHECK_NAME, _digits_only)
if callable(_library_strip):
    setattr(phonenumberutil, _EXTENSION_NAME, _strip_extension)
