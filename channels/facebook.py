"""Facebook Messenger (a province's fanpage): webhook verification, parsing and the Send API.

Webhooks: https://developers.facebook.com/docs/messenger-platform/webhooks
Events: https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/
Send API: https://developers.facebook.com/docs/messenger-platform/reference/send-api/
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

import aiohttp
from pydantic import Field

from channels.base import (
    Ack,
    Attachment,
    Channel,
    ChannelConfig,
    ChannelTraits,
    GeoPoint,
    InboundMessage,
    MalformedError,
    OutboundMessage,
    RawRequest,
    SendError,
    SendResult,
    SignatureError,
    TokenStore,
    from_epoch,
    utcnow,
)
from channels.download import download, hosts_check
from channels.meta_send import (
    appsecret_proof,
    build_messenger_payloads,
    classify_graph_error,
    phone_e164,
    window_closed,
)
from channels.text import nfc

log = logging.getLogger("paht.channels.facebook")

# The standard messaging window: a page may answer within 24 h of the user's last message.
WINDOW = timedelta(hours=24)
MEDIA_KINDS = frozenset({"image", "audio", "video", "file"})
_PHONE_RE = re.compile(r"^\+?[\d .\-()]{8,20}$")


class FacebookConfig(ChannelConfig):
    """PAHT_FACEBOOK_* and PAHT_GRAPH_API_BASE."""

    app_secret: str = Field(validation_alias="facebook_app_secret")
    verify_token: str = Field(validation_alias="facebook_verify_token")
    page_token: str = Field(validation_alias="facebook_page_token")
    graph_api_base: str = Field(validation_alias="graph_api_base")

    @property
    def enabled(self) -> bool:
        """Needs the app secret (signatures), verify token (subscription) and page token."""
        return bool(self.app_secret and self.verify_token and self.page_token)


class FacebookChannel(Channel[FacebookConfig]):
    """Messenger for a Facebook Page; sender URN "facebook:<PSID>"."""

    name: ClassVar[str] = "facebook"
    config_model: ClassVar[type[ChannelConfig]] = FacebookConfig
    traits: ClassVar[ChannelTraits] = ChannelTraits(
        label="FB", title="Facebook Messenger", reply_window=WINDOW, sms_like=False,
        conversational=True,
    )
    # Meta batches up to 1000 events; courier raised its cap to 1 MB after failures.
    max_body_bytes: ClassVar[int] = 1_000_000
    # Messenger CDNs: scontent-*.xx.fbcdn.net (images, video), cdn.fbsbx.com (audio, files),
    # lookaside.fbsbx.com (redirects to fbcdn), *.facebook.com.
    MEDIA_HOST_SUFFIXES: ClassVar[tuple[str, ...]] = ("fbcdn.net", "facebook.com", "fbsbx.com")

    def __init__(
        self,
        config: FacebookConfig,
        *,
        http: aiohttp.ClientSession | None = None,
        tokens: TokenStore | None = None,
        texts: Mapping[str, str] | None = None,
        allowed_media_hosts: Iterable[str] = (),
    ) -> None:
        super().__init__(config, http=http, tokens=tokens, texts=texts)
        # Extra hosts (e.g. "127.0.0.1:8123" of a test's fake server), http allowed.
        self.allowed_media_hosts: set[str] = set(allowed_media_hosts)

    # -- inbound ---------------------------------------------------------------------------

    def handle_get(self, request: RawRequest) -> Ack:
        """The subscription handshake: echo hub.challenge when the verify token matches."""
        mode = request.query.get("hub.mode", "")
        token = request.query.get("hub.verify_token", "")
        challenge = request.query.get("hub.challenge", "")
        expected = self.config.verify_token
        if (
            mode == "subscribe"
            and expected
            and challenge
            and hmac.compare_digest(token.encode(), expected.encode())
        ):
            return Ack(status=200, body=challenge.encode(), content_type="text/plain")
        log.warning("facebook verification refused")
        return Ack(status=403, body=b"forbidden", content_type="text/plain")

    def verify(self, request: RawRequest) -> None:
        """X-Hub-Signature-256 = "sha256=" + HMAC-SHA256(app secret, raw body); else 403."""
        header = request.header("X-Hub-Signature-256")
        if not header:
            raise SignatureError("missing X-Hub-Signature-256", status=403)
        secret = self.config.app_secret.encode()
        expected = "sha256=" + hmac.new(secret, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), header.strip().lower().encode()):
            raise SignatureError("bad X-Hub-Signature-256", status=403)

    def parse(self, request: RawRequest) -> list[InboundMessage]:
        """Every entry[] and every messaging[] event → messages; echoes/receipts dropped."""
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedError(f"invalid JSON: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("entry", []), list):
            raise MalformedError("expected an object with an entry list")
        if body.get("object") != "page":
            log.info("facebook: ignoring object %r", body.get("object"))
            return []
        out: list[InboundMessage] = []
        seen: set[str] = set()
        entries = body.get("entry", [])
        if not isinstance(entries, list):
            raise MalformedError("entry is not a list")
        for entry in entries:
            if not isinstance(entry, dict):
                raise MalformedError("entry is not an object")
            events = entry.get("messaging", []) or []
            if not isinstance(events, list):
                raise MalformedError("messaging is not a list")
            # "standby" (handover protocol, another app owns the thread) is ignored.
            for event in events:
                if not isinstance(event, dict):
                    raise MalformedError("messaging event is not an object")
                try:
                    msg = self._parse_event(event, entry)
                except (AttributeError, TypeError, KeyError) as exc:
                    # A field of the wrong type (e.g. "sender": "x"): 400, not a crash.
                    raise MalformedError(f"unexpected event shape: {exc}") from exc
                if msg is not None and msg.external_id not in seen:
                    seen.add(msg.external_id)
                    out.append(msg)
        return out

    def _parse_event(self, event: dict[str, Any], entry: dict[str, Any]) -> InboundMessage | None:
        psid = str((event.get("sender") or {}).get("id") or "")
        if not psid:
            return None  # e.g. chat-plugin guests or checkbox opt-ins (sender.user_ref only)
        ts = event.get("timestamp") or entry.get("time")
        try:
            received = from_epoch(ts, millis=True) if ts is not None else utcnow()
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedError("bad timestamp") from exc
        base: dict[str, Any] = {"channel": self.name, "sender": f"facebook:{psid}",
                                "received_at": received, "raw": event}
        if "message" in event:
            return self._parse_message(event["message"], base)
        if "postback" in event:
            pb = event["postback"] or {}
            payload = str(pb.get("payload") or "")
            # Newer API versions give postbacks a mid; older ones need a stable id.
            ext = pb.get("mid") or "pb:" + hashlib.sha256(
                f"{psid}|{ts}|{payload}".encode()).hexdigest()[:32]
            return InboundMessage(external_id=str(ext), text=nfc(pb.get("title")),
                                  kind="postback", postback=payload, **base)
        if "message_edit" in event:
            edit = event["message_edit"] or {}
            mid = str(edit.get("mid") or "")
            if not mid:
                return None
            return InboundMessage(external_id=f"{mid}#edit{edit.get('num_edit', 1)}",
                                  text=nfc(edit.get("text")), kind="edit", reply_to=mid, **base)
        # delivery, read, reaction, optin, referral, account_linking …: nothing for a report.
        log.debug("facebook: ignoring event %s", sorted(k for k in event if k not in base))
        return None

    def _parse_message(
        self, message: Any, base: dict[str, Any]
    ) -> InboundMessage | None:
        if not isinstance(message, dict):
            raise MalformedError("message is not an object")
        if message.get("is_echo"):
            return None  # our own (or the page inbox's) reply: skipping it avoids loops
        mid = str(message.get("mid") or "")
        if not mid:
            raise MalformedError("message without mid")
        text = nfc(message.get("text"))
        attachments: list[Attachment] = []
        location: GeoPoint | None = None
        for att in message.get("attachments") or []:
            if not isinstance(att, dict):
                continue
            kind = att.get("type")
            payload = att.get("payload") or {}
            if not isinstance(payload, dict) or "sticker_id" in payload or kind == "sticker":
                continue  # stickers (also sent as "image" with a sticker_id) are ignored
            if kind in MEDIA_KINDS and payload.get("url"):
                attachments.append(Attachment(kind=kind, url=str(payload["url"])))
            elif kind == "location":
                # Only in older API versions: payload.coordinates.lat/long.
                coords = payload.get("coordinates") or {}
                try:
                    location = GeoPoint(float(coords["lat"]), float(coords["long"]),
                                        nfc(att.get("title")) or None)
                except (KeyError, TypeError, ValueError):
                    log.info("facebook: location attachment without coordinates")
            elif kind == "fallback" and payload.get("url") and not text:
                text = nfc(att.get("title")) + " " + str(payload["url"])
        if "sticker_id" in message and not text and not attachments:
            return None
        if not text and not attachments and location is None:
            return None  # reels, shared posts, bare likes …
        reply_to = (message.get("reply_to") or {}).get("mid")
        qr = message.get("quick_reply") or {}
        kind, postback, phone = "message", None, None
        if qr.get("payload") is not None:
            postback = str(qr["payload"])
            kind = "postback"
            # The user_phone_number quick reply sends the number as both text and payload.
            if postback == text and _PHONE_RE.match(postback):
                phone = phone_e164(postback)
                if phone:
                    kind, postback = "contact", None
        return InboundMessage(
            external_id=mid, text=text, attachments=tuple(attachments), location=location,
            contact_phone=phone, kind=kind, reply_to=str(reply_to) if reply_to else None,
            postback=postback, **base,
        )

    # -- outbound --------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        """POST /me/messages (messaging_type RESPONSE) inside the 24 h window."""
        scheme, _, psid = message.recipient.partition(":")
        if scheme != "facebook" or not psid:
            raise SendError("not a facebook recipient", retryable=False, code="recipient")
        if window_closed(message.last_inbound_at, WINDOW):
            # Outside the standard window only HUMAN_AGENT-tagged messages are allowed, and
            # automated replies may not use that tag: the gateway falls back to SMS.
            raise SendError("messenger 24 h window closed", retryable=False,
                            window_closed=True, code="window")
        token = self.config.page_token
        url = self.config.graph_api_base.rstrip("/") + "/me/messages"
        params = {"appsecret_proof": appsecret_proof(self.config.app_secret, token)}
        # The token goes in a header, not the query string, so it never shows in error URLs.
        headers = {"Authorization": f"Bearer {token}"}
        last: Mapping[str, Any] = {}
        ids: list[str] = []
        for body in build_messenger_payloads(psid, message):
            last = await self._post(url, params, headers, body)
            if last.get("message_id"):
                ids.append(str(last["message_id"]))
        return SendResult(provider_id=ids[0] if ids else None,
                          raw={"message_ids": ids, "last": dict(last)})

    async def _post(self, url: str, params: dict[str, str], headers: dict[str, str],
                    body: dict[str, Any]) -> Mapping[str, Any]:
        try:
            async with self.session.post(url, params=params, headers=headers, json=body) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                if resp.status == 200 and isinstance(data, dict) and "error" not in data:
                    return data
                error = classify_graph_error(resp.status, data if isinstance(data, dict) else None)
                log.warning("facebook send failed", extra={"code": error.code,
                                                           "retryable": error.retryable})
                raise error
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"graph unreachable: {type(exc).__name__}", retryable=True,
                            code="network") from exc

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        """Download from Meta's CDNs only, stopping at `max_bytes` (links expire: fetch soon)."""
        return await download(self.http, attachment.url, max_bytes,
                              allowed=hosts_check(self.MEDIA_HOST_SUFFIXES,
                                                  self.allowed_media_hosts),
                              trusted_hosts=self.allowed_media_hosts)
