"""Speech-to-text: one `Transcriber` interface over Vosk and faster-whisper, a warmed pool.

* Recordings and voice notes go through `SpeechPool`: a spawn-context process pool whose
  workers load each model once (seconds, ~0.5 GB) in their initializer; decoding with PyAV
  also happens in the worker so the event loop never touches FFmpeg.
* Live Twilio Media Streams use `StreamingCall` in the gateway process, because a Kaldi
  recognizer holds per-call state; the Vosk model is shared by all calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

from nlp.audio import (
    SAMPLE_RATE,
    AudioDecodeError,
    MulawStream,
    decode_to_pcm16,
    probe_duration,
)
from nlp.stt_types import ModelMissing, Transcript

ENGINES = ("vosk", "whisper")
WARM_TIMEOUT_S = 600.0  # how long warm() waits for every worker to finish loading
FLOWS = ("stream", "recording")
REFUSE_FACTOR = 10  # a file declaring more than 10x PAHT_VOICE_MAX_SECONDS is refused outright


class StreamSession(Protocol):
    """Incremental recognition of one audio stream."""

    def accept(self, pcm16: bytes) -> str | None:
        """Feed PCM; return a final segment's text at an endpoint, else None."""
        ...

    def partial(self) -> str:
        """Current partial hypothesis."""
        ...

    def finish(self) -> Transcript:
        """Flush and return the whole stream's transcript."""
        ...


class Transcriber(Protocol):
    """A loaded speech-to-text engine."""

    engine: str

    def transcribe(self, pcm16: bytes, rate: int = SAMPLE_RATE, *,
                   vocabulary: Sequence[str] = ()) -> Transcript:
        """Transcribe a whole mono int16 LE buffer (`vocabulary`: domain words, if used)."""
        ...

    def stream(self, rate: int = SAMPLE_RATE) -> StreamSession:
        """Open a streaming session."""
        ...


def load_transcriber(engine: str, model_dir: Path, *, threads: int | None = None) -> Transcriber:
    """Load `engine` ("vosk" | "whisper") from a local model directory."""
    model_dir = Path(model_dir)
    if engine == "vosk":
        from nlp.stt_vosk import VoskTranscriber

        return VoskTranscriber(model_dir)
    if engine == "whisper":
        from nlp.stt_whisper import WhisperTranscriber

        return WhisperTranscriber(model_dir, threads=threads)
    raise ValueError(f"unknown speech engine {engine!r} (expected one of {ENGINES})")


def parse_engine_spec(spec: str) -> dict[str, str]:
    """Parse PAHT_STT_ENGINE: "vosk" or "stream=vosk,recording=whisper" -> {flow: engine}."""
    result = {"stream": "vosk", "recording": "vosk"}
    spec = (spec or "").strip().lower()
    if not spec:
        return result
    if "=" not in spec and "," not in spec:
        if spec not in ENGINES:
            raise ValueError(f"unknown speech engine {spec!r} (expected one of {ENGINES})")
        return {"stream": spec, "recording": spec}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        flow, sep, engine = (s.strip() for s in part.partition("="))
        if not sep or flow not in FLOWS or engine not in ENGINES:
            raise ValueError(f"bad speech engine entry {part!r}: use e.g. 'recording=whisper'")
        result[flow] = engine
    return result


def model_dirs(vosk: Path | None = None, whisper: Path | None = None) -> dict[str, Path]:
    """Engine -> model directory for the engines whose directory exists (for `SpeechPool`)."""
    found = {"vosk": vosk, "whisper": whisper}
    return {name: Path(path) for name, path in found.items() if path and Path(path).is_dir()}


# --- worker process side ----------------------------------------------------------------

_WORKER: dict[str, Any] = {}
_WORKER_ERRORS: dict[str, str] = {}
_WORKER_LOAD_S: dict[str, float] = {}
_WORKER_BARRIER: list[Any] = []


def _init_worker(models: dict[str, str], threads: int, barrier: Any = None) -> None:
    """Pool initializer: load every model once; a failure marks the engine unavailable."""
    if barrier is not None:
        _WORKER_BARRIER.append(barrier)
    for engine, path in models.items():
        started = time.perf_counter()
        try:
            transcriber = load_transcriber(engine, Path(path), threads=threads)
            transcriber.transcribe(bytes(SAMPLE_RATE), SAMPLE_RATE)  # 0.5 s: first-call setup
            _WORKER[engine] = transcriber
        except Exception as exc:  # keep the worker alive: an initializer error breaks the pool
            _WORKER_ERRORS[engine] = f"{type(exc).__name__}: {exc}"
        else:
            _WORKER_LOAD_S[engine] = round(time.perf_counter() - started, 3)


def _worker_status(timeout_s: float) -> dict[str, Any]:
    """Report what this worker loaded, once every worker holds one status call (barrier)."""
    if _WORKER_BARRIER:
        try:
            _WORKER_BARRIER[0].wait(timeout_s)
        except threading.BrokenBarrierError:
            _WORKER_BARRIER[0].reset()
    return {
        "pid": os.getpid(),
        "loaded": sorted(_WORKER),
        "errors": dict(_WORKER_ERRORS),
        "load_s": dict(_WORKER_LOAD_S),
    }


def check_declared_length(audio: bytes, max_seconds: float | None) -> float | None:
    """The container's declared duration; AudioDecodeError when it is far over the limit
    (a decompression bomb is refused before a single frame is decoded)."""
    declared = probe_duration(audio)
    if max_seconds and declared is not None and declared > max_seconds * REFUSE_FACTOR:
        raise AudioDecodeError(
            f"audio declares {declared:.0f} s, over {REFUSE_FACTOR}x the {max_seconds:.0f} s limit")
    return declared


def _worker_transcribe(audio: bytes, engine: str, already_pcm: bool,
                       max_seconds: float | None = None,
                       vocabulary: tuple[str, ...] = ()) -> Transcript:
    """Check the declared length, decode (unless PCM already, at most `max_seconds`) and
    transcribe inside a worker process."""
    transcriber = _WORKER.get(engine)
    if transcriber is None:
        reason = _WORKER_ERRORS.get(engine, "not configured")
        raise ModelMissing(f"speech engine {engine!r} unavailable in worker: {reason}")
    if already_pcm:
        pcm = audio[: int(max_seconds * SAMPLE_RATE) * 2] if max_seconds else audio
    else:
        check_declared_length(audio, max_seconds)
        pcm = decode_to_pcm16(audio, SAMPLE_RATE, max_seconds=max_seconds)
    return transcriber.transcribe(pcm, SAMPLE_RATE, vocabulary=vocabulary)


# --- gateway process side ---------------------------------------------------------------


class SpeechPool:
    """Process pool (spawn) whose workers hold the speech models; warm it at start-up."""

    def __init__(
        self, models: dict[str, Path], workers: int = 1, *, threads: int | None = None
    ) -> None:
        self.models = {e: Path(p) for e, p in models.items() if p and Path(p).is_dir()}
        self.workers = max(1, workers)
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.workers)
        self.status: list[dict[str, Any]] = []
        self.restarts = 0
        self._executor: ProcessPoolExecutor | None = self._new_executor() if self.models else None

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        # The barrier makes warm()'s status calls land on distinct workers.
        barrier = context.Barrier(self.workers)
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=({e: str(p) for e, p in self.models.items()}, self.threads, barrier),
        )

    async def warm(self) -> None:
        """Start every worker and wait until each has loaded its models."""
        if self._executor is None:
            return
        loop = asyncio.get_running_loop()
        calls = [
            loop.run_in_executor(self._executor, _worker_status, WARM_TIMEOUT_S)
            for _ in range(self.workers)
        ]
        self.status = list(await asyncio.gather(*calls))

    def available(self, engine: str) -> bool:
        """True if `engine` has a model (and, once warmed, every worker loaded it)."""
        if self._executor is None or engine not in self.models:
            return False
        return all(engine in s["loaded"] for s in self.status) if self.status else True

    def load_errors(self) -> dict[str, str]:
        """Model load errors reported by the workers during `warm()`."""
        errors: dict[str, str] = {}
        for s in self.status:
            errors.update(s["errors"])
        return errors

    async def transcribe(
        self, audio: bytes, engine: str, *, already_pcm: bool = False,
        max_seconds: float | None = None, vocabulary: Sequence[str] = (),
    ) -> Transcript:
        """Transcribe container bytes (or 16 kHz PCM16 if `already_pcm`) in a worker, the
        first `max_seconds` at most, primed with `vocabulary`."""
        job = (audio, engine, already_pcm, max_seconds, tuple(vocabulary))
        if self._executor is None or engine not in self.models:
            raise ModelMissing(f"no model configured for speech engine {engine!r}")
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            return await loop.run_in_executor(executor, _worker_transcribe, *job)
        except BrokenProcessPool:
            # A worker died (native crash, OOM kill): replace the pool once and retry.
            if self._executor is None:
                raise
            if self._executor is executor:
                executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
                self.status = []
                self.restarts += 1
            return await loop.run_in_executor(self._executor, _worker_transcribe, *job)

    def close(self) -> None:
        """Stop the workers (pending jobs are cancelled)."""
        if self._executor is not None:
            with contextlib.suppress(Exception):
                self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class StreamingCall:
    """One live Twilio Media Stream: μ-law 8 kHz payloads in, partial/final text out."""

    def __init__(self, transcriber: Transcriber, *, keep_audio: bool = False) -> None:
        self._decoder = MulawStream()
        self._session = transcriber.stream(SAMPLE_RATE)
        self.engine = transcriber.engine
        self.audio: bytearray | None = bytearray() if keep_audio else None
        self.segments: list[str] = []
        self._result: Transcript | None = None

    def _accept(self, pcm: bytes) -> str | None:
        if self.audio is not None:
            self.audio.extend(pcm)
        text = self._session.accept(pcm)
        if text:
            self.segments.append(text)
        return text

    def feed_mulaw(self, payload: bytes) -> str | None:
        """Feed one base64-decoded media payload; return a final segment at an endpoint."""
        if self._result is not None:
            raise RuntimeError("call already finished")
        return self._accept(self._decoder.feed(payload))

    def partial(self) -> str:
        """The recognizer's partial hypothesis for the current utterance."""
        return "" if self._result is not None else self._session.partial()

    async def afeed_mulaw(self, payload: bytes) -> str | None:
        """`feed_mulaw` in a thread (Kaldi releases the GIL); await each before the next."""
        return await asyncio.to_thread(self.feed_mulaw, payload)

    async def afinish(self) -> Transcript:
        """`finish` in a thread."""
        return await asyncio.to_thread(self.finish)

    def finish(self) -> Transcript:
        """Flush resampler and recognizer; idempotent."""
        if self._result is None:
            self._accept(self._decoder.flush())
            self._result = self._session.finish()
        return self._result
