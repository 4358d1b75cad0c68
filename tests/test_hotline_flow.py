"""The hotline's in-call flow (issue 15) through the real app: greeting with the emergency key,
<Record>, hold while the recording is transcribed, read-back, keypad confirmation or sector,
speak again, the duty operator / call-back path, and key 9.

The speech pool is a fake (the flow is under test, not the engine): it answers each recording
with a scripted transcript and confidence. Twilio is the local fake API plus a TwiML-following
call simulator (tests/fakes/twilio_call.py); every request is signed like Twilio's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlmodel import select

from channels.voice_menu import FLOW_PATH
from gateway.domain import hotline, trust
from gateway.keys import SERVICES
from nlp.stt_types import Transcript
from store.models import CallbackRequest, DutyAlert, OperatorAction, Report
from tests.fakes.twilio_api import ACCOUNT_SID, AUTH_TOKEN, NUMBER, PUBLIC, FakeTwilio
from tests.fakes.twilio_call import CallSimulator, form, signed_headers, verbs

CALLER = "+84905123456"
WAV = b"RIFF" + b"\0" * 60  # the fake pool never decodes it


class FakeSpeech:
    """Stands in for gateway.workers.speech.Speech: scripted transcripts per call."""

    def __init__(self) -> None:
        self.script: list[tuple[str, float]] = []
        self.calls: list[dict[str, Any]] = []

    def available_for(self, flow: str) -> bool:
        return True

    async def transcribe_flow(self, audio: bytes, flow: str, *, max_seconds: float | None = None,
                              vocabulary: Any = ()) -> Transcript:
        self.calls.append({"max_seconds": max_seconds, "vocabulary": list(vocabulary)})
        text, conf = self.script.pop(0) if self.script else ("", 0.0)
        return Transcript(text=text, confidence=conf, duration_s=4.0, rtf=0.1, engine="fake")

    def streaming_transcriber(self) -> Any:
        """Stream mode: a live recognizer whose final result is the next scripted line."""
        from tests.test_hotline_stream import FakeStreamTranscriber

        return FakeStreamTranscriber(self)

    def describe(self) -> dict[str, str]:
        return {"recording": "fake: ready"}

    def close(self) -> None:
        return None


@pytest.fixture
async def hotline_app(aiohttp_server: Any, settings_factory: Any, gateway_client: Any) -> Any:
    async def start(**overrides: Any) -> tuple[Any, FakeTwilio, FakeSpeech]:
        fake = FakeTwilio()
        server = await aiohttp_server(fake.app())
        base = str(server.make_url("")).rstrip("/")
        values: dict[str, Any] = {
            "twilio_account_sid": ACCOUNT_SID, "twilio_auth_token": AUTH_TOKEN,
            "twilio_number": NUMBER, "twilio_api_base": base, "public_base_url": PUBLIC,
            "review_policy": "low_confidence", "stt_vocabulary": True,
        }
        values.update(overrides)
        client = await gateway_client(settings_factory(**values))
        speech = FakeSpeech()
        client.app[SERVICES].speech = speech
        client.fake_base = base
        return client, fake, speech
    return start


def simulator(client: Any, fake: FakeTwilio, drain_app: Any, presses: list[str],
              call_sid: str = "CA" + "1" * 32, **kw: Any) -> CallSimulator:
    """A call from CALLER whose Gathers are answered from `presses` ("" = no key)."""
    counter = iter(range(1, 100))

    async def post(url: str, params: dict[str, str]) -> tuple[int, str]:
        parts = urlsplit(url)
        assert url.startswith(PUBLIC), url
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        resp = await client.post(path, data=form(params),
                                 headers=signed_headers(AUTH_TOKEN, url, params))
        return resp.status, await resp.text()

    def press(action: str, said: list[str]) -> str:
        return presses.pop(0) if presses else ""

    async def record(action: str, callback: str) -> dict[str, str]:
        sid = f"RE{next(counter):032d}"
        fake.add_media(sid, WAV, "audio/wav")
        params = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid, "RecordingSid": sid,
                  "RecordingUrl": f"{client.fake_base}/2010-04-01/Accounts/{ACCOUNT_SID}/"
                                  f"Recordings/{sid}",
                  "RecordingStatus": "completed", "RecordingDuration": "4"}
        status, _ = await post(callback, params)
        assert status == 200
        return {**params, "Digits": "#"}

    async def on_pause(seconds: float) -> None:
        await drain_app(client.app)  # the worker transcribes while the caller holds

    base = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid, "From": CALLER, "To": NUMBER}
    return CallSimulator(post, base, press=press, record=record, on_pause=on_pause, **kw)


async def _reports(client: Any) -> list[Report]:
    async with client.app[SERVICES].sessions() as s:
        return list((await s.exec(select(Report).order_by(Report.id))).all())


CALL_URL = f"{PUBLIC}/webhooks/twilio/voice"
LIGHT = "Đèn đường trước nhà số 12 đường Lê Lợi, phường Vĩnh Ninh bị hỏng mấy hôm nay."


async def test_greeting_announces_the_emergency_key_and_records(hotline_app: Any,
                                                                drain_app: Any) -> None:
    client, fake, _ = await hotline_app()
    sim = simulator(client, fake, drain_app, presses=[""])
    params = {**sim.base}
    status, body = await sim.post(CALL_URL, params)
    assert status == 200
    assert verbs(body) == ["Gather", "Say", "Record", "Say", "Hangup"]
    assert "bấm 9" in body and 'input="dtmf"' in body
    assert f"{FLOW_PATH}?step=hold" in body and "recordingStatusCallback" in body


async def test_low_confidence_call_is_read_back_and_confirmed_by_keypad(
        hotline_app: Any, drain_app: Any) -> None:
    client, fake, speech = await hotline_app()
    speech.script = [(LIGHT, 0.41)]  # Whisper base on a phone line: unsure
    log = await simulator(client, fake, drain_app, presses=["", "1"]).run(CALL_URL)
    assert log.completed and log.hung_up and set(log.statuses) == {200}
    said = " ".join(log.said)
    assert "Xin chờ trong giây lát" in said
    assert "Hạ tầng đô thị" in said or "hạ tầng đô thị" in said.lower()
    assert "bấm 1 để xác nhận" in said and "Bấm 2 để chọn lĩnh vực" in said
    assert "Cảm ơn anh chị đã xác nhận" in said
    (report,) = await _reports(client)
    assert report.sector == "ha_tang_do_thi"
    assert trust.CALLER_CONFIRMED in report.flags
    # The caller's confirmation stood for the review.
    assert report.status == "confirmed", report.review_reasons
    assert report.transcript_confidence == 0.41
    sms = [m for m in fake.sends if m.get("To") == CALLER]
    assert any(report.code in m["Body"] for m in sms)  # the tracking code by SMS, as before
    # The engines were primed with the domain words and bounded by the call length.
    assert speech.calls[0]["max_seconds"] == client.app[SERVICES].settings.voice_max_seconds
    assert "Lê Lợi" in speech.calls[0]["vocabulary"]


async def test_without_the_keypad_a_low_confidence_call_waits_for_an_operator(
        hotline_app: Any, drain_app: Any) -> None:
    client, fake, speech = await hotline_app()
    speech.script = [(LIGHT, 0.41)]
    log = await simulator(client, fake, drain_app, presses=["", "", "", ""]).run(CALL_URL)
    assert log.completed
    (report,) = await _reports(client)
    assert report.status == "submitted" and report.needs_review
    assert "transcript_low_confidence" in report.review_reasons
    async with client.app[SERVICES].sessions() as s:
        (callback,) = (await s.exec(select(CallbackRequest))).all()
    assert callback.reason == "no_input" and callback.report_id == report.id


async def test_sector_chosen_on_the_keypad_overrides_the_classifier(hotline_app: Any,
                                                                   drain_app: Any) -> None:
    client, fake, speech = await hotline_app()
    speech.script = [("xin chào tôi muốn ấy cái ở đằng kia", 0.3)]  # nothing understood
    # 2 = choose the sector; in the menu 1 = ve_sinh_moi_truong (config/voice.toml order).
    log = await simulator(client, fake, drain_app, presses=["", "2", "1"]).run(CALL_URL)
    said = " ".join(log.said)
    assert "chưa nghe rõ" in said and "bấm 1 để xác nhận" not in said  # nothing to confirm
    assert "Bấm 1: Vệ sinh môi trường" in said and "Bấm 4: trật tự đô thị và xây dựng" in said
    (report,) = await _reports(client)
    assert report.sector == "ve_sinh_moi_truong" == report.sector_by_caller
    assert trust.CALLER_CONFIRMED in report.flags
    async with client.app[SERVICES].sessions() as s:
        actions = (await s.exec(select(OperatorAction).where(
            OperatorAction.report_id == report.id))).all()
    chosen = [a for a in actions if a.action == "caller_sector"]
    assert chosen and chosen[0].operator_id is None
    assert chosen[0].after["sector"] == "ve_sinh_moi_truong"


async def test_speak_again_replaces_the_first_report(hotline_app: Any, drain_app: Any) -> None:
    client, fake, speech = await hotline_app()
    speech.script = [("ừ ờ", 0.2), (LIGHT, 0.5)]
    log = await simulator(client, fake, drain_app, presses=["", "3", "1"]).run(CALL_URL)
    assert len(log.recordings) == 2 and log.completed
    first, second = await _reports(client)
    assert first.status == "merged" and first.duplicate_of == second.id
    assert second.status == "confirmed" and second.sector == "ha_tang_do_thi"


async def test_transcript_not_ready_in_time_leaves_a_callback(hotline_app: Any,
                                                              drain_app: Any) -> None:
    client, fake, speech = await hotline_app(voice_hold_seconds=0)
    speech.script = [(LIGHT, 0.9)]
    sim = simulator(client, fake, drain_app, presses=[""])

    async def no_drain(seconds: float) -> None:
        return None

    sim.on_pause = no_drain
    log = await sim.run(CALL_URL)
    assert log.completed and "Trung tâm đã lưu lời nhắn" in " ".join(log.said)
    async with client.app[SERVICES].sessions() as s:
        (callback,) = (await s.exec(select(CallbackRequest))).all()
    assert callback.reason == "not_ready" and callback.caller == "tel:" + CALLER
    await drain_app(client.app)  # nothing lost: the recording is still worked
    (report,) = await _reports(client)
    assert report.transcript == LIGHT


async def test_operator_in_working_hours_is_dialed_and_no_answer_leaves_a_callback(
        hotline_app: Any, drain_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, fake, speech = await hotline_app()
    monkeypatch.setattr(hotline, "operator_number", lambda services, cfg: "+842343822222")
    speech.script = [(LIGHT, 0.4)]
    log = await simulator(client, fake, drain_app, presses=["", "0"],
                          dial_status="no-answer").run(CALL_URL)
    assert log.dialed == ["+842343822222"]
    assert "cán bộ sẽ gọi lại" in " ".join(log.said).lower()
    async with client.app[SERVICES].sessions() as s:
        (callback,) = (await s.exec(select(CallbackRequest))).all()
    assert callback.reason == "no_answer"


async def test_key_9_reads_the_emergency_advice_and_raises_a_duty_alert(
        hotline_app: Any, drain_app: Any) -> None:
    client, fake, speech = await hotline_app()
    speech.script = [("Cháy nhà ở kiệt 5 Trần Phú", 0.6)]
    log = await simulator(client, fake, drain_app, presses=["9", "", "", ""]).run(CALL_URL)
    said = " ".join(log.said)
    assert "114" in said and "115" in said and "113" in said
    reports = await _reports(client)
    keypad = [r for r in reports if "keypad_emergency" in r.flags]
    assert keypad and keypad[0].urgent and keypad[0].status == "submitted"
    async with client.app[SERVICES].sessions() as s:
        alerts = (await s.exec(select(DutyAlert))).all()
    assert any(a.report_id == keypad[0].id for a in alerts)


@pytest.mark.parametrize("case", ["forged", "unsigned", "not_form", "bad_step"])
async def test_flow_requests_are_checked(hotline_app: Any, case: str) -> None:
    client, _, _ = await hotline_app()
    url = f"{PUBLIC}{FLOW_PATH}?step=menu&rec=RE1"
    params = {"AccountSid": ACCOUNT_SID, "CallSid": "CA1", "From": CALLER, "Digits": "1"}
    headers = signed_headers(AUTH_TOKEN, url, params)
    body = form(params)
    path = f"{FLOW_PATH}?step=menu&rec=RE1"
    expected = 403
    if case == "forged":
        headers = signed_headers("not-the-token", url, params)
    elif case == "unsigned":
        headers.pop("X-Twilio-Signature")
    elif case == "not_form":
        body, expected = b"\xff\xfe{", 400
        headers = signed_headers(AUTH_TOKEN, url, {})
        headers["Content-Type"] = "application/json"
    else:
        bad = f"{PUBLIC}{FLOW_PATH}?step=nope"
        headers, path, expected = signed_headers(AUTH_TOKEN, bad, params), \
            f"{FLOW_PATH}?step=nope", 400
    resp = await client.post(path, data=body, headers=headers)
    assert resp.status == expected


def test_working_hours() -> None:
    cfg = hotline.HotlineConfig.from_dict(
        {"operator": {"number": "+84234", "days": [1, 2, 3, 4, 5],
                      "hours": ["07:30-11:30", "13:30-17:00"]}})
    assert cfg.in_hours(datetime(2026, 12, 2, 8, 0))  # a Wednesday morning
    assert not cfg.in_hours(datetime(2026, 12, 2, 12, 0))  # lunch
    assert not cfg.in_hours(datetime(2026, 12, 5, 9, 0))  # Saturday
    assert not cfg.in_hours(datetime(2026, 12, 2, 17, 0))  # closing time


def test_the_query_of_flow_urls_is_ours() -> None:
    from channels.voice_menu import CallMenu
    from gateway.domain.texts import Texts

    data = Texts.load().data
    menu = CallMenu(PUBLIC, data["voice_menu"], data["voice"], max_seconds=60)
    query = parse_qs(urlsplit(menu.url("hold", rec="RE9", t=5, since="")).query)
    assert query == {"step": ["hold"], "rec": ["RE9"], "t": ["5"]}
    with pytest.raises(ValueError, match="voice_menu"):
        CallMenu(PUBLIC, {"hold": "x"}, data["voice"], max_seconds=60)
