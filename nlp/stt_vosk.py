"""Vosk (Kaldi) engine: light, streaming, real-time on CPU. One `Model` per process."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlp.audio import SAMPLE_RATE, resample_pcm16
from nlp.stt_types import ModelMissing, Transcript

CHUNK_BYTES = 8000  # 0.25 s at 16 kHz: what a batch transcription feeds per AcceptWaveform
REQUIRED_FILES = ("am/final.mdl", "conf/model.conf")


def check_model_dir(model_dir: Path) -> None:
    """Raise `ModelMissing` unless `model_dir` looks like an unpacked Vosk model."""
    if not model_dir.is_dir():
        raise ModelMissing(f"Vosk model directory not found: {model_dir}")
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelMissing(f"{model_dir} is not a Vosk model (missing {', '.join(missing)})")


def _words(result: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(word, start_s, end_s, confidence) from a Vosk result with SetWords(True)."""
    return [(w["word"], w["start"], w["end"], w["conf"]) for w in result.get("result", [])]


class VoskStreamSession:
    """One recognizer for one audio stream (a call or a voice note)."""

    def __init__(self, model: Any, rate: int) -> None:
        from vosk import KaldiRecognizer

        self._rate = rate
        self._model_rate = SAMPLE_RATE if rate < SAMPLE_RATE else rate
        self._rec = KaldiRecognizer(model, self._model_rate)
        self._rec.SetWords(True)
        self._segments: list[str] = []
        self._words: list[tuple[str, float, float, float]] = []
        self._bytes = 0
        self._busy_s = 0.0

    def _collect(self, raw: str) -> str:
        result = json.loads(raw)
        text = result.get("text", "").strip()
        self._words.extend(_words(result))
        if text:
            self._segments.append(text)
        return text

    def accept(self, pcm16: bytes) -> str | None:
        """Feed int16 LE PCM; return the segment's text when an endpoint is reached."""
        if not pcm16:
            return None
        started = time.perf_counter()
        self._bytes += len(pcm16)
        if self._model_rate != self._rate:
            pcm16 = resample_pcm16(pcm16, self._rate, self._model_rate)
        try:
            endpoint = self._rec.AcceptWaveform(pcm16)
            text = self._collect(self._rec.Result()) if endpoint else ""
        finally:
            self._busy_s += time.perf_counter() - started
        return text or None

    def partial(self) -> str:
        """The current hypothesis for the unfinished segment."""
        return str(json.loads(self._rec.PartialResult()).get("partial", ""))

    def finish(self) -> Transcript:
        """Flush the recognizer and return everything heard on this stream."""
        started = time.perf_counter()
        self._collect(self._rec.FinalResult())
        self._busy_s += time.perf_counter() - started
        duration = self._bytes / 2 / self._rate
        confs = [w[3] for w in self._words]
        return Transcript(
            text=" ".join(self._segments),
            confidence=round(sum(confs) / len(confs), 4) if confs else None,
            duration_s=round(duration, 3),
            rtf=round(self._busy_s / duration, 4) if duration else 0.0,
            engine="vosk",
            words=tuple(self._words),
        )


class VoskTranscriber:
    """`Transcriber` backed by a Vosk model directory (loaded once, shared by recognizers)."""

    engine = "vosk"

    def __init__(self, model_dir: Path) -> None:
        check_model_dir(model_dir)
        from vosk import Model, SetLogLevel

        SetLogLevel(-1)
        self.model_dir = model_dir
        started = time.perf_counter()
        try:
            self._model = Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelMissing(f"cannot load Vosk model from {model_dir}: {exc}") from exc
        self.load_s = time.perf_counter() - started

    def stream(self, rate: int = SAMPLE_RATE) -> VoskStreamSession:
        """Open a streaming session (one Kaldi recognizer)."""
        return VoskStreamSession(self._model, rate)

    def transcribe(self, pcm16: bytes, rate: int = SAMPLE_RATE, *,
                   vocabulary: Sequence[str] = ()) -> Transcript:
        """Transcribe a whole mono int16 LE buffer. `vocabulary` is not used: a Vosk phrase
        list (grammar) restricts the output to those phrases, which suits command words, not
        free reports, and the large models have no dynamic graph for it at all."""
        del vocabulary
        session = self.stream(rate)
        chunk = CHUNK_BYTES * rate // SAMPLE_RATE // 2 * 2
        for start in range(0, len(pcm16), chunk):
            session.accept(pcm16[start : start + chunk])
        return session.finish()
