"""SMS/MMS through Twilio Programmable Messaging.

Provider docs:
- Inbound webhook: https://www.twilio.com/docs/messaging/guides/webhook-request
- Outbound + status callbacks: https://www.twilio.com/docs/messaging/api/message-resource
  and https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
- Errors: https://www.twilio.com/docs/api/errors (21211 invalid To, 21610 unsubscribed)

POST /webhooks/twilio/sms receives both citizen messages and the delivery status callbacks of
our own outbound messages (we point `StatusCallback` at the same path): a status callback
carries `MessageStatus` (queued/sent/delivered/undelivered/failed/read) and becomes a
kind="status" message keyed `MessageSid:MessageStatus`, never citizen text.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
from pydantic import Field
from twilio.twiml.messaging_response import MessagingResponse

from channels.base import (
    Ack,
    Attachment,
    Channel,
    ChannelConfig,
    ChannelTraits,
    InboundMessage,
    MalformedError,
    OutboundMessage,
    RawRequest,
    SendResult,
    TokenStore,
    utcnow,
)
from channels.text import nfc, split_text
from channels.twilio_common import (
    TWIML_TYPE,
    TwilioConfig,
    fetch_twilio_media,
    make_client,
    media_kind,
    number_of,
    params_for_audit,
    require_form,
    send_error,
    verify_signature,
)

log = logging.getLogger("paht.channels.sms")

MAX_MEDIA = 10  # Twilio: at most 10 media per MMS
MAX_BODY = 1600  # Twilio refuses longer bodies (error 21617); it segments below that itself
# An inbound message's own status: anything else in MessageStatus is a delivery receipt.
INBOUND_STATUSES = frozenset({"received", "receiving", "accepted"})


def strip_diacritics(text: str) -> str:
    """Vietnamese without accents ('Phản ánh đường' -> 'Phan anh duong') for GSM-7 SMS."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def render_text(message: OutboundMessage) -> str:
    """SMS is plain text: buttons become numbered options the citizen answers by digit."""
    text = nfc(message.text or "")
    lines: list[str] = []
    for number, button in enumerate(message.buttons, start=1):
        if button.kind == "url":
            lines.append(f"{number}. {button.title}: {button.payload}")
        else:
            lines.append(f"{number}. {button.title}")
    if lines:
        text = (text + "\n" if text else "") + "\n".join(lines)
    return text


class SmsConfig(TwilioConfig):
    """The Twilio account, the number (or MG… messaging service) we send from, GSM-7 mode."""

    number: str = Field(validation_alias="twilio_number")
    ascii_fallback: bool = Field(validation_alias="sms_ascii_fallback")

    @property
    def enabled(self) -> bool:
        """Needs the account SID and auth token and a number to send from."""
        return bool(self.account_sid and self.auth_token and self.number)


class SmsChannel(Channel[SmsConfig]):
    """Twilio SMS/MMS: form webhooks in, REST API out."""

    name: ClassVar[str] = "sms"
    config_model: ClassVar[type[ChannelConfig]] = SmsConfig
    traits: ClassVar[ChannelTraits] = ChannelTraits(
        label="SMS", title="Tin nhắn SMS", reply_window=None, sms_like=True, conversational=False
    )
    max_body_bytes: ClassVar[int] = 64_000  # a 1600-char body + 10 media URLs is ~10 kB

    def __init__(
        self,
        config: SmsConfig,
        *,
        http: aiohttp.ClientSession | None = None,
        tokens: TokenStore | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(config, http=http, tokens=tokens, texts=texts)
        self._client: Any = None

    def verify(self, request: RawRequest) -> None:
        """X-Twilio-Signature over the public URL and the form params."""
        verify_signature(self.config, request)

    def parse(self, request: RawRequest) -> list[InboundMessage]:
        """An inbound SMS/MMS, or a delivery status callback of one of our messages."""
        params = require_form(request)
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        if not sid:
            raise MalformedError("no MessageSid")
        raw = params_for_audit(params)
        status = (params.get("MessageStatus") or "").strip().lower()
        if status and status not in INBOUND_STATUSES:
            # Delivery receipt of our outbound message: the citizen is `To`.
            to = params.get("To", "")
            return [InboundMessage(
                channel=self.name,
                external_id=f"{sid}:{status}",
                sender="tel:" + to if to else "tel:",
                text="",
                received_at=utcnow(),
                kind="status",
                raw=raw,
            )]
        sender = params.get("From", "").strip()
        if not sender:
            raise MalformedError("no From")
        try:
            num_media = int(params.get("NumMedia") or "0")
        except ValueError as exc:
            raise MalformedError("NumMedia is not a number") from exc
        attachments: list[Attachment] = []
        for index in range(min(max(num_media, 0), MAX_MEDIA)):
            url = params.get(f"MediaUrl{index}")
            if not url:
                continue
            mime = params.get(f"MediaContentType{index}") or None
            attachments.append(Attachment(kind=media_kind(mime), url=url, mime=mime))
        # Inbound webhooks carry no timestamp: receipt time it is.
        return [InboundMessage(
            channel=self.name,
            external_id=sid,
            sender="tel:" + sender,  # E.164 as Twilio gives it (short codes stay as they are)
            text=nfc(params.get("Body", "")),
            received_at=utcnow(),
            attachments=tuple(attachments),
            raw=raw,
        )]

    def ack(self, request: RawRequest, messages: list[InboundMessage]) -> Ack:
        """An empty TwiML <Response/>: replies go out through the REST API after the dialog."""
        return Ack(status=200, body=str(MessagingResponse()).encode(), content_type=TWIML_TYPE)

    @property
    def client(self) -> Any:
        """The twilio REST client (created on first use, pointed at twilio_api_base)."""
        if self._client is None:
            self._client = make_client(self.config, self.http)
        return self._client

    def status_callback_url(self) -> str:
        """Where Twilio posts delivery receipts: the SMS webhook itself (see module doc)."""
        return self.config.public("/webhooks/twilio/sms")

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send a text (split above 1600 chars) from settings.twilio_number."""
        to = number_of(message.recipient)
        text = render_text(message)
        if self.config.ascii_fallback:
            # GSM-7 gives 160 chars a segment, UCS-2 (any Vietnamese accent) only 70.
            text = strip_diacritics(text)
        media = [a.url for a in message.attachments if a.url.startswith("https://")]
        sender = self.config.number
        origin: dict[str, str] = (
            {"messaging_service_sid": sender} if sender.startswith("MG") else {"from_": sender}
        )
        sids: list[str] = []
        statuses: list[str] = []
        bodies = split_text(text, MAX_BODY) or [""]  # an MMS may carry media only
        for index, body in enumerate(bodies):
            extra: dict[str, Any] = {}
            if media and index == len(bodies) - 1:
                extra["media_url"] = media
            try:
                created = await self.client.messages.create_async(
                    to=to, body=body, status_callback=self.status_callback_url(),
                    **origin, **extra,
                )
            except Exception as exc:  # TwilioRestException, network errors, timeouts
                raise send_error(exc) from exc
            sids.append(str(created.sid))
            statuses.append(str(created.status))
        return SendResult(
            provider_id=sids[0] if sids else None,
            raw={"sids": sids, "statuses": statuses, "parts": len(bodies)},
        )

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        """Download MMS media with the account credentials (Twilio redirects to its CDN)."""
        return await fetch_twilio_media(self.config, self.http, attachment, max_bytes)
