"""Text helpers every channel shares: Unicode NFC and splitting long replies at word breaks."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable


def nfc(value: object) -> str:
    """`value` in Unicode NFC ("" for anything but a string).

    Vietnamese phones send decomposed (NFD) or precomposed diacritics interchangeably; we
    store and match NFC only.
    """
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else ""


def utf16_units(text: str) -> int:
    """Length in UTF-16 code units (how Telegram counts its 4096-character limit)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int, measure: Callable[[str], int]) -> int:
    """How many leading characters of `text` measure at most `limit` (at least one)."""
    if measure is len:
        return max(1, min(limit, len(text)))
    total = 0
    for i, ch in enumerate(text):
        total += measure(ch)
        if total > limit:
            return max(1, i)
    return len(text)


def split_text(text: str, limit: int, *, measure: Callable[[str], int] = len) -> list[str]:
    """Split `text` into chunks of at most `limit` (as `measure` counts), at a line break in
    the second half of the chunk, else at a space there, else hard; [] for blank text."""
    rest = text.strip()
    chunks: list[str] = []
    while measure(rest) > limit:
        fit = _fit(rest, limit, measure)
        # The break character itself is dropped, so it may sit just past the limit.
        cut = rest.rfind("\n", 0, fit + 1)
        if cut < fit // 2 or cut <= 0:
            cut = rest.rfind(" ", 0, fit + 1)
        if cut < fit // 2 or cut <= 0:
            cut = fit
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        chunks.append(rest)
    return chunks
