"""``str.translate`` tables that answer for every ASCII character.

``str.translate`` looks up each distinct character of a text in its table, and a character
the table lacks costs a raised and caught ``KeyError``: ~30 of them per SMS when it was
normalised, 3.2 of the 3.7 µs that took (``bench/HISTORY.md``, fifteenth session). Mapping
the ASCII characters a table leaves alone to themselves gives the same text without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ASCII_AS_IS = {code: code for code in range(128)}


def ascii_complete(table: Mapping[int, Any]) -> dict[int, Any]:
    """``table`` (as ``str.maketrans`` makes it) plus every ASCII character it does not map,
    mapped to itself."""
    return {**_ASCII_AS_IS, **table}
