"""The web chat demo channel: the page at `/` posts JSON to `/webhooks/web`.

There is no provider, so authenticity is a per-browser session: the page gets a session id and
an HMAC token for it from `/chat/session`; every post carries both. Replies are not pushed:
they stay in the outbox and the page polls `/chat/messages`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any, ClassVar

from pydantic import Field

from channels.base import (
    Attachment,
    Channel,
    ChannelConfig,
    ChannelTraits,
    GeoPoint,
    InboundMessage,
    MalformedError,
    OutboundMessage,
    RawRequest,
    SendResult,
    SignatureError,
    utcnow,
)
from channels.text import nfc

_SID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TEXT = 5000


def session_token(secret: str, sid: str) -> str:
    """The token that proves a browser owns session `sid`."""
    return hmac.new(secret.encode(), f"web:{sid}".encode(), hashlib.sha256).hexdigest()


class WebConfig(ChannelConfig):
    """PAHT_WEB_ENABLED and the secret that signs browser sessions."""

    web_enabled: bool = Field(validation_alias="web_enabled")
    session_secret: str = Field(validation_alias="session_secret")

    @property
    def enabled(self) -> bool:
        """Enabled unless PAHT_WEB_ENABLED=false."""
        return self.web_enabled


class WebChannel(Channel[WebConfig]):
    """The demo channel that needs no provider account."""

    name: ClassVar[str] = "web"
    config_model: ClassVar[type[ChannelConfig]] = WebConfig
    traits: ClassVar[ChannelTraits] = ChannelTraits(
        label="Web", title="Web chat", reply_window=None, sms_like=False, conversational=True,
        direct_clients=True,  # browsers post here themselves: limit them per IP too
    )
    max_body_bytes: ClassVar[int] = 64_000

    def _body(self, request: RawRequest) -> dict[str, Any]:
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedError("body is not JSON") from exc
        if not isinstance(data, dict):
            raise MalformedError("body is not a JSON object")
        return data

    def verify(self, request: RawRequest) -> None:
        """The session token must match the session id."""
        try:
            data = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return  # parse() answers 400
        sid = data.get("sid") if isinstance(data, dict) else None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(sid, str) or not isinstance(token, str) or not _SID_RE.match(sid):
            raise SignatureError("missing web chat session", status=401)
        expected = session_token(self.config.session_secret, sid)
        # Bytes, not str: compare_digest refuses non-ASCII strings with a TypeError.
        if not hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace")):
            raise SignatureError("bad web chat session token", status=403)

    def parse(self, request: RawRequest) -> list[InboundMessage]:
        """One message per post."""
        data = self._body(request)
        client_id = data.get("id")
        if not isinstance(client_id, str) or not _CLIENT_ID_RE.match(client_id):
            raise MalformedError("message id missing")
        text = data.get("text") or ""
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise MalformedError("text must be a string of at most 5000 characters")
        text = nfc(text).strip()
        location = None
        loc = data.get("location")
        if loc is not None:
            try:
                lat, lon = float(loc["lat"]), float(loc["lon"])
            except (KeyError, TypeError, ValueError) as exc:
                raise MalformedError("location needs numeric lat and lon") from exc
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise MalformedError("location out of range")
            location = GeoPoint(lat, lon)
        attachments = []
        for item in data.get("attachments") or []:
            url = item.get("url") if isinstance(item, dict) else None
            # Only files this gateway stored itself (/chat/upload) are accepted.
            if not isinstance(url, str) or not re.fullmatch(r"/media/web/[a-f0-9]{2}/[\w.-]+", url):
                raise MalformedError("attachment must be an uploaded file")
            attachments.append(Attachment(kind="image", url=url, mime=item.get("mime")))
        postback = data.get("postback")
        if postback is not None and not isinstance(postback, str):
            raise MalformedError("postback must be a string")
        if not (text or location or attachments or postback):
            return []
        return [
            InboundMessage(
                channel="web",
                external_id=f"{data['sid']}:{client_id}",
                sender=f"web:{data['sid']}",
                text=text,
                received_at=utcnow(),
                attachments=tuple(attachments),
                location=location,
                kind="postback" if postback else "message",
                postback=postback,
                raw={k: v for k, v in data.items() if k != "token"},
            )
        ]

    async def send(self, message: OutboundMessage) -> SendResult:
        """Nothing to push: the page polls the outbox rows addressed to its session."""
        return SendResult(provider_id=None)
