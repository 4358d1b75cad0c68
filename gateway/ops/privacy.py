"""Masking of citizens' phone numbers and names in logs, and pseudonyms for agencies."""

from __future__ import annotations

import hashlib
import hmac
import re

import phonenumbers

# Phone-shaped candidates as citizens and providers write them: 0905123456, +84 905 123 456,
# 84-905-123-456, +84(912)345678, sđt0912345678 (glued to a word), From=%2B84912345678
# (URL-encoded "+"). Each is masked only when `phonenumbers` says it is a valid number.
_PHONE_RE = re.compile(r"(?<![\d.:])((?:\+|%2[Bb])?\(?\d[\d .\-()]{6,}\d)(?![\d.:]?\d)")
# Never phones: IPv4 addresses (needed to investigate abuse), clock times, dates, tracking
# codes such as PA-2612-000206.
_PROTECTED_RE = re.compile(
    r"\b\d{1,3}(?:\.\d{1,3}){3}\b|\d{1,2}:\d{2}(?::\d{2})?|\d{4}-\d{2}-\d{2}"
    r"|\b[A-Z]{2,}(?:-\d+)+\b")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Vietnamese citizen ID numbers: CCCD has 12 digits, the old CMND 9.
_ID_RE = re.compile(r"(?<!\d)(?:\d{12}|\d{9})(?!\d)")
# "Tôi là Nguyễn Văn An", "tên tôi là …", "tôi tên …": up to four capitalised words.
_NAME_RE = re.compile(
    r"((?:tên\s+(?:tôi|em|mình)\s+là|(?:tôi|em|mình)\s+(?:là|tên(?:\s+là)?))\s+)"
    r"((?:[A-ZÀ-ỸĐ][\wÀ-ỹ]*\s*){1,4})", re.IGNORECASE)


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


def _valid_phone(candidate: str) -> bool:
    plus = candidate.startswith(("+", "%2B", "%2b"))
    digits = re.sub(r"\D", "", candidate[3:] if candidate[:1] == "%" else candidate)
    if not 8 <= len(digits) <= 15:
        return False
    try:
        number = phonenumbers.parse(("+" if plus else "") + digits, "VN")
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def scrub(text: str) -> str:
    """Mask phone numbers in free text; IPs, times, dates and tracking codes stay as they are."""
    if not text:
        return text
    protected = [m.span() for m in _PROTECTED_RE.finditer(text)]

    def replace(match: re.Match[str]) -> str:
        start, end = match.span(1)
        if any(a < end and start < b for a, b in protected):
            return match.group(0)
        candidate = match.group(1).rstrip(" .-(")
        if not _valid_phone(candidate):
            return match.group(0)
        plus = "+" if candidate.startswith(("+", "%2")) else ""
        digits = re.sub(r"\D", "", candidate[3:] if candidate[:1] == "%" else candidate)
        return mask_phone(plus + digits) + match.group(1)[len(candidate):]

    return _PHONE_RE.sub(replace, text)


def mask_public_text(text: str | None) -> str:
    """A citizen's text for a public feed: phones, e-mails, ID numbers and self-given names
    masked (the Open311 GET answers carry no personal data)."""
    if not text:
        return text or ""
    text = _EMAIL_RE.sub("[email]", text)
    text = _PHONE_RE.sub(lambda m: "[số điện thoại]" if _valid_phone(m.group(1)) else m.group(0),
                         text)
    text = _ID_RE.sub("[số giấy tờ]", text)
    return _NAME_RE.sub(lambda m: m.group(1) + mask_name(m.group(2)).rstrip(".") + "."
                        + m.group(2)[len(m.group(2).rstrip()):], text)


def pseudonym(citizen_id: int, secret: str) -> str:
    """A stable pseudonym for a citizen, e.g. CD-7F3A9C21, that agencies see instead of a name."""
    digest = hmac.new(secret.encode() or b"paht", str(citizen_id).encode(), hashlib.sha256)
    return "CD-" + digest.hexdigest()[:8].upper()
