"""The recorded hotline flow end to end, with a real speech model in the warmed process pool.

Twilio's recording callback → durable ingest → the worker downloads the WAV from the fake
Twilio API → faster-whisper (the Whisper base test model, assembled from its PyPI parts)
transcribes it in the gateway's process pool → the report is submitted with the transcript →
the caller gets the tracking code by SMS. A silent recording is kept and flagged, not dropped.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest
from multidict import MultiDict
from sqlmodel import select

from channels.twilio_common import sign
from gateway.keys import SERVICES
from store.models import Report
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, NUMBER, PUBLIC, FakeTwilio
from tests.speech_support import espeak_wav, silence, whisper_model_dir

pytestmark = pytest.mark.speech
CALLER = "+84905123456"


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return whisper_model_dir(tmp_path_factory.mktemp("whisper"))


async def _recording_callback(client, fake_base: str, sid: str, duration: str) -> int:
    path = "/webhooks/twilio/voice/recording"
    query = urlencode({"From": CALLER})
    params = {
        "AccountSid": ACCOUNT_SID, "CallSid": "CA" + sid[2:], "RecordingSid": sid,
        "RecordingUrl": f"{fake_base}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}",
        "RecordingStatus": "completed", "RecordingDuration": duration, "RecordingChannels": "1",
        "RecordingSource": "RecordVerb",
    }
    signature = sign(AUTH_TOKEN, f"{PUBLIC}{path}?{query}", MultiDict(params))
    resp = await client.post(f"{path}?{query}", data=params,
                             headers={"X-Twilio-Signature": signature})
    return resp.status


async def test_recorded_call_becomes_a_transcribed_report(
        aiohttp_server, settings_factory, gateway_client, drain_app, whisper_dir, tmp_path) -> None:
    fake = FakeTwilio()
    server = await aiohttp_server(fake.app())
    base = str(server.make_url("")).rstrip("/")
    wav = espeak_wav("Xin chào. Đèn đường số một bị hỏng.", tmp_path / "call.wav")
    fake.add_media("RE" + "a" * 32, wav.read_bytes(), "audio/wav")
    silent = tmp_path / "silent.wav"
    import wave

    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(silence(1.0, 8000))
    fake.add_media("RE" + "b" * 32, silent.read_bytes(), "audio/wav")

    settings = settings_factory(
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_number=NUMBER,
        twilio_api_base=base, public_base_url=PUBLIC, stt_engine="whisper",
        whisper_model=whisper_dir, review_policy="all",
    )
    client = await gateway_client(settings)
    assert client.app[SERVICES].speech.available_for("recording")
    assert await _recording_callback(client, base, "RE" + "a" * 32, "4") == 200
    # Twilio retries the callback: still one event, one report.
    assert await _recording_callback(client, base, "RE" + "a" * 32, "4") == 200
    await drain_app(client.app)

    async with client.app[SERVICES].sessions() as s:
        (report,) = (await s.exec(select(Report))).all()
    assert report.channel == "voice" and report.status == "submitted" and report.code
    assert "xin chào" in (report.transcript or "").lower()
    assert report.text == ""
    audio = report.attachments[0]
    assert audio["kind"] == "audio" and audio["transcript"] == report.transcript
    stored = settings.resolved_media_dir() / audio["path"]
    assert stored.read_bytes() == wav.read_bytes()  # the recording is kept as evidence
    sms = [m for m in fake.sends if not m.get("failed")]
    assert sms[-1]["To"] == CALLER and report.code in sms[-1]["Body"]

    assert await _recording_callback(client, base, "RE" + "b" * 32, "0") == 200
    await drain_app(client.app)
    async with client.app[SERVICES].sessions() as s:
        reports = (await s.exec(select(Report).order_by(Report.id))).all()
    assert len(reports) == 2
    quiet = reports[1]
    assert "silent" in quiet.flags and quiet.code  # recorded as such, not dropped
    assert "Chưa nghe được" in fake.sends[-1]["Body"]
    assert len(fake.sends[-1]["Body"]) <= 70  # one UCS-2 SMS segment
