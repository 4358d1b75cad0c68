"""What a speech engine returns, and the error when its model is missing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Transcript:
    """Result of one transcription; `words` holds (word, start_s, end_s, conf) when known."""

    text: str
    confidence: float | None
    duration_s: float
    rtf: float
    engine: str
    words: tuple = ()


class ModelMissing(Exception):
    """The engine's model directory (or the engine's library) is not available."""
