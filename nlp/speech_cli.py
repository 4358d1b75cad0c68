"""Bodies of `paht transcribe` and `paht models download` (wired up in gateway/cli.py).

nlp knows nothing of the gateway's settings: the CLI resolves the model directory
(--model, else PAHT_VOSK_MODEL / PAHT_WHISPER_MODEL) and passes it in.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO

from nlp.audio import AudioDecodeError, decode_to_pcm16
from nlp.models import VOSK_BASE_URL, ModelDownloadError, download_model
from nlp.stt import ENGINES, ModelMissing, load_transcriber


def transcribe_command(
    files: list[str],
    engine: str,
    model_dir: Path | None,
    *,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Transcribe audio files, printing one JSON line each; 0 ok, 1 a file failed, 2 no model."""
    out, err = out or sys.stdout, err or sys.stderr
    if engine not in ENGINES:
        err.write(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}\n")
        return 2
    if model_dir is None:
        variable = "PAHT_WHISPER_MODEL" if engine == "whisper" else "PAHT_VOSK_MODEL"
        err.write(f"no {engine} model: pass --model DIR or set {variable}\n")
        return 2
    try:
        started = time.perf_counter()
        transcriber = load_transcriber(engine, Path(model_dir))
        err.write(f"loaded {engine} model {model_dir} in {time.perf_counter() - started:.1f} s\n")
    except ModelMissing as exc:
        err.write(f"{exc}\n")
        return 2
    status = 0
    for name in files:
        record: dict[str, object] = {"file": name, "engine": engine}
        try:
            pcm = decode_to_pcm16(Path(name).read_bytes())
            result = transcriber.transcribe(pcm)
        except (OSError, AudioDecodeError) as exc:
            record["error"] = str(exc)
            status = 1
        else:
            record.update(
                text=result.text,
                duration_s=result.duration_s,
                rtf=result.rtf,
                confidence=result.confidence,
            )
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    return status


def models_download_command(
    name: str,
    dest: Path,
    *,
    base_url: str = VOSK_BASE_URL,
    sha256: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Download model `name` (e.g. "vi") into `dest` with checksum and progress; print its path."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        path = download_model(name, Path(dest), base_url=base_url, sha256=sha256, progress_out=err)
    except ModelDownloadError as exc:
        err.write(f"error: {exc}\n")
        return 1
    out.write(f"{path}\n")
    err.write(f"set PAHT_VOSK_MODEL={path}\n")
    return 0
