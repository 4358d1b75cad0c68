"""InboundMessage/OutboundMessage ⇄ JSON-ready dicts, for the event store and the outbox.

`message_to_dict` is on the ingest hot path: it copies `raw` shallowly (the provider event
fresh from json.loads, serialised to the database before anyone could touch it) instead of
dataclasses.asdict's deep copy. Events stored before `InboundMessage.meta` existed have no
"meta" key: their flags are read back from where the channels used to put them in `raw`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from channels.base import (
    NO_META,
    Attachment,
    Button,
    GeoPoint,
    InboundMessage,
    MessageMeta,
    OutboundMessage,
)

_FIELDS = tuple(f.name for f in fields(InboundMessage))
_META_FIELDS = frozenset(f.name for f in fields(MessageMeta))


def message_to_dict(msg: InboundMessage) -> dict[str, Any]:
    """Serialise an inbound message (raw provider event included, copied shallowly)."""
    data: dict[str, Any] = {name: getattr(msg, name) for name in _FIELDS}
    data["attachments"] = [asdict(a) for a in msg.attachments]
    data["location"] = asdict(msg.location) if msg.location is not None else None
    data["received_at"] = msg.received_at.isoformat()
    data["raw"] = dict(msg.raw)
    data["meta"] = asdict(msg.meta)
    return data


def legacy_meta(channel: str, raw: Mapping[str, Any]) -> MessageMeta:
    """The flags of an event stored before `meta`: voice kept them at the top of raw,
    Telegram under raw["paht"]. Other channels' raw is the citizen's own payload (web chat
    JSON), so nothing there is taken as a flag."""
    if channel == "voice":
        transcribed = raw.get("transcribed") is True
        confidence = raw.get("confidence")
        error = raw.get("stt_error")
        return MessageMeta(
            silent=raw.get("silent") is True, transcribed=transcribed,
            confidence=float(confidence) if transcribed and isinstance(confidence, int | float)
            else None,
            stt_error=str(error) if error else None,
        )
    flags = raw.get("paht") if channel == "telegram" else None
    if not isinstance(flags, Mapping):
        return NO_META
    callback = flags.get("callback_query_id")
    return MessageMeta(callback_id=str(callback) if callback else None,
                       foreign_contact=flags.get("foreign_contact") is True,
                       invalid_phone=flags.get("invalid_phone") is True)


def _meta(data: Mapping[str, Any]) -> MessageMeta:
    stored = data.get("meta")
    if isinstance(stored, Mapping):
        return MessageMeta(**{k: v for k, v in stored.items() if k in _META_FIELDS})
    return legacy_meta(str(data.get("channel") or ""), data.get("raw") or {})


def message_from_dict(data: dict[str, Any]) -> InboundMessage:
    """Rebuild an inbound message stored by `message_to_dict` (or by its older versions)."""
    loc = data.get("location")
    return InboundMessage(
        channel=data["channel"],
        external_id=data["external_id"],
        sender=data["sender"],
        text=data.get("text") or "",
        received_at=datetime.fromisoformat(data["received_at"]),
        attachments=tuple(Attachment(**a) for a in data.get("attachments") or ()),
        location=GeoPoint(**loc) if loc else None,
        contact_phone=data.get("contact_phone"),
        sender_name=data.get("sender_name"),
        kind=data.get("kind") or "message",
        reply_to=data.get("reply_to"),
        postback=data.get("postback"),
        raw=data.get("raw") or {},
        meta=_meta(data),
    )


def outbound_to_dict(msg: OutboundMessage) -> dict[str, Any]:
    """Serialise an outbound message for the outbox."""
    data = asdict(msg)
    data["last_inbound_at"] = msg.last_inbound_at.isoformat() if msg.last_inbound_at else None
    data["metadata"] = dict(msg.metadata)
    return data


def outbound_from_dict(data: dict[str, Any]) -> OutboundMessage:
    """Rebuild an outbound message from the outbox."""
    last = data.get("last_inbound_at")
    return OutboundMessage(
        channel=data["channel"],
        recipient=data["recipient"],
        text=data.get("text") or "",
        buttons=tuple(Button(**b) for b in data.get("buttons") or ()),
        attachments=tuple(Attachment(**a) for a in data.get("attachments") or ()),
        reply_to=data.get("reply_to"),
        last_inbound_at=datetime.fromisoformat(last) if last else None,
        metadata=data.get("metadata") or {},
    )
