"""Twilio Media Streams, the channel side: frames in, one InboundMessage per call out.

Protocol: https://www.twilio.com/docs/voice/media-streams/websocket-messages (PROTOCOLS §5).
Twilio sends JSON text frames: "connected", "start" (streamSid, callSid, customParameters,
mediaFormat audio/x-mulaw 8 kHz mono), "media" (base64 μ-law, ~20 ms each), "dtmf", "mark",
"stop". A `MediaStream` keeps the caller's audio, feeds it to a live recognizer when the
gateway gives one, and on `finish()` saves the audio as WAV and builds ONE message
(external_id "stream:<streamSid>"). The WebSocket itself is the gateway's
(gateway/web/voice_stream.py).

Authenticity, three checks (a forged stream would create a report under any phone number):
the upgrade must carry X-Twilio-Signature (HMAC of the public wss:// or https:// URL, no
params); the "start" must name our accountSid; and it must carry the per-call token our signed
<Connect><Stream> TwiML put in its <Parameter>s (channels/voice.py `stream_token`), which binds
the stream to its CallSid and caller number and expires. Anything else ends the stream without
a message. A stored recording is never overwritten (a reused streamSid keeps the first).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from twilio.request_validator import RequestValidator

from channels.base import Attachment, InboundMessage, MessageMeta, utcnow
from channels.text import nfc
from channels.voice import (
    EXPIRES_PARAM,
    TOKEN_PARAM,
    VoiceConfig,
    caller_sender,
    stream_token_ok,
)

log = logging.getLogger("paht.channels.voice")

MULAW_RATE = 8000  # Media Streams audio: G.711 μ-law, 8 kHz, mono
MAX_PARTIALS = 50  # partial hypotheses kept for the audit trail
PARTIAL_EVERY = 25  # sample the partial hypothesis every N media frames (~0.5 s)
SILENT_BELOW_S = 0.5
MAX_FRAME_BYTES = 16_384  # a real media frame is ~250 bytes of JSON (20 ms of audio)
MAX_CUSTOM_PARAMETERS = 16
MAX_PARAMETER_CHARS = 256


class RecordingExists(Exception):
    """A recording of this stream is already stored (a reused streamSid): keep the first."""


def _ulaw_sample(code: int) -> bytes:
    """G.711 μ-law code -> int16 little-endian (what audioop.ulaw2lin(b, 2) gives)."""
    u = ~code & 0xFF
    magnitude = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return (-magnitude if u & 0x80 else magnitude).to_bytes(2, "little", signed=True)


_ULAW = [_ulaw_sample(code) for code in range(256)]


def mulaw_to_pcm16(frames: bytes) -> bytes:
    """Expand μ-law bytes to int16 LE PCM (same rate, one sample per byte)."""
    return b"".join(_ULAW[b] for b in frames)


class Heard(Protocol):
    """What a live recognizer says at the end of a call (nlp.stt.Transcript fits)."""

    @property
    def text(self) -> str:
        """The transcript."""
        ...

    @property
    def confidence(self) -> float | None:
        """Its confidence, when the engine gives one."""
        ...

    @property
    def engine(self) -> str | None:
        """Which engine heard it."""
        ...


class LiveRecognizer(Protocol):
    """A per-call streaming recognizer (nlp.stt.StreamingCall fits); calls may block."""

    def feed_mulaw(self, payload: bytes) -> str | None:
        """Feed one μ-law frame; a final segment when one ended."""
        ...

    def partial(self) -> str:
        """The current partial hypothesis."""
        ...

    def finish(self) -> Heard:
        """Flush and return the whole transcript."""
        ...


RecognizerFactory = Callable[[], Awaitable[LiveRecognizer | None]]


@dataclass
class CallState:
    """What one Media Stream has told us so far."""

    stream_sid: str = ""
    call_sid: str = ""
    account_sid: str = ""
    custom: dict[str, str] = field(default_factory=dict)
    media_format: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    audio: bytearray = field(default_factory=bytearray)  # μ-law 8 kHz as received
    frames: int = 0
    partials: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    recognizer: LiveRecognizer | None = None
    stt_error: str | None = None
    done: bool = False


def upgrade_signature_ok(config: VoiceConfig, path_qs: str, signature: str | None) -> bool:
    """Validate the X-Twilio-Signature Twilio sends on the upgrade; a missing one fails."""
    if not signature or not config.auth_token:
        return False
    base = config.public(path_qs)
    candidates = {base}
    if base.startswith("https://"):
        candidates.add("wss://" + base[len("https://"):])
    elif base.startswith("http://"):
        candidates.add("ws://" + base[len("http://"):])
    validator = RequestValidator(config.auth_token)
    try:
        return any(validator.validate(url, {}, signature) for url in candidates)
    except (TypeError, ValueError):  # a non-ASCII header value
        return False


def save_wav(directory: Path, name: str, mulaw: bytes) -> Path:
    """Write the caller's audio as 8 kHz PCM16 mono WAV; RecordingExists if one is stored."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.wav"
    if path.exists():
        raise RecordingExists(name)
    tmp = directory / f".{name}.{os.getpid()}.{id(mulaw):x}.part"
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(MULAW_RATE)
        out.writeframes(mulaw_to_pcm16(mulaw))
    try:
        os.link(tmp, path)  # atomic and exclusive: never replaces a stored recording
    except FileExistsError as exc:
        raise RecordingExists(name) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _safe_name(value: str) -> str:
    return "".join(c for c in value if c.isalnum() or c in "-_")[:64] or "stream"


class MediaStream:
    """One call's Media Stream: feed it every text frame, then `finish()` once."""

    def __init__(self, config: VoiceConfig,
                 open_recognizer: RecognizerFactory | None = None) -> None:
        self.config = config
        self.open_recognizer = open_recognizer
        self.state = CallState()

    @property
    def started(self) -> bool:
        """True once an authentic "start" arrived."""
        return bool(self.state.stream_sid)

    async def feed_frame(self, data: str) -> bool:
        """Handle one WebSocket text frame; True when the call should end now."""
        if len(data) > MAX_FRAME_BYTES:
            log.warning("media stream frame too large")
            return True
        try:
            event = json.loads(data)
        except ValueError:
            return False
        return await self.handle(event) if isinstance(event, dict) else False

    async def handle(self, event: dict[str, Any]) -> bool:
        """Handle one decoded Twilio event; True when the call should end now."""
        kind = event.get("event")
        if kind == "start":
            if self.state.stream_sid:
                return False  # one call per connection: a second start is ignored
            return await self._start(event)
        if kind == "media" and self.state.stream_sid:
            return await self._media(event.get("media") or {})
        if kind == "dtmf":
            dtmf = event.get("dtmf")
            digit = str(dtmf.get("digit") or "")[:1] if isinstance(dtmf, dict) else ""
            if len(self.state.digits) < 64:
                self.state.digits.append(digit)
            return digit == "#"  # same key that ends a <Record>
        return kind == "stop"

    async def _start(self, event: dict[str, Any]) -> bool:
        state = self.state
        start = event.get("start")
        if not isinstance(start, dict):
            return True
        custom = start.get("customParameters")
        custom = custom if isinstance(custom, dict) else {}
        stream_sid = str(event.get("streamSid") or start.get("streamSid") or "")[:64]
        state.call_sid = str(start.get("callSid") or "")[:64]
        state.account_sid = str(start.get("accountSid") or "")[:64]
        state.custom = {str(k)[:64]: nfc(str(v))[:MAX_PARAMETER_CHARS]
                        for k, v in list(custom.items())[:MAX_CUSTOM_PARAMETERS]}
        media_format = start.get("mediaFormat")
        state.media_format = ({str(k)[:32]: v for k, v in list(media_format.items())[:8]
                               if isinstance(v, str | int)}
                              if isinstance(media_format, dict) else {})
        state.started_at = utcnow()
        if not self._authentic(stream_sid):
            return True  # nothing will be persisted
        state.stream_sid = stream_sid
        # The token is checked; the audit trail needs the caller, not the secret.
        state.custom.pop(TOKEN_PARAM, None)
        if self.open_recognizer is not None:
            try:
                state.recognizer = await self.open_recognizer()
            except Exception as exc:
                state.stt_error = f"{type(exc).__name__}: {exc}"
                log.exception("could not open a streaming recognizer; keeping audio only")
        log.info("media stream started", extra={"stt": state.recognizer is not None,
                                                 "custom": sorted(state.custom)})
        return False

    def _authentic(self, stream_sid: str) -> bool:
        """Our account and a valid per-call token for this CallSid and caller."""
        state = self.state
        if not stream_sid or not self.config.account_sid or \
                state.account_sid != self.config.account_sid:
            log.warning("media stream refused: accountSid missing or not ours")
            return False
        if not stream_token_ok(self.config, state.call_sid, state.custom.get("From", ""),
                               state.custom.get(EXPIRES_PARAM, ""),
                               state.custom.get(TOKEN_PARAM, "")):
            log.warning("media stream refused: per-call token missing, wrong or expired")
            return False
        return True

    async def _media(self, media: dict[str, Any]) -> bool:
        state = self.state
        if not isinstance(media, dict):
            return False
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return False
        try:
            payload = base64.b64decode(media.get("payload") or "", validate=True)
        except (binascii.Error, ValueError):
            return False
        state.audio.extend(payload)
        state.frames += 1
        recognizer = state.recognizer
        if recognizer is not None and state.stt_error is None:
            try:
                final = await asyncio.to_thread(recognizer.feed_mulaw, payload)
                if final:
                    state.segments.append(nfc(final))
                elif state.frames % PARTIAL_EVERY == 0 and len(state.partials) < MAX_PARTIALS:
                    partial = recognizer.partial()
                    if partial and (not state.partials or state.partials[-1] != partial):
                        state.partials.append(nfc(partial))
            except Exception as exc:
                state.stt_error = f"{type(exc).__name__}: {exc}"
                log.exception("streaming recognizer failed; keeping audio only")
        return len(state.audio) >= self.config.max_seconds * MULAW_RATE

    async def finish(self) -> InboundMessage | None:
        """Flush the recognizer and save the audio; the call's message (None: nothing to keep,
        or finished already)."""
        state = self.state
        if state.done or not state.stream_sid:
            return None
        state.done = True
        text, confidence, engine = "", None, None
        if state.recognizer is not None:
            try:
                heard = await asyncio.to_thread(state.recognizer.finish)
                text = nfc(heard.text or "").strip()
                confidence, engine = heard.confidence, heard.engine
            except Exception as exc:  # a recognizer crash must not lose the caller's audio
                state.stt_error = f"{type(exc).__name__}: {exc}"
                log.exception("stream transcription failed")
        try:
            path = await asyncio.to_thread(save_wav, self.config.calls_dir,
                                           _safe_name(state.stream_sid), bytes(state.audio))
        except RecordingExists:
            log.warning("media stream reused a stored streamSid; the first recording is kept")
            return None
        duration = len(state.audio) / MULAW_RATE
        transcribed = state.recognizer is not None and state.stt_error is None
        # raw: what Twilio and the recognizer told us (the audit trail); meta: the flags.
        raw: dict[str, Any] = {
            "streamSid": state.stream_sid, "callSid": state.call_sid,
            "accountSid": state.account_sid, "customParameters": state.custom,
            "mediaFormat": state.media_format, "media_frames": state.frames,
            "duration_s": round(duration, 3), "partials": state.partials,
            "segments": state.segments, "transcript": text, "confidence": confidence,
            "engine": engine, "digits": "".join(state.digits),
        }
        meta = MessageMeta(silent=duration < SILENT_BELOW_S, transcribed=transcribed,
                           confidence=confidence if transcribed else None,
                           stt_error=state.stt_error)
        return InboundMessage(
            channel="voice",
            external_id=f"stream:{state.stream_sid}",
            sender=caller_sender(state.custom.get("From"), state.call_sid),
            text=text,
            received_at=state.started_at or utcnow(),
            attachments=(Attachment(kind="audio", url=path.resolve().as_uri(), mime="audio/wav",
                                    size=path.stat().st_size, name=path.name),),
            raw=raw,
            meta=meta,
        )
