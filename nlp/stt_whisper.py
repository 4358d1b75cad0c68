"""faster-whisper engine (optional extra [whisper]): slower, more accurate, for recordings."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlp.audio import SAMPLE_RATE, pcm16_to_float32, pcm_duration, resample_pcm16
from nlp.stt_types import ModelMissing, Transcript

REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
LANGUAGE = "vi"
PROMPT_MAX_CHARS = 600  # Whisper's prompt is at most 224 tokens: keep the first words


def vocabulary_prompt(words: Sequence[str]) -> str:
    """Domain words as a Whisper prompt: a comma-separated list, cut at a word."""
    prompt = ", ".join(w.strip() for w in words if w.strip())
    if len(prompt) > PROMPT_MAX_CHARS:
        prompt = prompt[:PROMPT_MAX_CHARS].rsplit(",", 1)[0]
    return prompt


def check_model_dir(model_dir: Path) -> None:
    """Raise `ModelMissing` unless `model_dir` holds a CTranslate2 Whisper model."""
    if not model_dir.is_dir():
        raise ModelMissing(f"Whisper model directory not found: {model_dir}")
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise ModelMissing(f"{model_dir} is not a CTranslate2 Whisper model (missing {missing})")


class WhisperSession:
    """Whisper cannot stream: buffer the audio and decode it all in `finish()`."""

    def __init__(self, transcriber: WhisperTranscriber, rate: int) -> None:
        self._transcriber = transcriber
        self._rate = rate
        self._chunks: list[bytes] = []

    def accept(self, pcm16: bytes) -> str | None:
        """Buffer audio; Whisper never reports an endpoint mid-stream."""
        self._chunks.append(pcm16)
        return None

    def partial(self) -> str:
        """Always empty: there is no partial hypothesis before `finish()`."""
        return ""

    def finish(self) -> Transcript:
        """Decode everything buffered so far."""
        return self._transcriber.transcribe(b"".join(self._chunks), self._rate)


class WhisperTranscriber:
    """`Transcriber` backed by a local CTranslate2 Whisper directory (int8 on CPU)."""

    engine = "whisper"

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int | None = None,
        compute_type: str = "int8",
        beam_size: int = 5,
    ) -> None:
        check_model_dir(model_dir)
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelMissing(
                "faster-whisper is not installed (pip install 'paht-gateway[whisper]')"
            ) from exc
        self.model_dir = model_dir
        self.beam_size = beam_size
        started = time.perf_counter()
        try:
            self._model: Any = WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=threads or min(4, os.cpu_count() or 1),
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelMissing(f"cannot load Whisper model from {model_dir}: {exc}") from exc
        self.load_s = time.perf_counter() - started

    def stream(self, rate: int = SAMPLE_RATE) -> WhisperSession:
        """A buffering session with the streaming interface."""
        return WhisperSession(self, rate)

    def transcribe(self, pcm16: bytes, rate: int = SAMPLE_RATE, *,
                   vocabulary: Sequence[str] = ()) -> Transcript:
        """Transcribe a whole mono int16 LE buffer in Vietnamese; `vocabulary` (domain words)
        primes the decoder as its initial prompt."""
        started = time.perf_counter()
        duration = pcm_duration(pcm16, rate)
        audio = pcm16_to_float32(resample_pcm16(pcm16, rate, SAMPLE_RATE))
        texts: list[str] = []
        logprobs: list[float] = []
        if audio.size:
            segments, _info = self._model.transcribe(
                audio,
                language=LANGUAGE,
                beam_size=self.beam_size,
                vad_filter=True,  # silero VAD ships inside faster-whisper; keeps silence silent
                condition_on_previous_text=False,
                # The prompt biases spelling toward the domain's words (street names, sector
                # phrases); `hotwords` applies only when there is no prompt in faster-whisper.
                initial_prompt=vocabulary_prompt(vocabulary) or None,
            )
            for seg in segments:
                if seg.no_speech_prob > 0.6 and seg.avg_logprob < -1.0:
                    continue  # Whisper's own "this was not speech" rule
                if seg.text.strip():
                    texts.append(seg.text.strip())
                    logprobs.append(seg.avg_logprob)
        busy = time.perf_counter() - started
        return Transcript(
            text=" ".join(texts),
            confidence=round(math.exp(sum(logprobs) / len(logprobs)), 4) if logprobs else None,
            duration_s=round(duration, 3),
            rtf=round(busy / duration, 4) if duration else 0.0,
            engine="whisper",
        )
