"""WebSocket GET /webhooks/twilio/media: the route glue around channels/voice_stream.py.

Registered only in stream mode. The upgrade needs a valid X-Twilio-Signature (403), a free
slot under PAHT_VOICE_MAX_STREAMS (503) and passes the per-IP rate limit (429); then every text
frame (at most MAX_FRAME_BYTES) goes to the call's `MediaStream`, which checks accountSid and
the per-call token at "start". A stream that does not start within START_TIMEOUT_S, or runs
past the call length, is closed. When the stream ends its ONE message is persisted through
the ingestor — a WebSocket has no ack the provider could retry. The live recognizer comes
from the app's speech service (nlp.stt.StreamingCall) when a streaming model is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from typing import Any

from aiohttp import WSMsgType, web

from channels.voice import MEDIA_PATH, VoiceChannel
from channels.voice_stream import (
    MAX_FRAME_BYTES,
    LiveRecognizer,
    MediaStream,
    upgrade_signature_ok,
)
from gateway.keys import INGESTOR, SERVICES, SETTINGS
from gateway.web.ratelimit import limited_response

log = logging.getLogger("paht.voice_stream")

FINISHERS = web.AppKey("voice_stream_finishers", set)  # set[asyncio.Task[None]]
ACTIVE = web.AppKey("voice_stream_active", set)  # set[int]: ids of the open streams
START_TIMEOUT_S = 10.0  # Twilio sends "connected" and "start" right after the upgrade
CALL_SLACK_S = 30.0  # wall-clock grace beyond PAHT_VOICE_MAX_SECONDS of audio


async def _open_recognizer(app: web.Application) -> LiveRecognizer | None:
    """A StreamingCall when a streaming model is loaded, else None (audio is still kept)."""
    speech = app[SERVICES].speech
    if speech is None:  # no speech-to-text here: the call's audio is still kept
        return None
    # The first call may load the model (seconds): keep it off the event loop.
    transcriber: Any = await asyncio.to_thread(speech.streaming_transcriber)
    if inspect.isawaitable(transcriber):
        transcriber = await transcriber
    if transcriber is None:
        return None
    from nlp.stt import StreamingCall

    return StreamingCall(transcriber)


async def _finish_logged(app: web.Application, stream: MediaStream) -> None:
    try:
        message = await stream.finish()
        if message is not None:
            await app[INGESTOR].accept([message])
    except Exception:
        log.exception("could not persist the media stream")


async def media_stream(request: web.Request) -> web.StreamResponse:
    """The Media Streams WebSocket: one call per connection."""
    app = request.app
    channel = app[SERVICES].channels.get("voice")
    if not isinstance(channel, VoiceChannel):
        raise web.HTTPNotFound(text="channel voice is not configured")
    refused = limited_response(request, "voice_stream")
    if refused is not None:
        return refused
    signature = request.headers.get("X-Twilio-Signature")
    if not upgrade_signature_ok(channel.config, request.path_qs, signature):
        log.warning("media stream signature rejected")
        return web.Response(status=403, text="invalid signature")
    active: set[int] = app[ACTIVE]
    if len(active) >= max(1, app[SETTINGS].voice_max_streams):
        log.warning("media stream refused: too many open streams")
        return web.Response(status=503, text="busy", headers={"Retry-After": "5"})
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME_BYTES)
    stream = MediaStream(channel.config, lambda: _open_recognizer(app))
    active.add(id(stream))
    try:
        await ws.prepare(request)
        await _pump(ws, stream, channel.config.max_seconds + CALL_SLACK_S)
    finally:
        active.discard(id(stream))
        # Persist on stop, '#', the time limit, or a dropped connection alike. aiohttp cancels
        # the handler when the peer drops the connection, so the save runs in its own task
        # (shielded, tracked on the app so shutdown waits for it).
        task = asyncio.create_task(_finish_logged(app, stream), name="voice-stream-finish")
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


async def _pump(ws: web.WebSocketResponse, stream: MediaStream, call_limit_s: float) -> None:
    """Feed text frames until the call ends, the start is late, or the call runs too long."""
    loop = asyncio.get_running_loop()
    opened = loop.time()
    while not ws.closed:
        limit = call_limit_s if stream.started else START_TIMEOUT_S
        remaining = opened + limit - loop.time()
        if remaining <= 0:
            log.warning("media stream closed: no start in time or call too long")
            return
        try:
            msg = await ws.receive(timeout=remaining)
        except TimeoutError:
            continue  # the loop decides with the new deadline
        if msg.type == WSMsgType.TEXT:
            if await stream.feed_frame(msg.data):
                return
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                          WSMsgType.ERROR):
            return
        elif msg.type == WSMsgType.BINARY:
            return  # Twilio sends text frames only


async def _wait_finishers(app: web.Application) -> None:
    """On shutdown, let calls that just ended finish saving (the database is still open)."""
    finishers: set[asyncio.Task[None]] = app[FINISHERS]
    pending = list(finishers)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def setup_voice_stream(app: web.Application) -> None:
    """Add GET /webhooks/twilio/media, in stream mode only (record mode has no stream), and
    the in-call flow of both modes (gateway/web/voice_calls.py)."""
    from gateway.web.voice_calls import setup_voice_calls

    app[FINISHERS] = set()
    app[ACTIVE] = set()
    setup_voice_calls(app)
    if app[SETTINGS].voice_mode != "stream":
        return
    app.router.add_get(MEDIA_PATH, media_stream)
    app.on_shutdown.append(_wait_finishers)
