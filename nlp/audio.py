"""Audio decoding for speech-to-text: any channel's voice note -> 16 kHz mono PCM16.

Containers and codecs (Telegram OGG/Opus, Zalo AAC, Messenger MP4/AAC, Twilio WAV) are
decoded with PyAV (FFmpeg). Twilio Media Streams deliver raw G.711 μ-law at 8 kHz; those
frames are expanded with a numpy lookup table (``audioop`` is gone in Python 3.13) and
upsampled 2x with a stateful half-band FIR so a per-call stream can be fed 20 ms at a time.
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np

SAMPLE_RATE: Final = 16000
MULAW_RATE: Final = 8000
MAX_DECODED_SECONDS: Final = 4 * 3600  # refuse to expand anything longer (decompression bomb)


class AudioDecodeError(Exception):
    """Raised when bytes cannot be decoded as audio."""


def _mulaw_table() -> np.ndarray:
    """G.711 μ-law -> linear int16, identical to ``audioop.ulaw2lin(b, 2)`` on all 256 codes."""
    u = (~np.arange(256)) & 0xFF
    mag = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return np.where(u & 0x80, -mag, mag).astype("<i2")


ULAW2PCM: Final[np.ndarray] = _mulaw_table()


def mulaw_to_pcm16(frames: bytes) -> bytes:
    """Expand G.711 μ-law bytes to int16 little-endian PCM (same rate, one sample per byte)."""
    return ULAW2PCM[np.frombuffer(frames, dtype=np.uint8)].tobytes()


def pcm16_to_mulaw(pcm: bytes) -> bytes:
    """Compress int16 LE PCM to G.711 μ-law (the inverse of `mulaw_to_pcm16`, for tests/bench)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def pcm_duration(pcm: bytes, rate: int = SAMPLE_RATE) -> float:
    """Duration in seconds of mono int16 PCM at `rate`."""
    return len(pcm) / 2 / rate


def pcm16_to_float32(pcm: bytes) -> np.ndarray:
    """Mono int16 LE PCM -> float32 samples in [-1, 1) (the input faster-whisper expects)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def _halfband_taps(half_length: int) -> np.ndarray:
    """Odd-phase coefficients of a Blackman-windowed half-band interpolation filter."""
    t = np.arange(half_length) + 0.5  # distances of the neighbours from the midpoint
    window = (
        0.42
        + 0.5 * np.cos(np.pi * t / (half_length + 0.5))
        + 0.08 * np.cos(2 * np.pi * t / (half_length + 0.5))
    )
    taps = np.sinc(t) * window
    return taps / (2 * taps.sum())  # unity gain at DC


class Upsampler2x:
    """Stateful 2x upsampler (half-band FIR) for int16 mono blocks of any length."""

    HALF: Final = 16  # 32 taps; holds back 2 ms at 8 kHz, flat through the telephone band

    def __init__(self) -> None:
        self._taps = _halfband_taps(self.HALF)
        self._hist = np.zeros(self.HALF - 1, dtype=np.float64)

    def process(self, pcm: bytes) -> bytes:
        """Upsample a block; output lags input by `HALF` samples until `flush()`."""
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        buf = np.concatenate([self._hist, x])
        n = self.HALF
        count = len(buf) - (2 * n - 1)
        if count <= 0:
            self._hist = buf
            return b""
        mid = np.zeros(count, dtype=np.float64)
        for j, c in enumerate(self._taps):
            mid += c * (buf[n - 1 - j : n - 1 - j + count] + buf[n + j : n + j + count])
        out = np.empty(2 * count, dtype=np.float64)
        out[0::2] = buf[n - 1 : n - 1 + count]
        out[1::2] = mid
        self._hist = buf[count:]
        return np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()

    def flush(self) -> bytes:
        """Emit the samples still held back by the filter delay."""
        return self.process(np.zeros(self.HALF, dtype="<i2").tobytes())


def upsample_2x(pcm: bytes) -> bytes:
    """Upsample a whole int16 mono buffer by two (e.g. 8 kHz -> 16 kHz)."""
    up = Upsampler2x()
    return up.process(pcm) + up.flush()


class MulawStream:
    """Per-call Twilio Media Stream decoder: μ-law 8 kHz payloads -> PCM16 16 kHz."""

    def __init__(self) -> None:
        self._up = Upsampler2x()
        self.received_bytes = 0

    def feed(self, payload: bytes) -> bytes:
        """Decode one base64-decoded media payload; returns 16 kHz int16 LE PCM."""
        self.received_bytes += len(payload)
        return self._up.process(mulaw_to_pcm16(payload))

    def flush(self) -> bytes:
        """Return the last few milliseconds held back by the resampler (call at `stop`)."""
        return self._up.flush()


def probe_duration(data: bytes) -> float | None:
    """The duration in seconds the container declares, read without decoding (None when it
    declares none, e.g. a stream-only OGG without a final granule)."""
    if not data:
        raise AudioDecodeError("empty input")
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("no audio stream in input")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1_000_000  # AV_TIME_BASE
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise AudioDecodeError(f"cannot read audio: {exc}") from exc
    return None


def decode_to_pcm16(data: bytes, rate: int = SAMPLE_RATE, *,
                    max_seconds: float | None = None) -> bytes:
    """Decode any container/codec PyAV reads to mono int16 LE PCM at `rate`; with
    `max_seconds` decoding stops there (the rest is trimmed, never expanded)."""
    if not data:
        raise AudioDecodeError("empty input")
    import av  # deferred: importing FFmpeg bindings costs ~100 ms

    limit = min(MAX_DECODED_SECONDS, max_seconds) if max_seconds else MAX_DECODED_SECONDS
    trim = max_seconds is not None and max_seconds < MAX_DECODED_SECONDS
    max_bytes = int(limit * rate) * 2
    chunks: list[bytes] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioDecodeError("no audio stream in input")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().astype("<i2", copy=False).tobytes()
                    total += len(chunk)
                    if total > max_bytes:
                        if not trim:
                            raise AudioDecodeError(f"audio longer than {MAX_DECODED_SECONDS} s")
                        chunks.append(chunk[: len(chunk) - (total - max_bytes)])
                        return b"".join(chunks)
                    chunks.append(chunk)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().astype("<i2", copy=False).tobytes())
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise AudioDecodeError(f"cannot decode audio: {exc}") from exc
    pcm = b"".join(chunks)
    if not pcm:
        raise AudioDecodeError("no audio samples decoded")
    return pcm


def decode_audio(data: bytes, rate: int = SAMPLE_RATE, *, mulaw_8k: bool = False) -> bytes:
    """Decode container bytes, or headerless μ-law 8 kHz when `mulaw_8k`, to PCM16 at `rate`."""
    if not mulaw_8k:
        return decode_to_pcm16(data, rate)
    if rate != 2 * MULAW_RATE:
        raise ValueError("raw μ-law input can only be resampled to 16 kHz")
    return upsample_2x(mulaw_to_pcm16(data))


def resample_pcm16(pcm: bytes, src_rate: int, dst_rate: int = SAMPLE_RATE) -> bytes:
    """Resample mono int16 LE PCM between rates (2x via the FIR upsampler, else FFmpeg)."""
    if src_rate == dst_rate or not pcm:
        return pcm
    if dst_rate == 2 * src_rate:
        return upsample_2x(pcm)
    import av

    samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = src_rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=dst_rate)
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    return b"".join(f.to_ndarray().astype("<i2", copy=False).tobytes() for f in frames)
