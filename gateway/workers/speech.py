"""Speech-to-text for the gateway: which engine serves which flow, in a warmed process pool.

`PAHT_STT_ENGINE` is "vosk" (both flows) or "stream=vosk,recording=whisper". Without a model
the gateway still runs: audio is kept and the report is flagged `transcript_pending`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.settings import Settings

log = logging.getLogger("paht.speech")


class Speech:
    """The flows (stream, recording) mapped to engines of one `nlp.stt.SpeechPool`."""

    def __init__(self, settings: Settings, pool: Any, flows: dict[str, str],
                 models: dict[str, Path]) -> None:
        self.settings = settings
        self.pool = pool
        self.flows = flows
        self.models = models
        self._stream_transcriber: Any = None

    def available_for(self, flow: str) -> bool:
        """True when the engine of `flow` has a model loaded."""
        engine = self.flows.get(flow)
        return engine is not None and self.pool.available(engine)

    async def transcribe_flow(self, audio: bytes, flow: str, *, max_seconds: float | None = None,
                              vocabulary: Sequence[str] = ()) -> Any:
        """Transcribe encoded audio with the engine configured for `flow` (the first
        `max_seconds` at most, primed with the domain `vocabulary`)."""
        return await self.pool.transcribe(audio, self.flows[flow], max_seconds=max_seconds,
                                          vocabulary=vocabulary)

    def streaming_transcriber(self) -> Any:
        """An in-process transcriber for live calls (Media Streams), or None without a model."""
        engine = self.flows.get("stream")
        if engine is None or engine not in self.models:
            return None
        if self._stream_transcriber is None:
            from nlp.stt import load_transcriber

            self._stream_transcriber = load_transcriber(engine, self.models[engine])
        return self._stream_transcriber

    def describe(self) -> dict[str, str]:
        """For /readyz: each flow's engine and whether its model is there."""
        return {
            flow: f"{engine}: {'ready' if self.pool.available(engine) else 'no model, queued'}"
            for flow, engine in self.flows.items()
        }

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.close()


async def start_speech(settings: Settings) -> Speech | None:
    """Build and warm the speech pool (and the live-call model); None without nlp.stt."""
    try:
        from nlp.stt import SpeechPool, load_transcriber, model_dirs, parse_engine_spec
    except ImportError:
        log.warning("speech-to-text not installed")
        return None
    flows = parse_engine_spec(settings.stt_engine)
    models = await asyncio.to_thread(model_dirs, settings.vosk_model, settings.whisper_model)
    for engine in set(flows.values()) - set(models):
        log.warning("no model for speech engine; audio is kept for later",
                    extra={"engine": engine})
    pool = SpeechPool(models, workers=settings.stt_workers)
    if models:
        await pool.warm()
    speech = Speech(settings, pool, flows, models)
    stream_engine = flows.get("stream")
    if settings.voice_mode == "stream" and stream_engine in models:
        # Live calls keep per-call recogniser state in this process: load the model once
        # here, off the event loop, rather than on the first call.
        speech._stream_transcriber = await asyncio.to_thread(
            load_transcriber, stream_engine, models[stream_engine])
    return speech
