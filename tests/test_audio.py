"""nlp.audio: PyAV decoding of every channel's container, the μ-law table, the 2x upsampler."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from speech_support import (
    VI_HELLO,
    encode,
    espeak_wav,
    require_tool,
    similarity,
    sox,
    sox_raw_s16,
)

from nlp.audio import (
    ULAW2PCM,
    AudioDecodeError,
    MulawStream,
    Upsampler2x,
    decode_audio,
    decode_to_pcm16,
    mulaw_to_pcm16,
    pcm16_to_mulaw,
    pcm_duration,
    resample_pcm16,
    upsample_2x,
)


def _g711_reference(code: int) -> int:
    """ITU-T G.711 μ-law expansion written out bit by bit (Sun g711.c `ulaw2linear`)."""
    u = ~code & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if sign else magnitude


def _tone(freq: float, seconds: float, rate: int, amp: float = 10000.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Vietnamese espeak-ng sentence (22.05 kHz WAV)."""
    return espeak_wav(VI_HELLO, tmp_path_factory.mktemp("audio") / "vi.wav")


@pytest.fixture(scope="module")
def reference_pcm(speech_wav: Path) -> bytes:
    """The sentence decoded by sox (independent of PyAV) at 16 kHz."""
    return sox_raw_s16(speech_wav, 16000)


# --- μ-law ------------------------------------------------------------------------------


def test_mulaw_table_matches_g711_formula() -> None:
    expected = [_g711_reference(code) for code in range(256)]
    assert ULAW2PCM.tolist() == expected
    assert np.frombuffer(mulaw_to_pcm16(bytes(range(256))), "<i2").tolist() == expected
    assert (expected[0x00], expected[0x80], expected[0xFF], expected[0x7F]) == (-32124, 32124, 0, 0)


@pytest.mark.speech
def test_mulaw_table_matches_sox_decoder(tmp_path: Path) -> None:
    raw = tmp_path / "codes.ul"
    raw.write_bytes(bytes(range(256)) * 4)
    exe = require_tool("sox")
    args = [exe, "-t", "ul", "-r", "8000", "-c", "1", str(raw), "-t", "raw", "-e", "signed"]
    decoded = subprocess.run([*args, "-b", "16", "-"], check=True, capture_output=True).stdout
    assert decoded == mulaw_to_pcm16(bytes(range(256)) * 4)


def test_mulaw_encoder_inverts_table() -> None:
    codes = bytes(c for c in range(256) if c != 0x7F)  # 0x7F and 0xFF both mean zero
    assert pcm16_to_mulaw(mulaw_to_pcm16(codes)) == codes
    x = np.arange(-32768, 32768, 37, dtype=np.int64)
    back = np.frombuffer(mulaw_to_pcm16(pcm16_to_mulaw(x.astype("<i2").tobytes())), "<i2")
    assert np.all(np.abs(back - x) <= np.maximum(16, np.abs(x) // 16))  # μ-law step size


# --- resampling -------------------------------------------------------------------------


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_upsampler_reproduces_telephone_band_tones(freq: float) -> None:
    up = np.frombuffer(upsample_2x(_tone(freq, 1.0, 8000)), "<i2").astype(np.float64)
    assert len(up) == 16000
    ideal = np.frombuffer(_tone(freq, 1.0, 16000), "<i2").astype(np.float64)
    error = np.sqrt(np.mean((up[200:-200] - ideal[200:-200]) ** 2))
    assert error < 10000 * 0.01  # better than -40 dB


def test_upsampler_is_chunking_invariant() -> None:
    pcm = np.random.default_rng(1).integers(-20000, 20000, 8000).astype("<i2").tobytes()
    up = Upsampler2x()
    out, pos, rnd = [], 0, random.Random(2)
    while pos < len(pcm):
        size = 2 * rnd.randint(0, 200)  # includes empty and tiny chunks
        out.append(up.process(pcm[pos : pos + size]))
        pos += size
    out.append(up.flush())
    assert b"".join(out) == upsample_2x(pcm)


def test_mulaw_stream_twilio_frames() -> None:
    ulaw = pcm16_to_mulaw(_tone(440.0, 1.0, 8000))
    stream = MulawStream()
    chunks = [stream.feed(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160)]  # 20 ms
    assert all(len(c) == 640 for c in chunks[1:])  # 20 ms at 16 kHz once the filter is primed
    pcm = b"".join(chunks) + stream.flush()
    assert pcm_duration(pcm) == pytest.approx(1.0)
    assert pcm == decode_audio(ulaw, mulaw_8k=True)
    assert stream.received_bytes == 8000


def test_resample_and_duration() -> None:
    assert pcm_duration(bytes(32000)) == 1.0
    assert pcm_duration(bytes(16000), 8000) == 1.0
    assert pcm_duration(resample_pcm16(bytes(2 * 22050), 22050, 16000)) == pytest.approx(1.0)
    assert resample_pcm16(b"ab", 16000, 16000) == b"ab"


# --- container decoding -----------------------------------------------------------------


@pytest.mark.speech
@pytest.mark.parametrize(
    ("label", "make"),
    [
        ("wav_22k", lambda wav, pcm, d: wav.read_bytes()),
        ("twilio_wav_8k_pcm", lambda wav, pcm, d: sox(wav, d / "t.wav", "-r", "8000").read_bytes()),
        (
            "twilio_wav_8k_ulaw",
            lambda wav, pcm, d: sox(wav, d / "u.wav", "-r", "8000", "-e", "u-law").read_bytes(),
        ),
        ("telegram_ogg_opus", lambda wav, pcm, d: encode(pcm, 16000, "ogg", "libopus")),
        ("zalo_aac_adts", lambda wav, pcm, d: encode(pcm, 16000, "adts", "aac")),
        ("messenger_mp4_aac", lambda wav, pcm, d: encode(pcm, 16000, "mp4", "aac")),
        ("twilio_mp3", lambda wav, pcm, d: encode(pcm, 16000, "mp3", "libmp3lame")),
    ],
)
def test_decode_channel_formats(
    label: str, make, speech_wav: Path, reference_pcm: bytes, tmp_path: Path
) -> None:
    data = make(speech_wav, reference_pcm, tmp_path)
    pcm = decode_to_pcm16(data)
    assert len(pcm) % 2 == 0
    # Codecs pad to whole frames (AAC: 1024 samples plus priming), so allow 150 ms.
    assert pcm_duration(pcm) == pytest.approx(pcm_duration(reference_pcm), abs=0.15)
    threshold = 0.9 if "8k" in label else 0.97  # 8 kHz loses everything above 4 kHz
    assert similarity(reference_pcm, pcm) > threshold, label


@pytest.mark.speech
def test_decode_to_other_rate(speech_wav: Path) -> None:
    pcm8 = decode_to_pcm16(speech_wav.read_bytes(), rate=8000)
    pcm16 = decode_to_pcm16(speech_wav.read_bytes())
    assert pcm_duration(pcm8, 8000) == pytest.approx(pcm_duration(pcm16), abs=0.01)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is not audio at all\n" * 50,
        random.Random(0).randbytes(4096),
        b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(512),
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # a truncated WAV header
    ],
    ids=["empty", "text", "random", "png", "truncated-wav"],
)
def test_garbage_raises_audio_decode_error(data: bytes) -> None:
    with pytest.raises(AudioDecodeError):
        decode_to_pcm16(data)


def test_duration_is_read_from_the_container_and_decoding_is_trimmed() -> None:
    """Issue 15: the declared length is known before decoding; the decode stops at the cap."""
    import io
    import wave

    from nlp.audio import decode_to_pcm16, probe_duration
    from nlp.stt import REFUSE_FACTOR, check_declared_length

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(2 * 16000 * 6))  # 6 s
    data = buf.getvalue()
    assert probe_duration(data) == pytest.approx(6.0, abs=0.01)
    assert len(decode_to_pcm16(data, 16000, max_seconds=2.0)) == 2 * 16000 * 2
    assert len(decode_to_pcm16(data, 16000)) == 2 * 16000 * 6
    assert check_declared_length(data, 1.0) == pytest.approx(6.0, abs=0.01)
    with pytest.raises(AudioDecodeError, match="over"):
        check_declared_length(data, 6.0 / (REFUSE_FACTOR + 1))
