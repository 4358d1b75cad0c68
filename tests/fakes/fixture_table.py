"""Shared helpers of the channels' fixture tables (courier's way): run a raw request through
verify → parse as gateway/web/webhooks.py does, and
compare a message with a fixture's expectation."""

from __future__ import annotations

from typing import Any

import pytest

from channels.base import Channel, InboundMessage, MalformedError, RawRequest, SignatureError


def run_route(channel: Channel, raw: RawRequest) -> tuple[int, list[InboundMessage]]:
    """What gateway/web/webhooks.py does: verify → parse, as (status, messages)."""
    try:
        channel.verify(raw)
    except SignatureError as exc:
        return exc.status, []
    try:
        return 200, channel.parse(raw)
    except MalformedError:
        return 400, []


def check_field(msg: InboundMessage, key: str, value: Any) -> None:
    """Assert one expected field of a fixture on a parsed message."""
    if key == "external_id_prefix":
        assert msg.external_id.startswith(value)
    elif key == "text_length":
        assert len(msg.text) == value
    elif key == "received_at":
        assert msg.received_at.isoformat() == value
    elif key == "attachments":
        got = [{k: getattr(a, k) for k in exp} for a, exp in zip(msg.attachments, value)]
        assert got == value and len(msg.attachments) == len(value)
    elif key == "location":
        assert msg.location is not None
        for k, v in value.items():
            got = getattr(msg.location, k)
            assert got == (v if k == "address" else pytest.approx(v)), k
    else:
        assert getattr(msg, key) == value, key
