"""The voice hotline on Twilio Programmable Voice: a recorded message, or a live Media Stream.

Provider docs:
- Incoming call webhook: https://www.twilio.com/docs/voice/twiml#request-parameters
- <Record>: https://www.twilio.com/docs/voice/twiml/record (action, recordingStatusCallback)
- Recording status callback params (AccountSid, CallSid, RecordingSid, RecordingUrl,
  RecordingStatus, RecordingDuration, RecordingChannels, RecordingSource, ErrorCode — no From):
  https://www.twilio.com/docs/voice/api/recording#recordingstatuscallback
- <Connect><Stream>: https://www.twilio.com/docs/voice/twiml/stream (the stream protocol is
  channels/voice_stream.py; the WebSocket route is gateway/web/voice_stream.py).

Paths (all POST, all signed):
- /webhooks/twilio/voice            call start → TwiML (greeting + <Record>, or <Connect><Stream>);
                                    also the <Record action> (has RecordingSid) → goodbye TwiML.
- /webhooks/twilio/voice/recording  recordingStatusCallback → one InboundMessage when completed.
- /webhooks/twilio/voice/status     call status callbacks → ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit

import aiohttp
from pydantic import Field
from twilio.twiml.voice_response import VoiceResponse

from channels.base import (
    Ack,
    Attachment,
    Channel,
    ChannelConfig,
    ChannelTraits,
    InboundMessage,
    MessageMeta,
    OutboundMessage,
    RawRequest,
    SendError,
    SendResult,
    TokenStore,
    utcnow,
)
from channels.sms import SmsChannel, SmsConfig
from channels.twilio_common import (
    TWIML_TYPE,
    fetch_twilio_media,
    params_for_audit,
    require_form,
    tel_urn,
    verify_signature,
)
from channels.voice_menu import CallMenu

log = logging.getLogger("paht.channels.voice")

CALL_PATH = "/webhooks/twilio/voice"
RECORDING_PATH = "/webhooks/twilio/voice/recording"
STATUS_PATH = "/webhooks/twilio/voice/status"
MEDIA_PATH = "/webhooks/twilio/media"

VOICE = "Google.vi-VN-Standard-A"  # Polly/alice have no vi-VN (PROTOCOLS §5)
LANGUAGE = "vi-VN"
# <Parameter>s of our signed <Connect><Stream> TwiML: Twilio echoes them in the stream's
# "start" event, where the token proves the stream belongs to a call Twilio put through to us.
TOKEN_PARAM = "paht_token"  # noqa: S105 - a parameter name, not a secret
EXPIRES_PARAM = "paht_expires"
STREAM_TOKEN_SECONDS = 600  # the stream must start within 10 minutes of the call webhook
# Keys of the [voice] table of config/messages.vi.toml the hotline speaks.
TEXT_KEYS = ("greeting", "stream_greeting", "goodbye")


class VoiceConfig(SmsConfig):
    """The Twilio account (answers go out by SMS), the hotline mode and where calls are kept."""

    mode: Literal["record", "stream"] = Field(validation_alias="voice_mode")
    max_seconds: int = Field(validation_alias="voice_max_seconds")
    var_dir: Path = Field(validation_alias="var_dir")
    media_dir: Path | None = Field(validation_alias="media_dir")
    readback: bool = Field(validation_alias="voice_readback")

    @property
    def enabled(self) -> bool:
        """Needs the account SID and auth token."""
        return bool(self.account_sid and self.auth_token)

    @property
    def calls_dir(self) -> Path:
        """Where Media Streams recordings are saved (media dir / calls)."""
        return (self.media_dir or self.var_dir / "media") / "calls"


def caller_sender(from_number: str | None, call_sid: str) -> str:
    """'tel:+84…' when the caller's number is known, else 'call:<CallSid>' (linked later)."""
    return tel_urn(from_number) or f"call:{call_sid}"


def stream_token(config: VoiceConfig, call_sid: str, caller: str, expires: int) -> str:
    """HMAC of (account, call, caller, expiry) with the auth token: the per-call stream token."""
    message = f"paht-stream|{config.account_sid}|{call_sid}|{caller}|{expires}".encode()
    return hmac.new(config.auth_token.encode(), message, hashlib.sha256).hexdigest()


def stream_token_ok(config: VoiceConfig, call_sid: str, caller: str, expires: str,
                    token: str, now: float | None = None) -> bool:
    """True when `token` was issued by us for this call and caller and has not expired."""
    if not (config.auth_token and call_sid and token and expires.isdigit()):
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    expected = stream_token(config, call_sid, caller, int(expires))
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))


class VoiceChannel(Channel[VoiceConfig]):
    """Twilio Voice hotline: TwiML answers, recordings become reports."""

    name: ClassVar[str] = "voice"
    config_model: ClassVar[type[ChannelConfig]] = VoiceConfig
    traits: ClassVar[ChannelTraits] = ChannelTraits(
        label="Gọi", title="Đường dây nóng", reply_window=None, sms_like=True,
        conversational=False, spoken=True,
    )
    max_body_bytes: ClassVar[int] = 64_000

    def __init__(
        self,
        config: VoiceConfig,
        *,
        http: aiohttp.ClientSession | None = None,
        tokens: TokenStore | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(config, http=http, tokens=tokens, texts=texts)
        missing = [key for key in TEXT_KEYS if not self.texts.get(key)]
        if missing:
            raise ValueError(f"[voice] texts missing from the messages file: {missing}")
        # Answers to a caller go out by SMS from the same Twilio account.
        self.sms = SmsChannel(config, http=http, tokens=tokens)
        # The in-call flow's texts ([voice_menu]) are given by the gateway (set_menu_texts).
        self.menu: CallMenu | None = None

    def set_menu_texts(self, texts: Mapping[str, str]) -> None:
        """Enable the read-back flow with the [voice_menu] texts (checked here)."""
        self.menu = CallMenu(self.config.public_base_url, texts, self.texts,
                             max_seconds=self.config.max_seconds)

    def recording_callback(self, caller: str | None) -> str:
        """Our recordingStatusCallback URL; it carries the caller's number (signed query)."""
        callback = self.public(RECORDING_PATH)
        if caller:
            callback += "?" + urlencode({"From": caller[4:]})
        return callback

    def text(self, key: str) -> str:
        """A citizen-facing text of the [voice] table (checked at construction)."""
        return self.texts[key]

    def public(self, path: str) -> str:
        """Absolute public URL of one of our paths."""
        return self.config.public(path)

    def stream_url(self) -> str:
        """The wss:// URL of the Media Streams route (Twilio wants wss, no query string)."""
        url = self.public(MEDIA_PATH)
        if url.startswith("https://"):
            return "wss://" + url[len("https://"):]
        if url.startswith("http://"):
            return "ws://" + url[len("http://"):]
        return url

    def verify(self, request: RawRequest) -> None:
        """X-Twilio-Signature over the public URL and the form params."""
        verify_signature(self.config, request)

    @staticmethod
    def _path(request: RawRequest) -> str:
        return urlsplit(request.url).path.rstrip("/") or "/"

    def parse(self, request: RawRequest) -> list[InboundMessage]:
        """Only a completed recording is a message; call starts and statuses are not."""
        params = require_form(request)
        if self._path(request) != RECORDING_PATH:
            return []
        status = (params.get("RecordingStatus") or "").lower()
        if status != "completed":
            log.info("recording callback ignored", extra={"recording_status": status or "-"})
            return []
        recording_sid = params.get("RecordingSid", "")
        recording_url = params.get("RecordingUrl", "")
        call_sid = params.get("CallSid", "")
        if not recording_sid or not recording_url:
            log.warning("completed recording without RecordingSid/RecordingUrl")
            return []
        raw: dict[str, Any] = params_for_audit(params)
        # Recording callbacks carry no From; our recordingStatusCallback URL adds it as a
        # query parameter (covered by the signature), else the lead links call:<CallSid>.
        query = dict(request.query) or {}
        from_number = params.get("From") or query.get("From")
        duration = (params.get("RecordingDuration") or "").strip()
        try:
            seconds = int(duration) if duration else 0
        except ValueError:
            seconds = 0
        return [InboundMessage(
            channel=self.name,
            external_id=recording_sid,
            sender=caller_sender(from_number, call_sid),
            text="",
            received_at=utcnow(),
            attachments=(Attachment(kind="audio", url=recording_url + ".wav", mime="audio/wav"),),
            raw=raw,
            # Empty/silent recordings are recorded as such, not dropped.
            meta=MessageMeta(silent=seconds <= 0),
        )]

    def _say(self, response: VoiceResponse, text: str) -> None:
        response.say(text, voice=VOICE, language=LANGUAGE)

    def call_twiml(self, params: Mapping[str, str]) -> str:
        """TwiML for a new call: greeting + <Record>, or <Connect><Stream> in stream mode."""
        response = VoiceResponse()
        caller = tel_urn(params.get("From"))
        if self.config.mode == "stream":
            self._say(response, self.text("stream_greeting"))
            connect = response.connect()
            stream = connect.stream(url=self.stream_url())
            # Media Streams forbid query strings: custom data travels as <Parameter>s and
            # comes back in start.customParameters. The token binds the stream to this
            # CallSid and caller (this TwiML answers a signed request, so only Twilio sees it).
            number = caller[4:] if caller else ""
            if number:
                stream.parameter(name="From", value=number)
            expires = int(time.time()) + STREAM_TOKEN_SECONDS
            token = stream_token(self.config, params.get("CallSid", ""), number, expires)
            stream.parameter(name=EXPIRES_PARAM, value=str(expires))
            stream.parameter(name=TOKEN_PARAM, value=token)
            # Runs once we close the socket (after '#', the time limit, or end of stream).
            if self.menu is not None and self.config.readback:
                # Hold for the live transcript's report, then read it back.
                response.redirect(self.menu.url("hold", since=int(time.time()) - 5),
                                  method="POST")
                return str(response)
            self._say(response, self.text("goodbye"))
            response.hangup()
            return str(response)
        callback = self.recording_callback(caller)
        if self.menu is not None and self.config.readback:
            return self.menu.greeting(callback)
        self._say(response, self.text("greeting"))
        response.record(
            # Without an action Twilio re-requests this document and the greeting would loop.
            action=self.public(CALL_PATH) + "?step=recorded",
            method="POST",
            max_length=self.config.max_seconds,
            timeout=5,
            finish_on_key="#",
            play_beep=True,
            trim="trim-silence",
            recording_status_callback=callback,
            recording_status_callback_method="POST",
            recording_status_callback_event="completed",
        )
        # Reached when nothing was recorded (Twilio skips the action for empty recordings).
        self._say(response, self.text("goodbye"))
        response.hangup()
        return str(response)

    def recorded_twiml(self) -> str:
        """The <Record action> answer: thank the caller and hang up."""
        response = VoiceResponse()
        self._say(response, self.text("goodbye"))
        response.hangup()
        return str(response)

    def ack(self, request: RawRequest, messages: list[InboundMessage]) -> Ack:
        """TwiML for the call webhook; an empty <Response/> for callbacks."""
        if self._path(request) == CALL_PATH:
            params = require_form(request)
            if params.get("RecordingSid") or request.query.get("step") == "recorded":
                body = self.recorded_twiml()
            else:
                body = self.call_twiml(params)
        else:
            body = str(VoiceResponse())
        return Ack(status=200, body=body.encode("utf-8"), content_type=TWIML_TYPE)

    async def send(self, message: OutboundMessage) -> SendResult:
        """Answers to a caller go out by SMS to the number that called."""
        if not message.recipient.startswith("tel:"):
            raise SendError("caller number unknown (withheld or not linked yet)",
                            retryable=False, code="no_number")
        return await self.sms.send(replace(message, channel="sms"))

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        """Download a recording (Twilio) or read a stream recording saved under media/calls."""
        if attachment.url.startswith("file://"):
            return self._read_local(attachment, max_bytes)
        return await fetch_twilio_media(self.config, self.http, attachment, max_bytes)

    def _read_local(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str | None]:
        calls = self.config.calls_dir.resolve()
        path = Path(attachment.url[len("file://"):]).resolve()
        if not path.is_relative_to(calls):
            raise SendError("local media outside media/calls", retryable=False, code="bad_path")
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise SendError("media too large", retryable=False, code="too_large")
            return path.read_bytes(), attachment.mime or "audio/wav"
        except FileNotFoundError as exc:
            raise SendError("stream recording missing", retryable=False,
                            code="missing") from exc
