"""Masking of citizens' phone numbers and names in logs, and pseudonyms for agencies."""

from __future__ import annotations

import hashlib
import hmac
import re

# Vietnamese and international numbers as citizens write them: 0905123456, +84 905 123 456,
# 84-905-123-456. Seven or more digits with optional separators.
_PHONE_RE = re.compile(r"(?<!\w)(\+?\d[\d .\-]{6,}\d)(?!\w)")


def mask_phone(phone: str | None) -> str:
    """+84905123456 → +84*****3456 (keeps enough to tell two numbers apart in a log)."""
    if not phone:
        return ""
    digits = phone.strip()
    if len(digits) <= 4:
        return "*" * len(digits)
    head = 3 if digits.startswith("+") else 2
    return digits[:head] + "*" * max(1, len(digits) - head - 4) + digits[-4:]


def mask_urn(urn: str | None) -> str:
    """Mask the address part of a URN: tel:+84905123456 → tel:+84*****3456."""
    if not urn:
        return ""
    scheme, _, rest = urn.partition(":")
    if not rest:
        return mask_phone(urn)
    if scheme == "tel":
        return f"tel:{mask_phone(rest)}"
    return f"{scheme}:{mask_phone(rest)}" if len(rest) > 6 else f"{scheme}:***"


def mask_name(name: str | None) -> str:
    """Nguyễn Văn An → N. V. A."""
    if not name:
        return ""
    return " ".join(part[0] + "." for part in name.split() if part)


def scrub(text: str) -> str:
    """Replace anything that looks like a phone number in free text."""
    return _PHONE_RE.sub(lambda m: mask_phone(re.sub(r"[ .\-]", "", m.group(1))), text)


def pseudonym(citizen_id: int, secret: str) -> str:
    """A stable pseudonym for a citizen, e.g. CD-7F3A9C21, that agencies see instead of a name."""
    digest = hmac.new(secret.encode() or b"paht", str(citizen_id).encode(), hashlib.sha256)
    return "CD-" + digest.hexdigest()[:8].upper()
