"""Helpers for the Messenger Send API, shared in part with channels/zalo.py.

Send API: https://developers.facebook.com/docs/messenger-platform/reference/send-api/
Error codes: https://developers.facebook.com/docs/messenger-platform/error-codes
Button numbering, the reply window check and phone normalisation are shared with
channels/zalo.py; media downloads live in channels/download.py, text splitting in
channels/text.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers

from channels.base import Button, OutboundMessage, SendError, utcnow
from channels.text import split_text

# Messenger refuses text over 2,000 characters; quick replies: at most 13, titles ≤ 20 chars.
MAX_TEXT = 2000
MAX_QUICK_REPLIES = 13
MAX_QR_TITLE = 20

# Graph error codes (code, or code-subcode) → policy. Rate limits: 4 app, 17 user, 32 page,
# 613 "calls to this api have exceeded the rate limit", 80006 Messenger business-use-case
# rate limit. 1/2 are "unknown/unexpected, retry later"; 1200 "temporary send message failure".
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80006})
TRANSIENT_CODES = frozenset({1, 2, 1200})
# Subcode 2018278: "(#10) This message is sent outside of allowed window".
WINDOW_SUBCODES = frozenset({2018278})
# Permanent for this recipient/payload: 10 permission, 100 invalid parameter (2018001 no
# matching user), 190 invalid token, 200 permission, 368 policy block, 551 "this person
# isn't available right now". They are not retried (the default for unknown codes too).
RATE_LIMIT_RETRY_AFTER = 60.0


def window_closed(last_inbound_at: datetime | None, window: timedelta) -> bool:
    """True when the citizen's last message is older than `window` (unknown → let the
    provider decide). A naive timestamp (SQLite) is taken as UTC."""
    if last_inbound_at is None:
        return False
    if last_inbound_at.tzinfo is None:
        last_inbound_at = last_inbound_at.replace(tzinfo=UTC)
    return utcnow() - last_inbound_at > window


def phone_e164(value: Any) -> str | None:
    """A phone as Zalo/Messenger send it ("84912345678", "0912345678", "+84 912…") as E.164."""
    raw = re.sub(r"[^\d+]", "", str(value or ""))
    if not raw:
        return None
    if raw.startswith("84") and len(raw) >= 11:
        raw = "+" + raw  # Zalo writes numbers as 84xxxxxxxxx without the plus
    try:
        num = phonenumbers.parse(raw, "VN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def numbered_buttons(buttons: Iterable[Button]) -> str:
    """Plain-text rendering of buttons for providers (or kinds) without native support."""
    lines = []
    for i, b in enumerate(buttons, start=1):
        lines.append(f"{i}. {b.title}: {b.payload}" if b.kind == "url" else f"{i}. {b.title}")
    return "\n".join(lines)


def build_messenger_payloads(psid: str, message: OutboundMessage) -> list[dict[str, Any]]:
    """Turn an OutboundMessage into the Send API request bodies, in order."""
    native = [b for b in message.buttons if b.kind in ("reply", "contact")]
    plain = [b for b in message.buttons if b.kind not in ("reply", "contact")]
    text = message.text
    # Messenger dropped the location quick reply (2019): "location" and "url" become text,
    # and so do reply buttons whose titles would be cut at 20 characters.
    if any(len(b.title) > MAX_QR_TITLE for b in native) or len(native) > MAX_QUICK_REPLIES:
        plain, native = list(message.buttons), []
    if plain:
        text = f"{text}\n\n{numbered_buttons(plain)}" if text else numbered_buttons(plain)
    quick_replies: list[dict[str, str]] = []
    for b in native:
        if b.kind == "contact":
            # Messenger pre-fills the user's phone; the answer comes back as a quick reply
            # whose payload is the number itself.
            quick_replies.append({"content_type": "user_phone_number"})
        else:
            quick_replies.append({"content_type": "text", "title": b.title, "payload": b.payload})
    bodies: list[dict[str, Any]] = []
    chunks = split_text(text, MAX_TEXT)
    for i, chunk in enumerate(chunks):
        msg: dict[str, Any] = {"text": chunk, "metadata": "paht"}
        if quick_replies and i == len(chunks) - 1:
            msg["quick_replies"] = quick_replies
        bodies.append(msg)
    for att in message.attachments:
        kind = att.kind if att.kind in ("image", "audio", "video", "file") else "file"
        bodies.append({"attachment": {"type": kind, "payload": {"url": att.url,
                                                                "is_reusable": False}},
                       "metadata": "paht"})
    return [
        {"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": m} for m in bodies
    ]


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """HMAC-SHA256(app secret, token): required when the app enables "Require App Secret"."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def classify_graph_error(status: int, body: Mapping[str, Any] | None) -> SendError:
    """Map a Graph API error response to a SendError carrying its retry policy."""
    err = (body or {}).get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        retryable = status >= 500 or status == 429
        return SendError(f"graph http {status}", retryable=retryable, code=f"http_{status}")
    code = _int(err.get("code"))
    sub = _int(err.get("error_subcode"))
    label = f"{code}-{sub}" if sub else str(code)
    msg = f"graph error {label}: {err.get('message', '')}"[:300]
    if sub in WINDOW_SUBCODES:
        return SendError(msg, retryable=False, window_closed=True, code=label)
    if code in RATE_LIMIT_CODES:
        return SendError(msg, retryable=True, retry_after=RATE_LIMIT_RETRY_AFTER, code=label)
    if code in TRANSIENT_CODES or err.get("is_transient") is True or status >= 500:
        return SendError(msg, retryable=True, code=label)
    return SendError(msg, retryable=False, code=label)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
