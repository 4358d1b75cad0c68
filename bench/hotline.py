"""Hotline call-flow bench: read-back latency, read-backs within the hold, keypad confirmation.

    .venv/bin/python bench/hotline.py [--calls 12] [--hold-seconds 45] [--speech-rtf 0.35]
                                      [--recording-seconds 12] [--speech-workers 2]

The gateway runs in process (`create_app`, its real worker and outbox loops, SQLite in a temp
dir) behind an aiohttp test server; Twilio is the local fake API (tests/fakes/twilio_api.py)
and each call is the TwiML-following simulator (tests/fakes/twilio_call.py), every request
signed against PAHT_PUBLIC_BASE_URL. All calls are placed at once.

Speech is a FAKE pool: `--speech-workers` slots, each transcription holds a slot for
recording-seconds x speech-rtf (the RTF of Whisper base on two cores: bench/stt.py), then
answers with a sentence of bench/stt.py (report sentences only, hand-labelled sectors) at
confidence 0.45, so only the keypad can confirm a report. What is measured is the flow:

- readback_s: from the end of the recording (the recordingStatusCallback) to the TwiML that
  reads the report back, as the caller hears it (the hold loop's <Pause>s are real seconds);
- readback_within_hold: share of calls read back before PAHT_VOICE_HOLD_SECONDS ran out
  (the others go to the operator / call-back path);
- keypad: the caller presses 1 at the read-back; confirmed reports, right sector, and the
  seconds from hang-up to the SMS with the tracking code.
Not modelled: the time Twilio's TTS takes to speak (a real call hears read-backs later).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stt import LABELS, SENTENCES
from gateway.app import create_app
from gateway.keys import SERVICES
from gateway.settings import Settings
from nlp.stt_types import Transcript
from store.models import Report
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, NUMBER, PUBLIC, FakeTwilio
from tests.fakes.twilio_call import CallLog, CallSimulator, form, signed_headers

CALL_URL = f"{PUBLIC}/webhooks/twilio/voice"


def fake_wav(index: int) -> bytes:
    """A stand-in recording that says which call it is (the fake pool never decodes it)."""
    return b"RIFF" + f"{index:08d}".encode() + b"\0" * 52


REPORTS = [(text, label) for text, label in zip(SENTENCES, LABELS, strict=True)
           if label != "khac"]


class SlowSpeech:
    """A speech service with `workers` slots; each job takes `seconds` of wall clock."""

    def __init__(self, workers: int, seconds: float) -> None:
        self.slots = asyncio.Semaphore(workers)
        self.seconds = seconds
        self.jobs = 0
        self.done_at: list[float] = []  # when each transcription finished (perf_counter)

    def available_for(self, flow: str) -> bool:
        """Every flow has a (fake) engine."""
        return True

    async def transcribe_flow(self, audio: bytes, flow: str, *, max_seconds: float | None = None,
                              vocabulary: Any = ()) -> Transcript:
        """Wait for a slot, hold it for the modelled decoding time, answer the next sentence."""
        async with self.slots:
            await asyncio.sleep(self.seconds)
        self.done_at.append(time.perf_counter())
        self.jobs += 1
        index = int(audio[4:12]) if audio[4:12].isdigit() else 0
        text = REPORTS[index % len(REPORTS)][0]
        return Transcript(text=text, confidence=0.45, duration_s=4.0, rtf=0.1, engine="fake")

    def describe(self) -> dict[str, str]:
        """What the health page shows."""
        return {"recording": "bench fake: ready"}

    def close(self) -> None:
        """Nothing to release."""


class Timed:
    """One call's timestamps next to the simulator's log."""

    def __init__(self) -> None:
        self.recorded_at: float | None = None
        self.readback_at: float | None = None
        self.hung_up_at: float | None = None
        self.log: CallLog | None = None


async def place_call(client: TestClient, fake: FakeTwilio, index: int, sim_base: str,
                     timed: Timed) -> None:
    """One call: no key at the greeting, speak, hold, press 1 at the read-back."""
    call_sid = f"CA{index:032d}"
    caller = caller_of(index)
    presses = [""]

    async def post(url: str, params: dict[str, str]) -> tuple[int, str]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        resp = await client.post(path, data=form(params),
                                 headers=signed_headers(AUTH_TOKEN, url, params))
        body = await resp.text()
        if timed.readback_at is None and timed.recorded_at is not None and (
                "step=menu" in body):  # the read-back's <Gather action=...step=menu>
            timed.readback_at = time.perf_counter()
            presses.append("1")
        return resp.status, body

    def press(action: str, said: list[str]) -> str:
        return presses.pop(0) if presses else ""

    async def record(action: str, callback: str) -> dict[str, str]:
        sid = f"RE{index:016d}{len(presses):016d}"
        fake.add_media(sid, fake_wav(index), "audio/wav")
        params = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid, "RecordingSid": sid,
                  "RecordingUrl": f"{sim_base}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}",
                  "RecordingStatus": "completed", "RecordingDuration": "12"}
        timed.recorded_at = time.perf_counter()
        await post(callback, params)
        return {**params, "Digits": "#"}

    async def on_pause(seconds: float) -> None:
        await asyncio.sleep(seconds)  # the caller really holds

    base = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid, "From": caller, "To": NUMBER}
    sim = CallSimulator(post, base, press=press, record=record, on_pause=on_pause)
    timed.log = await sim.run(CALL_URL)
    timed.hung_up_at = time.perf_counter()


def caller_of(index: int) -> str:
    """The simulated caller number of call `index` (withheld-free, Vietnamese mobile)."""
    return f"+8490500{index:04d}"


async def sms_seconds(fake: FakeTwilio, reports: list[Report], timed: list[Timed],
                      wait_s: float) -> list[float]:
    """Seconds from each call's hang-up until an SMS with its report's code went out."""
    code_of = {r.sender.removeprefix("tel:"): r.code for r in reports}
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + wait_s
    while time.perf_counter() < deadline and len(seen) < len(code_of):
        for message in fake.sends:
            to = message.get("To", "")
            if to in code_of and code_of[to] in message.get("Body", "") and to not in seen:
                seen[to] = time.perf_counter()
        await asyncio.sleep(0.05)
    return [max(0.0, seen[caller_of(i)] - t.hung_up_at) for i, t in enumerate(timed)
            if caller_of(i) in seen and t.hung_up_at is not None]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the gateway and the fakes, place the calls at once, collect the figures."""
    from sqlmodel import select

    fake = FakeTwilio()
    api = TestServer(fake.app(), host="127.0.0.1")
    await api.start_server()
    api_base = str(api.make_url("")).rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, database_url=f"sqlite:///{tmp}/bench.db", var_dir=Path(tmp) / "var",
            public_base_url=PUBLIC, session_secret="bench-session-secret", log_json=False,
            twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_number=NUMBER,
            twilio_api_base=api_base, review_policy="low_confidence", run_workers=True,
            voice_hold_seconds=args.hold_seconds, log_level="WARNING",
        )
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
        await client.start_server()
        speech = SlowSpeech(args.speech_workers, args.recording_seconds * args.speech_rtf)
        client.app[SERVICES].speech = speech
        timed = [Timed() for _ in range(args.calls)]
        started = time.perf_counter()
        try:
            await asyncio.gather(*(place_call(client, fake, i, api_base, t)
                                   for i, t in enumerate(timed)))
            wall = time.perf_counter() - started
            # Calls that fell back still become reports (nothing is lost): wait for them.
            deadline = time.perf_counter() + 120
            while True:
                async with client.app[SERVICES].sessions() as db:
                    reports = list((await db.exec(select(Report).order_by(Report.id))).all())
                if len(reports) >= args.calls or time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.2)
            sms = await sms_seconds(fake, reports, timed, wait_s=30)
        finally:
            await client.close()
            await api.close()
    return figures(args, timed, reports, sms, wall, speech.done_at)


# Confirmed, or already past it (the forwarder may deliver during the run).
CONFIRMED = ("confirmed", "forwarded", "in_progress", "resolved")


def figures(args: argparse.Namespace, timed: list[Timed], reports: list[Report],
            sms: list[float], wall: float, done_at: list[float]) -> dict[str, Any]:
    """The printed figures."""
    first_recording = min((t.recorded_at for t in timed if t.recorded_at), default=0.0)
    transcribed = [d - first_recording for d in sorted(done_at)]
    reasons: dict[str, int] = {}
    for r in reports:
        for reason in r.review_reasons if r.status not in CONFIRMED else ():
            reasons[reason] = reasons.get(reason, 0) + 1
    latencies = [t.readback_at - t.recorded_at for t in timed
                 if t.readback_at is not None and t.recorded_at is not None]
    logs = [t.log for t in timed if t.log is not None]
    fell_back = sum(1 for log in logs
                    if any(parse_qs(urlsplit(u).query).get("step") == ["operator"]
                           for u in log.requests)
                    or "Trung tâm đã lưu lời nhắn" in " ".join(log.said))
    expected = {caller_of(i): REPORTS[i % len(REPORTS)][1] for i in range(len(timed))}
    confirmed = [r for r in reports if r.status in CONFIRMED]
    keypad = [r for r in reports if "caller_confirmed" in r.flags]
    right = [r for r in reports if expected.get(r.sender.removeprefix("tel:")) == r.sector]

    def spread(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        ordered = sorted(values)
        return {"mean": round(statistics.fmean(values), 2),
                "p50": round(ordered[len(ordered) // 2], 2),
                "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
                "max": round(ordered[-1], 2)}

    return {
        "calls": args.calls,
        "model": {"speech_workers": args.speech_workers, "speech_rtf": args.speech_rtf,
                  "recording_s": args.recording_seconds,
                  "decode_s_per_call": round(args.recording_seconds * args.speech_rtf, 2),
                  "hold_seconds": args.hold_seconds},
        "calls_completed": sum(1 for log in logs if log.completed),
        "readbacks_offered": len(latencies),
        "readback_within_hold": round(len(latencies) / max(1, args.calls), 3),
        "readback_s_after_recording": spread(latencies),
        "transcribed_s_after_first_recording": spread(transcribed),
        "fell_back_to_operator_or_callback": fell_back,
        "keypad_confirmations": len(keypad),
        "reports": len(reports), "reports_confirmed": len(confirmed),
        "reports_right_sector": len(right),
        "review_reasons_of_unconfirmed": reasons,
        "sms_s_after_hangup": spread(sms), "sms_sent": len(sms),
        "wall_s": round(wall, 1),
    }


def main() -> int:
    """Parse the options, run the bench, print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--hold-seconds", type=float, default=45.0,
                        help="PAHT_VOICE_HOLD_SECONDS (default: the setting's default)")
    parser.add_argument("--speech-rtf", type=float, default=0.35)
    parser.add_argument("--recording-seconds", type=float, default=12.0)
    parser.add_argument("--speech-workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(json.dumps(report, ensure_ascii=False, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
