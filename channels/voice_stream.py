"""Twilio Media Streams, the channel side: frames in, one InboundMessage per call out.

Protocol: https://www.twilio.com/docs/voice/media-streams/websocket-messages (PROTOCOLS §5).
Twilio sends JSON text frames: "connected", "start" (streamSid, callSid, customParameters,
mediaFormat audio/x-mulaw 8 kHz mono), "media" (base64 μ-law, ~20 ms each), "dtmf", "mark",
"stop". A `MediaStream` keeps the caller's audio, feeds it to a live recognizer when the
gateway gives one, and on `finish()` saves the audio as WAV and builds ONE message
(external_id "stream:<streamSid>"). The WebSocket itself is the gateway's
(gateway/web/voice_stream.py).

Authenticity: whether the upgrade request carries X-Twilio-Signature is unverified
(PROTOCOLS §7.5). When present it must match (HMAC of the public wss:// or https:// URL, no
params). When absent we accept, but a "start" whose accountSid is not ours ends the stream
without a message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from twilio.request_validator import RequestValidator

from channels.base import Attachment, InboundMessage, MessageMeta, utcnow
from channels.text import nfc
from channels.voice import VoiceConfig, caller_sender

log = logging.getLogger("paht.channels.voice")

MULAW_RATE = 8000  # Media Streams audio: G.711 μ-law, 8 kHz, mono
MAX_PARTIALS = 50  # partial hypotheses kept for the audit trail
PARTIAL_EVERY = 25  # sample the partial hypothesis every N media frames (~0.5 s)
SILENT_BELOW_S = 0.5


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
    """Validate X-Twilio-Signature when Twilio sends one on the upgrade (PROTOCOLS §7.5)."""
    if signature is None:
        return True
    if not config.auth_token:
        return False
    base = config.public(path_qs)
    candidates = {base}
    if base.startswith("https://"):
        candidates.add("wss://" + base[len("https://"):])
    elif base.startswith("http://"):
        candidates.add("ws://" + base[len("http://"):])
    validator = RequestValidator(config.auth_token)
    return any(validator.validate(url, {}, signature) for url in candidates)


def save_wav(directory: Path, name: str, mulaw: bytes) -> Path:
    """Write the caller's audio as 8 kHz PCM16 mono WAV (readable by every player and PyAV)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.wav"
    tmp = path.with_suffix(".wav.part")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(MULAW_RATE)
        out.writeframes(mulaw_to_pcm16(mulaw))
    tmp.replace(path)
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

    async def feed_frame(self, data: str) -> bool:
        """Handle one WebSocket text frame; True when the call should end now."""
        try:
            event = json.loads(data)
        except ValueError:
            return False
        return await self.handle(event) if isinstance(event, dict) else False

    async def handle(self, event: dict[str, Any]) -> bool:
        """Handle one decoded Twilio event; True when the call should end now."""
        kind = event.get("event")
        if kind == "start":
            return await self._start(event)
        if kind == "media" and self.state.stream_sid:
            return await self._media(event.get("media") or {})
        if kind == "dtmf":
            digit = str((event.get("dtmf") or {}).get("digit") or "")
            self.state.digits.append(digit)
            return digit == "#"  # same key that ends a <Record>
        return kind == "stop"

    async def _start(self, event: dict[str, Any]) -> bool:
        state = self.state
        start = event.get("start") or {}
        state.stream_sid = str(event.get("streamSid") or start.get("streamSid") or "")
        state.call_sid = str(start.get("callSid") or "")
        state.account_sid = str(start.get("accountSid") or "")
        state.custom = {str(k): nfc(str(v))
                        for k, v in (start.get("customParameters") or {}).items()}
        state.media_format = dict(start.get("mediaFormat") or {})
        state.started_at = utcnow()
        ours = self.config.account_sid
        if ours and state.account_sid and state.account_sid != ours:
            log.warning("media stream from another account refused")
            state.stream_sid = ""  # nothing will be persisted
            return True
        if self.open_recognizer is not None:
            try:
                state.recognizer = await self.open_recognizer()
            except Exception as exc:
                state.stt_error = f"{type(exc).__name__}: {exc}"
                log.exception("could not open a streaming recognizer; keeping audio only")
        log.info("media stream started", extra={"stt": state.recognizer is not None,
                                                 "custom": sorted(state.custom)})
        return False

    async def _media(self, media: dict[str, Any]) -> bool:
        state = self.state
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
        path = await asyncio.to_thread(save_wav, self.config.calls_dir,
                                       _safe_name(state.stream_sid), bytes(state.audio))
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
