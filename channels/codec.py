"""InboundMessage/OutboundMessage ⇄ JSON-ready dicts, for the event store and the outbox."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from channels.base import Attachment, Button, GeoPoint, InboundMessage, OutboundMessage


def message_to_dict(msg: InboundMessage) -> dict[str, Any]:
    """Serialise an inbound message (raw provider event included)."""
    data = asdict(msg)
    data["received_at"] = msg.received_at.isoformat()
    data["raw"] = dict(msg.raw)
    return data


def message_from_dict(data: dict[str, Any]) -> InboundMessage:
    """Rebuild an inbound message stored by `message_to_dict`."""
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
