"""Telegram Update parsing: the raw Update JSON (https://core.telegram.org/bots/api#update)
to `InboundMessage`s. Shared by the webhook route and long polling; pure, no network.

`InboundMessage.raw` is the Update as Telegram sent it; `InboundMessage.meta` carries the
`callback_id` of a button press and `foreign_contact` / `invalid_phone` when a shared contact
was not usable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import phonenumbers

from channels.base import (
    Attachment,
    GeoPoint,
    InboundMessage,
    MalformedError,
    MessageMeta,
    from_epoch,
    utcnow,
)
from channels.text import nfc

_COMMAND_AT = re.compile(r"^(/[A-Za-z0-9_]+)@[A-Za-z0-9_]+(?=\s|$)")


def normalize_phone(raw: str, region: str = "VN") -> str | None:
    """A shared phone number in E.164, or None when it is not a valid number."""
    cleaned = raw.strip()
    # Telegram sends the owner's number without "+" ("84905123456"); try it as international
    # first, then as a national number of `region` ("0905123456").
    candidates = [cleaned] if cleaned.startswith(("+", "0")) else ["+" + cleaned, cleaned]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _name(user: Mapping[str, Any] | None) -> str | None:
    if not user:
        return None
    full = " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p)
    return nfc(full) or None


def _kind_for_mime(mime: str | None, default: str) -> str:
    major = (mime or "").split("/", 1)[0]
    return {"image": "image", "audio": "audio", "video": "video"}.get(major, default)


def _attachments(msg: Mapping[str, Any]) -> list[Attachment]:
    """Media of a message; `url` holds the file_id (fetch_media resolves it with getFile)."""
    out: list[Attachment] = []
    photos = msg.get("photo")
    if isinstance(photos, list) and photos:
        best = photos[-1]  # PhotoSize array is ascending: the last one is the largest
        out.append(Attachment("image", str(best["file_id"]), "image/jpeg", best.get("file_size")))
    if voice := msg.get("voice"):  # voice notes are OGG/Opus
        out.append(Attachment("audio", str(voice["file_id"]),
                              voice.get("mime_type") or "audio/ogg", voice.get("file_size")))
    if audio := msg.get("audio"):
        out.append(Attachment("audio", str(audio["file_id"]), audio.get("mime_type"),
                              audio.get("file_size"), audio.get("file_name")))
    if video := msg.get("video"):
        out.append(Attachment("video", str(video["file_id"]), video.get("mime_type") or "video/mp4",
                              video.get("file_size"), video.get("file_name")))
    if note := msg.get("video_note"):
        out.append(Attachment("video", str(note["file_id"]), "video/mp4", note.get("file_size")))
    # An animation (GIF) also carries a `document` copy; like stickers it is not evidence.
    if (doc := msg.get("document")) and not msg.get("animation"):
        mime = doc.get("mime_type")  # photos sent "as file" arrive as image/* documents
        out.append(Attachment(_kind_for_mime(mime, "file"), str(doc["file_id"]), mime,
                              doc.get("file_size"), doc.get("file_name")))
    return out


def _location(msg: Mapping[str, Any]) -> GeoPoint | None:
    venue = msg.get("venue")
    if venue and venue.get("location"):
        loc = venue["location"]
        label = ", ".join(p for p in (venue.get("title"), venue.get("address")) if p)
        return GeoPoint(float(loc["latitude"]), float(loc["longitude"]), nfc(label) or None)
    loc = msg.get("location")
    if loc:
        return GeoPoint(float(loc["latitude"]), float(loc["longitude"]))
    return None


def _button_title(query: Mapping[str, Any], data: str) -> str:
    """The title of the inline button that carried `data` (so transcripts read naturally)."""
    markup = (query.get("message") or {}).get("reply_markup") or {}
    for row in markup.get("inline_keyboard") or []:
        for button in row:
            if button.get("callback_data") == data:
                return nfc(str(button.get("text", "")))
    return ""


def _from_callback(update: Mapping[str, Any], update_id: int) -> list[InboundMessage]:
    query = update["callback_query"]
    data = query.get("data")
    if data is None:  # game callbacks and inline-mode buttons carry no data
        return []
    user = query.get("from") or {}
    origin = query.get("message") or {}
    chat_id = (origin.get("chat") or {}).get("id", user.get("id"))
    if chat_id is None:
        raise MalformedError("callback_query without chat or from")
    return [InboundMessage(
        channel="telegram", external_id=str(update_id), sender=f"telegram:{chat_id}",
        text=_button_title(query, str(data)),
        received_at=utcnow(),  # a callback_query has no timestamp of its own
        sender_name=_name(user), kind="postback", postback=str(data),
        reply_to=str(origin["message_id"]) if "message_id" in origin else None, raw=dict(update),
        meta=MessageMeta(callback_id=str(query.get("id", "")) or None),
    )]


def parse_update(update: Mapping[str, Any], region: str = "VN") -> list[InboundMessage]:
    """Messages of one Update dict (webhook body or getUpdates item); [] for ignored kinds."""
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise MalformedError("update_id missing or not an integer")
    try:
        if "callback_query" in update:
            return _from_callback(update, update_id)
        if "message" in update:
            msg, kind, external_id = update["message"], "message", str(update_id)
        elif "edited_message" in update:
            msg, kind, external_id = update["edited_message"], "edit", f"edit:{update_id}"
        else:
            # my_chat_member, channel posts, polls, inline queries…: not citizen reports
            return []
        return _from_message(update, msg, kind, external_id, region)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedError(f"unexpected update shape: {type(exc).__name__}") from exc


def _from_message(update: Mapping[str, Any], msg: Mapping[str, Any], kind: str,
                  external_id: str, region: str) -> list[InboundMessage]:
    chat_id = msg["chat"]["id"]
    user = msg.get("from") or {}
    text = nfc(str(msg.get("text") or msg.get("caption") or ""))
    # "/start@PahtBot" in groups: the dialog recognises commands by their bare name.
    text = _COMMAND_AT.sub(r"\1", text)
    attachments = _attachments(msg)
    location = _location(msg)
    foreign = invalid = False
    contact_phone: str | None = None
    if contact := msg.get("contact"):
        # Only the sender's own card counts: a forwarded card would attach someone else's
        # number to this citizen.
        if contact.get("user_id") is not None and contact.get("user_id") == user.get("id"):
            contact_phone = normalize_phone(str(contact.get("phone_number", "")), region)
            invalid = contact_phone is None
        else:
            foreign = True
        if contact_phone and kind == "message":
            kind = "contact"
    if not text and not attachments and location is None and "contact" not in msg:
        return []  # stickers, dice, service messages (chat photo, pinned…)
    date: Any = msg.get("edit_date") if kind == "edit" and msg.get("edit_date") else msg["date"]
    reply = msg.get("reply_to_message") or {}
    return [InboundMessage(
        channel="telegram", external_id=external_id, sender=f"telegram:{chat_id}", text=text,
        received_at=from_epoch(date), attachments=tuple(attachments), location=location,
        contact_phone=contact_phone, sender_name=_name(user), kind=kind,
        reply_to=str(reply["message_id"]) if "message_id" in reply else None, raw=dict(update),
        meta=MessageMeta(foreign_contact=foreign, invalid_phone=invalid),
    )]
