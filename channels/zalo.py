"""Zalo Official Account: webhook signature, event parsing and consultation (cs) replies.

Webhook: https://developers.zalo.me/docs/official-account/webhook/tong-quan
Send (v3): https://developers.zalo.me/docs/official-account/tin-nhan/tin-tu-van/gui-tin-tu-van
Quirks: IDs and timestamps are strings beyond 2^53; errors come back with HTTP 200 and
`error != 0`; the signature formula is only described by community sources (see PROTOCOLS §1.2).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp

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
    SendError,
    SendResult,
    SignatureError,
    TokenStore,
    from_epoch,
    utcnow,
)
from channels.download import download, hosts_check
from channels.meta_send import numbered_buttons, phone_e164, window_closed
from channels.text import nfc, split_text
from channels.zalo_tokens import (
    TOKEN_CODES,
    TokenError,
    ZaloConfig,
    ZaloTokens,
    classify_oa_error,
    oa_error_code,
)

log = logging.getLogger("paht.channels.zalo")

# cs messages are free for 48 h after the user's last interaction and refused (-230) after 7 d.
WINDOW = timedelta(days=7)
MAX_TEXT = 2000
MEDIA_EVENTS = {"image": "image", "gif": "image", "audio": "audio", "video": "video",
                "file": "file"}
IGNORED_PREFIXES = ("oa_send_", "user_received_message", "user_seen_message",
                    "user_reacted_message", "oa_reacted_message")
_TS_RE = re.compile(rb'"timestamp"\s*:\s*"?(\d+)')


def _loads(body: bytes) -> Any:
    # parse_int=str: 18-19 digit IDs must never pass through float/int rounding.
    return json.loads(body, parse_int=str, parse_float=str)


class ZaloChannel(Channel[ZaloConfig]):
    """A province's Zalo OA; sender URN "zalo:<uid>" (anonymous users "zalo:anon:<id>")."""

    name: ClassVar[str] = "zalo"
    config_model: ClassVar[type[ChannelConfig]] = ZaloConfig
    traits: ClassVar[ChannelTraits] = ChannelTraits(
        label="Zalo", title="Zalo OA", reply_window=WINDOW, sms_like=False, conversational=True
    )
    # Zalo CDNs: photo/voice/file hosts under zadn.vn and zdn.vn (e.g. voice-aac-dl.zdn.vn),
    # links under zalo.me.
    MEDIA_HOST_SUFFIXES: ClassVar[tuple[str, ...]] = ("zadn.vn", "zdn.vn", "zalo.me")
    # The picture Zalo shows on a request_user_info form (Zalo's own "fill in" artwork).
    REQUEST_INFO_IMAGE: ClassVar[str] = "https://oa-wg-stc.zdn.vn/oa/customer/images/fillform.jpg"

    def __init__(
        self,
        config: ZaloConfig,
        *,
        http: aiohttp.ClientSession | None = None,
        tokens: TokenStore | None = None,
        texts: Mapping[str, str] | None = None,
        allowed_media_hosts: Iterable[str] = (),
    ) -> None:
        super().__init__(config, http=http, tokens=tokens, texts=texts)
        self.allowed_media_hosts: set[str] = set(allowed_media_hosts)
        self.token_manager = ZaloTokens(config, http, tokens)
        self.last_signature_variant: str | None = None

    async def refresh_if_expiring(self, margin_s: float = 3600) -> bool:
        """Rotate the OA token pair when it expires within `margin_s` (schedule hourly)."""
        return await self.token_manager.refresh_if_expiring(margin_s)

    # -- inbound ---------------------------------------------------------------------------

    def verify(self, request: RawRequest) -> None:
        """X-ZEvent-Signature = "mac=" + sha256(first + body + timestamp + secret), tolerant."""
        header = request.header("X-ZEvent-Signature")
        body: Any = None
        try:
            body = _loads(request.body) if request.body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            body = None
        if body == {}:
            # The registration probe Zalo POSTs when the URL is saved (unsigned, or signed in
            # ways the console's "Test" does not document): it carries nothing to ingest.
            return
        if not header:
            raise SignatureError("missing X-ZEvent-Signature", status=401)
        got = header.strip().lower().removeprefix("mac=").strip()
        try:
            variant = self._match(request, body if isinstance(body, dict) else {}, got)
        except (AttributeError, TypeError):
            variant = None  # fields of unexpected types: cannot be one of ours
        if variant is None:
            raise SignatureError("bad X-ZEvent-Signature", status=401)
        if variant != self.last_signature_variant:
            log.info("zalo signature variant matched", extra={"variant": variant})
        self.last_signature_variant = variant

    def _match(self, request: RawRequest, body: dict[str, Any], got: str) -> str | None:
        """Try the documented variants; return the label of the one that matched."""
        s = self.config
        firsts: dict[str, str] = {"app_id": s.app_id}
        if body.get("app_id") and body.get("app_id") != s.app_id:
            firsts["body_app_id"] = str(body["app_id"])
        # Community threads report the OA id working as the first term. It is the recipient
        # of user events and the sender of the OA's own (echo) events.
        party = "sender" if str(body.get("event_name", "")).startswith("oa_") else "recipient"
        oa_id = body.get("oa_id") or (body.get(party) or {}).get("id")
        if oa_id:
            firsts["oa_id"] = str(oa_id)
        stamps: dict[str, str] = {}
        if body.get("timestamp"):
            stamps["body_ts"] = str(body["timestamp"])
        else:
            found = _TS_RE.search(request.body)  # a body we could not parse
            if found:
                stamps["body_ts"] = found.group(1).decode()
        header_ts = request.header("X-ZEvent-Timestamp")
        if header_ts and header_ts != stamps.get("body_ts"):
            stamps["header_ts"] = header_ts.strip()
        secrets = {"oa_secret": s.oa_secret, "app_secret": s.app_secret}
        try:
            data = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        for fname, first in firsts.items():
            for tname, ts in stamps.items():
                for kname, secret in secrets.items():
                    if not first or not secret:
                        continue
                    exp = hashlib.sha256((first + data + ts + secret).encode()).hexdigest()
                    if hmac.compare_digest(exp.encode(), got.encode()):
                        return f"{fname}+{tname}+{kname}"
        return None

    def parse(self, request: RawRequest) -> list[InboundMessage]:
        """One event per request; echoes, receipts, stickers and unknown events → []."""
        try:
            body = _loads(request.body) if request.body.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedError(f"invalid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise MalformedError("expected a JSON object")
        try:
            return self._parse_event(body)
        except (AttributeError, TypeError, KeyError) as exc:
            # A field of the wrong type (e.g. "sender": "x"): 400, not a crash.
            raise MalformedError(f"unexpected event shape: {exc}") from exc

    def _parse_event(self, body: dict[str, Any]) -> list[InboundMessage]:
        if not body:
            return []  # registration probe
        event = str(body.get("event_name") or "")
        if not event:
            raise MalformedError("missing event_name")
        if event.startswith(IGNORED_PREFIXES):
            return []
        try:
            received = from_epoch(str(body.get("timestamp") or ""), millis=True)
        except (TypeError, ValueError, OverflowError):
            received = utcnow()
        if event in ("follow", "unfollow"):
            uid = str((body.get("follower") or {}).get("id")
                      or (body.get("sender") or {}).get("id") or body.get("user_id") or "")
            if not uid:
                raise MalformedError("follow without follower.id")
            ext = f"{event}:{uid}:{body.get('timestamp', '')}"
            return [InboundMessage(channel=self.name, external_id=ext, sender=f"zalo:{uid}",
                                   text="", received_at=received, kind=event, raw=body)]
        if event == "user_submit_info":
            return self._submit_info(body, received)
        if "_group_" in event:
            return []  # group-chat (GMF) traffic is not a report to the OA
        if event.startswith(("user_send_", "anonymous_send_")):
            return self._message(event, body, received)
        log.info("zalo: ignoring event %s", event)
        return []

    def _sender(self, event: str, body: dict[str, Any]) -> str:
        uid = str((body.get("sender") or {}).get("id") or "")
        if not uid:
            raise MalformedError("event without sender.id")
        return f"zalo:anon:{uid}" if event.startswith("anonymous_") else f"zalo:{uid}"

    def _submit_info(self, body: dict[str, Any], received: datetime) -> list[InboundMessage]:
        info = body.get("info") or {}
        if not isinstance(info, dict):
            raise MalformedError("info is not an object")
        address = info.get("full_address") or info.get("address") or ""
        if isinstance(address, dict):
            # {user_address, user_ward, user_district, user_city}: street first, city last.
            order = ("user_address", "user_ward", "user_district", "user_city")
            address = ", ".join(str(address[k]) for k in order if address.get(k))
        sender = self._sender("user_submit_info", body)
        ext = f"submit_info:{sender.partition(':')[2]}:{body.get('timestamp', '')}"
        return [InboundMessage(
            channel=self.name, external_id=ext, sender=sender, text=nfc(address),
            received_at=received, contact_phone=phone_e164(info.get("phone")),
            sender_name=nfc(info.get("name")) or None, kind="contact", raw=body,
        )]

    def _message(self, event: str, body: dict[str, Any],
                 received: datetime) -> list[InboundMessage]:
        if event.endswith(("_sticker", "_business_card")):
            return []
        message = body.get("message") or {}
        if not isinstance(message, dict):
            raise MalformedError("message is not an object")
        msg_id = str(message.get("msg_id") or "")
        if not msg_id:
            raise MalformedError("message without msg_id")
        sender = self._sender(event, body)
        text = nfc(message.get("text"))
        attachments: list[Attachment] = []
        location: GeoPoint | None = None
        for att in message.get("attachments") or []:
            if not isinstance(att, dict) or not isinstance(att.get("payload"), dict):
                continue
            kind, payload = str(att.get("type") or ""), att["payload"]
            if kind in MEDIA_EVENTS and payload.get("url"):
                attachments.append(self._attachment(MEDIA_EVENTS[kind], payload))
            elif kind == "location":
                location = self._location(payload, text)
            elif kind == "link" and payload.get("url"):
                url = str(payload["url"])
                if url not in text:
                    text = f"{text} {url}".strip()
        if not text and not attachments and location is None:
            return []
        quote = message.get("quote_msg_id")
        return [InboundMessage(
            channel=self.name, external_id=msg_id, sender=sender, text=text,
            received_at=received, attachments=tuple(attachments), location=location,
            reply_to=str(quote) if quote else None, raw=body,
        )]

    @staticmethod
    def _attachment(kind: str, payload: Mapping[str, Any]) -> Attachment:
        url = str(payload["url"])
        path = url.split("?", 1)[0].lower()
        mime = None
        if kind == "audio":
            # Voice notes are AAC (voice-aac-dl.zdn.vn/….aac); older docs say .amr.
            mime = "audio/amr" if path.endswith(".amr") else "audio/aac"
        size = payload.get("size")
        return Attachment(kind=kind, url=url, mime=mime,
                          size=int(str(size)) if str(size or "").isdigit() else None,
                          name=nfc(payload.get("name")) or None)

    @staticmethod
    def _location(payload: Mapping[str, Any], text: str) -> GeoPoint | None:
        coords = payload.get("coordinates") or payload
        lat = coords.get("latitude", coords.get("lat"))
        lon = coords.get("longitude", coords.get("long", coords.get("lng")))
        try:
            point = GeoPoint(float(lat), float(lon), text or None)
        except (TypeError, ValueError):
            point = None
        if point is None or not (-90 <= point.lat <= 90 and -180 <= point.lon <= 180):
            log.info("zalo: location attachment without usable coordinates")
            return None
        return point

    # -- outbound --------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        """POST /v3.0/oa/message/cs; refresh the token once on -216/-220."""
        scheme, _, uid = message.recipient.partition(":")
        if scheme != "zalo" or not uid or uid.startswith("anon:"):
            # Anonymous chats are answered only from the OA chat tool.
            raise SendError("not a reachable zalo recipient", retryable=False, code="recipient")
        if window_closed(message.last_inbound_at, WINDOW):
            raise SendError("zalo 7-day cs window closed", retryable=False, window_closed=True,
                            code="window")
        ids: list[str] = []
        for body in self._payloads(uid, message):
            data = await self._send_one(body)
            mid = (data.get("data") or {}).get("message_id")
            if mid:
                ids.append(str(mid))
        return SendResult(provider_id=ids[0] if ids else None, raw={"message_ids": ids})

    def _payloads(self, uid: str, message: OutboundMessage) -> list[dict[str, Any]]:
        contact = next((b for b in message.buttons if b.kind == "contact"), None)
        others = [b for b in message.buttons if b.kind != "contact"]
        text = message.text
        if others:
            # Zalo's query buttons come back as ordinary user text, so buttons are numbered.
            text = f"{text}\n\n{numbered_buttons(others)}".strip()
        bodies: list[dict[str, Any]] = []
        if contact is not None and len(text) <= 500 and not message.reply_to:
            text, subtitle = "", text  # the form carries the question itself
        else:
            subtitle = contact.title if contact is not None else ""
        for i, chunk in enumerate(split_text(text, MAX_TEXT)):
            msg: dict[str, Any] = {"text": chunk}
            if i == 0 and message.reply_to:
                msg["quote_message_id"] = message.reply_to
            bodies.append(msg)
        if contact is not None:
            # The request_user_info form: the citizen's answer comes back as user_submit_info
            # (phone + address), parsed as kind "contact".
            bodies.append({"attachment": {"type": "template", "payload": {
                "template_type": "request_user_info",
                "elements": [{"title": contact.title[:100], "subtitle": subtitle[:500],
                              "image_url": self.REQUEST_INFO_IMAGE}]}}})
        for att in message.attachments:
            if att.kind == "image":
                bodies.append({"attachment": {"type": "template", "payload": {
                    "template_type": "media",
                    "elements": [{"media_type": "image", "url": att.url}]}}})
            else:
                bodies.append({"text": att.url})
        return [{"recipient": {"user_id": uid}, "message": m} for m in bodies]

    async def _send_one(self, body: dict[str, Any]) -> Mapping[str, Any]:
        token = await self._token()
        data = await self._post_cs(token, body)
        code = oa_error_code(data)
        if code in TOKEN_CODES:
            log.info("zalo access token rejected; refreshing", extra={"code": code})
            try:
                await self.token_manager.refresh(stale_access_token=token)
            except TokenError as exc:
                raise SendError(str(exc), retryable=exc.retryable, code="token") from exc
            data = await self._post_cs(await self._token(), body)
            code = oa_error_code(data)
        if code == 0:
            return data
        raise classify_oa_error(code, data)

    async def _token(self) -> str:
        try:
            return await self.token_manager.access_token()
        except Exception as exc:  # a store outage must not look like a permanent failure
            raise SendError("zalo token store unavailable", retryable=True,
                            code="token_store") from exc

    async def _post_cs(self, token: str, body: dict[str, Any]) -> Mapping[str, Any]:
        url = self.config.api_base.rstrip("/") + "/v3.0/oa/message/cs"
        try:
            # A bare `access_token` header, not "Authorization: Bearer".
            async with self.session.post(url, json=body, headers={"access_token": token}) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"zalo unreachable: {type(exc).__name__}", retryable=True,
                            code="network") from exc
        if status != 200:
            raise SendError(f"zalo http {status}", retryable=status >= 500 or status == 429,
                            code=f"http_{status}")
        try:
            data = _loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SendError("zalo answered non-JSON", retryable=True, code="bad_json") from exc
        if not isinstance(data, dict):
            raise SendError("zalo answered non-object", retryable=True, code="bad_json")
        return data

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        """Download from Zalo's CDNs only (http links upgraded to https), size-limited."""
        url = attachment.url
        host = (urlsplit(url).hostname or "").lower()
        if url.startswith("http://") and host.endswith(self.MEDIA_HOST_SUFFIXES):
            url = "https://" + url[len("http://"):]  # some payloads carry http:// CDN links
        data, mime = await download(self.http, url, max_bytes,
                                    allowed=hosts_check(self.MEDIA_HOST_SUFFIXES,
                                                        self.allowed_media_hosts),
                                    trusted_hosts=self.allowed_media_hosts)
        return data, mime or attachment.mime

