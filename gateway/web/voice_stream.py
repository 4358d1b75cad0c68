"""WebSocket GET /webhooks/twilio/media: the route glue around channels/voice_stream.py.

Accept the upgrade (signature checked by the channel side when Twilio sends one), feed every
text frame to the call's `MediaStream`, and when the stream ends persist its ONE message
through the ingestor — a WebSocket has no ack the provider could retry. The live recognizer
comes from the app's speech service (nlp.stt.StreamingCall) when a streaming model is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from typing import Any

from aiohttp import WSMsgType, web

from channels.voice import MEDIA_PATH, VoiceChannel
from channels.voice_stream import LiveRecognizer, MediaStream, upgrade_signature_ok
from gateway.keys import INGESTOR, SERVICES

log = logging.getLogger("paht.voice_stream")

FINISHERS = web.AppKey("voice_stream_finishers", set)  # set[asyncio.Task[None]]


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
    signature = request.headers.get("X-Twilio-Signature")
    if not upgrade_signature_ok(channel.config, request.path_qs, signature):
        log.warning("media stream signature rejected")
        return web.Response(status=403, text="invalid signature")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1_000_000)
    await ws.prepare(request)
    stream = MediaStream(channel.config, lambda: _open_recognizer(app))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and await stream.feed_frame(msg.data):
                break
    finally:
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


async def _wait_finishers(app: web.Application) -> None:
    """On shutdown, let calls that just ended finish saving (the database is still open)."""
    finishers: set[asyncio.Task[None]] = app[FINISHERS]
    pending = list(finishers)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def setup_voice_stream(app: web.Application) -> None:
    """Add GET /webhooks/twilio/media (call from create_app after the channels are set)."""
    app[FINISHERS] = set()
    app.router.add_get(MEDIA_PATH, media_stream)
    app.on_shutdown.append(_wait_finishers)
