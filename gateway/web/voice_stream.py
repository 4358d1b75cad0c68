"""WebSocket GET /webhooks/twilio/media: Twilio Media Streams → live transcript → one report.

Protocol: https://www.twilio.com/docs/voice/media-streams/websocket-messages (PROTOCOLS §5).
Twilio sends JSON text frames: "connected", "start" (streamSid, callSid, customParameters,
mediaFormat audio/x-mulaw 8 kHz mono), "media" (base64 μ-law, ~20 ms each), "dtmf", "mark",
"stop". We feed the audio to a per-call `nlp.stt.StreamingCall` (a Kaldi recognizer holds
per-call state), keep the caller's audio, and when the stream ends persist ONE InboundMessage
(external_id "stream:<streamSid>") through the ingestor — a WebSocket has no ack to retry.

Authenticity: whether the upgrade request carries X-Twilio-Signature is unverified
(PROTOCOLS §7.5). When present it must match (HMAC of the public wss:// or https:// URL, no
params), else 403. When absent we accept, but a "start" whose accountSid is not ours closes
the socket without persisting anything.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import json
import logging
import wave
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from twilio.request_validator import RequestValidator

from channels.base import Attachment, InboundMessage, utcnow
from channels.twilio_common import nfc
from channels.voice import MEDIA_PATH, caller_sender
from gateway.keys import CHANNELS, INGESTOR, SETTINGS, SPEECH
from nlp.audio import MULAW_RATE, mulaw_to_pcm16

log = logging.getLogger("paht.voice_stream")

FINISHERS = web.AppKey("voice_stream_finishers", set)  # set[asyncio.Task[None]]
MAX_PARTIALS = 50  # partial hypotheses kept for the audit trail
PARTIAL_EVERY = 25  # sample the partial hypothesis every N media frames (~0.5 s)


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
    recognizer: Any = None  # nlp.stt.StreamingCall or None (no model)
    stt_error: str | None = None
    done: bool = False


def _signature_ok(request: web.Request, settings: Any) -> bool:
    """Validate X-Twilio-Signature when Twilio sends one on the upgrade (PROTOCOLS §7.5)."""
    signature = request.headers.get("X-Twilio-Signature")
    if signature is None:
        return True
    token = settings.twilio_auth_token
    if not token:
        return False
    base = str(settings.public_base_url).rstrip("/") + request.path_qs
    candidates = {base}
    if base.startswith("https://"):
        candidates.add("wss://" + base[len("https://"):])
    elif base.startswith("http://"):
        candidates.add("ws://" + base[len("http://"):])
    validator = RequestValidator(token)
    return any(validator.validate(url, {}, signature) for url in candidates)


async def _open_recognizer(app: web.Application) -> Any:
    """A StreamingCall when a streaming model is loaded, else None (audio is still kept)."""
    speech = app.get(SPEECH)
    factory = getattr(speech, "streaming_transcriber", None)
    if factory is None:
        return None
    # The first call may load the model (seconds): keep it off the event loop.
    transcriber = await asyncio.to_thread(factory)
    if inspect.isawaitable(transcriber):
        transcriber = await transcriber
    if transcriber is None:
        return None
    from nlp.stt import StreamingCall

    return StreamingCall(transcriber)


def _save_wav(directory: Path, name: str, mulaw: bytes) -> Path:
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


async def _finish(app: web.Application, state: CallState) -> InboundMessage | None:
    """Flush the recognizer, save the audio, persist the one message of this call."""
    if state.done or not state.stream_sid:
        return None
    state.done = True
    settings = app[SETTINGS]
    text = ""
    confidence: float | None = None
    engine: str | None = None
    if state.recognizer is not None:
        try:
            transcript = await asyncio.to_thread(state.recognizer.finish)
            text = nfc(transcript.text or "").strip()
            confidence = transcript.confidence
            engine = transcript.engine
        except Exception as exc:  # a recognizer crash must not lose the caller's audio
            state.stt_error = f"{type(exc).__name__}: {exc}"
            log.exception("stream transcription failed")
    directory = Path(settings.resolved_media_dir()) / "calls"
    path = await asyncio.to_thread(_save_wav, directory, _safe_name(state.stream_sid),
                                   bytes(state.audio))
    duration = len(state.audio) / MULAW_RATE
    raw: dict[str, Any] = {
        "streamSid": state.stream_sid,
        "callSid": state.call_sid,
        "accountSid": state.account_sid,
        "customParameters": state.custom,
        "mediaFormat": state.media_format,
        "media_frames": state.frames,
        "duration_s": round(duration, 3),
        "partials": state.partials,
        "segments": state.segments,
        "transcript": text,
        "confidence": confidence,
        "engine": engine,
        "transcribed": state.recognizer is not None and state.stt_error is None,
        "digits": "".join(state.digits),
    }
    if state.stt_error:
        raw["stt_error"] = state.stt_error
    if duration < 0.5:
        raw["silent"] = True
    message = InboundMessage(
        channel="voice",
        external_id=f"stream:{state.stream_sid}",
        sender=caller_sender(state.custom.get("From"), state.call_sid),
        text=text,
        received_at=state.started_at or utcnow(),
        attachments=(Attachment(kind="audio", url=path.resolve().as_uri(), mime="audio/wav",
                                size=path.stat().st_size, name=path.name),),
        raw=raw,
    )
    await app[INGESTOR].accept([message])
    return message


async def _finish_logged(app: web.Application, state: CallState) -> None:
    try:
        await _finish(app, state)
    except Exception:
        log.exception("could not persist the media stream")


async def _on_event(app: web.Application, state: CallState, event: dict[str, Any]) -> bool:
    """Handle one Twilio frame; True when the call should be finished now."""
    settings = app[SETTINGS]
    kind = event.get("event")
    if kind == "start":
        start = event.get("start") or {}
        state.stream_sid = str(event.get("streamSid") or start.get("streamSid") or "")
        state.call_sid = str(start.get("callSid") or "")
        state.account_sid = str(start.get("accountSid") or "")
        state.custom = {str(k): nfc(str(v)) for k, v in (start.get("customParameters") or {})
                        .items()}
        state.media_format = dict(start.get("mediaFormat") or {})
        state.started_at = utcnow()
        ours = settings.twilio_account_sid
        if ours and state.account_sid and state.account_sid != ours:
            log.warning("media stream from another account refused")
            state.stream_sid = ""  # nothing will be persisted
            return True
        try:
            state.recognizer = await _open_recognizer(app)
        except Exception as exc:
            state.stt_error = f"{type(exc).__name__}: {exc}"
            log.exception("could not open a streaming recognizer; keeping audio only")
        log.info("media stream started", extra={"stt": state.recognizer is not None,
                                                 "custom": sorted(state.custom)})
        return False
    if kind == "media" and state.stream_sid:
        media = event.get("media") or {}
        if media.get("track", "inbound") not in ("inbound", "inbound_track"):
            return False
        try:
            payload = base64.b64decode(media.get("payload") or "", validate=True)
        except (binascii.Error, ValueError):
            return False
        state.audio.extend(payload)
        state.frames += 1
        if state.recognizer is not None and state.stt_error is None:
            try:
                final = await asyncio.to_thread(state.recognizer.feed_mulaw, payload)
                if final:
                    state.segments.append(nfc(final))
                elif state.frames % PARTIAL_EVERY == 0 and len(state.partials) < MAX_PARTIALS:
                    partial = state.recognizer.partial()
                    if partial and (not state.partials or state.partials[-1] != partial):
                        state.partials.append(nfc(partial))
            except Exception as exc:
                state.stt_error = f"{type(exc).__name__}: {exc}"
                log.exception("streaming recognizer failed; keeping audio only")
        limit = int(getattr(settings, "voice_max_seconds", 120) or 120) * MULAW_RATE
        return len(state.audio) >= limit
    if kind == "dtmf":
        digit = str((event.get("dtmf") or {}).get("digit") or "")
        state.digits.append(digit)
        return digit == "#"  # same key that ends a <Record>
    return kind == "stop"


async def media_stream(request: web.Request) -> web.StreamResponse:
    """The Media Streams WebSocket: one call per connection."""
    app = request.app
    if app[CHANNELS].get("voice") is None:
        raise web.HTTPNotFound(text="channel voice is not configured")
    if not _signature_ok(request, app[SETTINGS]):
        log.warning("media stream signature rejected")
        return web.Response(status=403, text="invalid signature")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1_000_000)
    await ws.prepare(request)
    state = CallState()
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                event = json.loads(msg.data)
            except ValueError:
                continue
            if isinstance(event, dict) and await _on_event(app, state, event):
                break
    finally:
        # Persist on stop, '#', the time limit, or a dropped connection alike. aiohttp cancels
        # the handler when the peer drops the connection, so the save runs in its own task
        # (shielded, tracked on the app so shutdown waits for it).
        task = asyncio.create_task(_finish_logged(app, state), name="voice-stream-finish")
        pending = app[FINISHERS]
        pending.add(task)
        task.add_done_callback(pending.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
        if not ws.closed:
            # Closing hands the call back to TwiML after <Connect> (the goodbye).
            with contextlib.suppress(Exception):
                await ws.close()
    return ws


async def _wait_finishers(app: web.Application) -> None:
    """On shutdown, let calls that just ended finish saving (the database is still open)."""
    pending = list(app[FINISHERS])
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def setup_voice_stream(app: web.Application) -> None:
    """Add GET /webhooks/twilio/media (call from create_app after the channels are set)."""
    app[FINISHERS] = set()
    app.router.add_get(MEDIA_PATH, media_stream)
    app.on_shutdown.append(_wait_finishers)

