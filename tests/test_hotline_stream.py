"""The hotline in stream mode (issue 15): <Connect><Stream>, and when the socket closes the
TwiML after it redirects into the hold step, which reads the live transcript's report back.

Same fakes as tests/test_hotline_flow.py (fake speech, fake Twilio API, call simulator); the
simulator runs a signed Media Stream where the TwiML connects one, as Twilio does.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlsplit

from multidict import MultiDict
from sqlmodel import select

from channels.twilio_common import sign
from channels.voice_menu import FLOW_PATH
from gateway.domain import trust
from gateway.keys import SERVICES
from nlp.stt_types import Transcript
from store.models import CallbackRequest
from tests import test_hotline_flow as flow
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.fakes.twilio_call import CallSimulator
from tests.test_hotline_flow import CALL_URL, CALLER, LIGHT, FakeSpeech, _reports, simulator

hotline_app = flow.hotline_app  # the recorded-mode tests' fixture, shared


class FakeStreamSession:
    """The live recognizer of one Media Stream: counts audio, answers from the script."""

    def __init__(self, speech: FakeSpeech) -> None:
        self.speech, self.bytes = speech, 0

    def accept(self, pcm16: bytes) -> str | None:
        self.bytes += len(pcm16)
        return None

    def partial(self) -> str:
        return ""

    def finish(self) -> Transcript:
        text, conf = self.speech.script.pop(0) if self.speech.script else ("", 0.0)
        self.speech.calls.append({"stream_bytes": self.bytes})
        return Transcript(text=text, confidence=conf, duration_s=self.bytes / 32000, rtf=0.01,
                          engine="fake")


class FakeStreamTranscriber:
    engine = "fake"

    def __init__(self, speech: FakeSpeech) -> None:
        self.speech = speech

    def stream(self, rate: int = 16000) -> FakeStreamSession:
        return FakeStreamSession(self.speech)



# --- stream mode: <Connect><Stream>, then the TwiML after it redirects into the hold step -------


STREAM_SID = "MZ" + "5" * 32
SILENCE_FRAME = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of μ-law silence


async def play_media_stream(client: Any, twiml: str, call_sid: str, frames: int = 150) -> None:
    """What Twilio does at <Connect><Stream>: open the signed socket with the TwiML's
    <Parameter>s, send `frames` of audio and "stop", and wait until the gateway closes it."""
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    assert stream is not None, twiml
    url = stream.get("url", "")
    custom = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    headers = {"X-Twilio-Signature": sign(AUTH_TOKEN, url, MultiDict())}
    ws = await client.ws_connect(urlsplit(url).path, headers=headers)
    await ws.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await ws.send_json({"event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
                        "start": {"streamSid": STREAM_SID, "accountSid": ACCOUNT_SID,
                                  "callSid": call_sid, "tracks": ["inbound"],
                                  "customParameters": custom,
                                  "mediaFormat": {"encoding": "audio/x-mulaw",
                                                  "sampleRate": 8000, "channels": 1}}})
    for index in range(frames):
        await ws.send_json({"event": "media", "sequenceNumber": str(index + 2),
                            "streamSid": STREAM_SID,
                            "media": {"track": "inbound", "chunk": str(index + 1),
                                      "timestamp": str(index * 20), "payload": SILENCE_FRAME}})
    await ws.send_json({"event": "stop", "sequenceNumber": str(frames + 2),
                        "streamSid": STREAM_SID,
                        "stop": {"accountSid": ACCOUNT_SID, "callSid": call_sid}})
    async for _ in ws:  # the gateway closes once the call's message is persisted
        pass
    await ws.close()


def stream_simulator(client: Any, fake: FakeTwilio, drain_app: Any, presses: list[str],
                     call_sid: str = "CA" + "7" * 32) -> CallSimulator:
    """A stream-mode call: the simulator runs the Media Stream where the TwiML connects one
    (Twilio blocks at <Connect> until the socket closes, then runs the verbs after it)."""
    sim = simulator(client, fake, drain_app, presses, call_sid=call_sid)
    plain_post = sim.post

    async def post(url: str, params: dict[str, str]) -> tuple[int, str]:
        status, body = await plain_post(url, params)
        if status == 200 and "<Connect>" in body:
            await play_media_stream(client, body, call_sid)
        return status, body

    sim.post = post
    return sim


async def test_stream_mode_holds_after_connect_and_reads_back(hotline_app: Any,
                                                             drain_app: Any) -> None:
    client, fake, speech = await hotline_app(voice_mode="stream")
    speech.script = [(LIGHT, 0.45)]
    log = await stream_simulator(client, fake, drain_app, presses=[""]).run(CALL_URL)
    assert log.completed and log.hung_up and set(log.statuses) == {200}
    # The document after <Connect> redirects into the hold step (no recording: `since`).
    first_hold = urlsplit(log.requests[1])
    hold = parse_qs(first_hold.query)
    assert first_hold.path == FLOW_PATH
    assert hold["step"] == ["hold"] and "since" in hold and "rec" not in hold
    assert log.recordings == [] and speech.calls == [{"stream_bytes": 150 * 640}]  # 3 s, 16 kHz
    said = " ".join(log.said)
    assert said.index("Xin chờ trong giây lát") < said.index("Trung tâm hiểu anh chị phản ánh")
    assert "về Hạ tầng đô thị, tại số 12, đường Lê Lợi, phường Vĩnh Ninh" in said
    assert "bấm 1 để xác nhận" in said and "Bấm 2 để chọn lĩnh vực" in said
    action, digits = log.gathers[0]  # the read-back's keypad, left unanswered here
    assert parse_qs(urlsplit(action).query)["step"] == ["menu"] and digits == ""
    (report,) = await _reports(client)
    assert report.transcript == LIGHT and report.sector == "ha_tang_do_thi"
    assert report.status == "submitted" and trust.CALLER_CONFIRMED not in report.flags


async def test_stream_mode_keypad_confirms_the_report(hotline_app: Any, drain_app: Any) -> None:
    client, fake, speech = await hotline_app(voice_mode="stream")
    speech.script = [(LIGHT, 0.45)]
    log = await stream_simulator(client, fake, drain_app, presses=["1"]).run(CALL_URL)
    assert log.completed and set(log.statuses) == {200}
    assert "Cảm ơn anh chị đã xác nhận" in " ".join(log.said)
    (report,) = await _reports(client)
    assert trust.CALLER_CONFIRMED in report.flags and report.status == "confirmed"
    assert any(report.code in m["Body"] for m in fake.sends if m.get("To") == CALLER)


async def test_stream_mode_hold_is_bounded_and_falls_back_to_a_callback(
        hotline_app: Any, drain_app: Any) -> None:
    client, fake, speech = await hotline_app(voice_mode="stream", voice_hold_seconds=0)
    speech.script = [(LIGHT, 0.9)]
    sim = stream_simulator(client, fake, drain_app, presses=[])

    async def no_drain(seconds: float) -> None:  # the worker is stuck: nothing gets ready
        return None

    sim.on_pause = no_drain
    log = await sim.run(CALL_URL)
    assert log.completed and "Trung tâm đã lưu lời nhắn" in " ".join(log.said)
    assert len(log.requests) <= 3  # call, hold, no endless redirect loop
    async with client.app[SERVICES].sessions() as s:
        (callback,) = (await s.exec(select(CallbackRequest))).all()
    assert callback.reason == "not_ready"
    await drain_app(client.app)  # nothing lost: the live transcript still becomes a report
    (report,) = await _reports(client)
    assert report.transcript == LIGHT
