"""Twilio voice hotline: TwiML answers, recording callbacks, and Media Streams replayed over the
real WebSocket route (a μ-law recording made with espeak-ng + sox, in 20 ms base64 frames)."""

from __future__ import annotations

import asyncio
import base64
import json
import wave
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from speech_support import KO_TEXT, VI_HELLO, espeak_wav, sox, vosk_model_dir

from channels.base import Attachment, MessageMeta, OutboundMessage, SendError
from channels.registry import ChannelSet
from channels.twilio_common import sign
from channels.voice import EXPIRES_PARAM, TOKEN_PARAM, VoiceChannel, stream_token
from gateway.domain.texts import Texts
from gateway.keys import INGESTOR, SERVICES, SETTINGS
from gateway.ops.metrics import Metrics
from gateway.services import Services
from gateway.web.voice_stream import setup_voice_stream
from nlp.stt import Transcript
from store.db import create_engine, session_factory

try:
    from tests.fakes import twilio_api as tw
except ImportError:  # tests/ is not a package: pytest puts it on sys.path instead
    from fakes import twilio_api as tw  # type: ignore[no-redef]

FIXTURES = Path(__file__).parent / "fixtures" / "voice"
VOICE_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json"))
CALLER = "+84905123456"
CALL_SID = "CA" + "c5" * 16
STREAM_SID = "MZ" + "17" * 16


# Fixed texts, so the fixture table does not follow edits of config/messages.vi.toml.
VOICE_TEXTS = {
    "greeting": "Xin chào, đây là đường dây nóng tiếp nhận phản ánh hiện trường. Sau tiếng bíp, "
                "xin nói nội dung phản ánh và địa điểm, rồi bấm phím thăng.",
    "stream_greeting": "Xin chào, đây là đường dây nóng tiếp nhận phản ánh hiện trường. Xin "
                       "nói nội dung phản ánh và địa điểm.",
    "goodbye": "Cảm ơn quý vị. Phản ánh đã được ghi nhận, chúng tôi sẽ nhắn tin mã số theo dõi.",
}


def voice(settings: Any, texts: dict[str, str] | None = None, **kw: Any) -> VoiceChannel:
    """The channel as the app builds it: typed config from settings, [voice] texts passed in."""
    return VoiceChannel.from_settings(settings, texts=texts or VOICE_TEXTS, **kw)


def test_config_messages_have_the_voice_texts() -> None:
    channel = VoiceChannel.from_settings(tw.make_settings(), texts=Texts.load().data["voice"])
    assert channel.text("greeting") in channel.call_twiml({"From": CALLER})


def load(name: str) -> dict[str, Any]:
    """One voice fixture."""
    return tw.load("voice", name)


@pytest.mark.parametrize("name", VOICE_FIXTURES)
def test_voice_fixture_table(name: str) -> None:
    fx = load(name)
    channel = voice(tw.make_settings(**fx.get("settings", {})))
    raw, _, _ = tw.signed_request(fx)
    status, messages, ack = tw.run_channel(channel, raw)
    expect = fx["expect"]
    assert status == expect["status"], fx["description"]
    if status != 200:
        return
    tw.check_messages(messages, expect["messages"], "voice")
    body = ack.body.decode("utf-8")
    assert ack.content_type == "application/xml"
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?><Response')
    for snippet in expect.get("twiml_contains", []):
        assert snippet in body, snippet
    for snippet in expect.get("twiml_excludes", []):
        assert snippet not in body, snippet


def test_voice_duplicate_has_the_same_dedup_key() -> None:
    channel = voice(tw.make_settings())
    fx = load("recording_duplicate.json")
    first = tw.run_channel(channel, tw.signed_request(load(fx["duplicate_of"]))[0])[1]
    again = tw.run_channel(channel, tw.signed_request(fx)[0])[1]
    assert [m.external_id for m in first] == [m.external_id for m in again]


def test_greeting_comes_from_config_messages() -> None:
    channel = voice(tw.make_settings(), {"greeting": "Lời chào của tỉnh", "goodbye": "Tạm biệt",
                                         "stream_greeting": "Xin mời nói"})
    body = channel.call_twiml({"From": CALLER})
    assert ">Lời chào của tỉnh</Say>" in body
    assert ">Tạm biệt</Say>" in body
    assert "Google.vi-VN-Standard-A" in body


def test_voice_texts_are_required() -> None:
    with pytest.raises(ValueError, match="stream_greeting"):
        VoiceChannel.from_settings(tw.make_settings(), texts={"greeting": "a", "goodbye": "b"})


def test_max_length_follows_settings() -> None:
    body = voice(tw.make_settings(voice_max_seconds=60)).call_twiml({"From": CALLER})
    assert 'maxLength="60"' in body


# --- send (by SMS to the caller) and recording downloads on the fake API -------------------


@pytest.fixture
async def fake_twilio(aiohttp_server: Any) -> Any:
    fake = tw.FakeTwilio()
    server = await aiohttp_server(fake.app())
    fake.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_send_to_caller_goes_by_sms(fake_twilio: Any, http: Any) -> None:
    channel = voice(tw.make_settings(twilio_api_base=fake_twilio.base), http=http)
    result = await channel.send(OutboundMessage(channel="voice", recipient="tel:" + CALLER,
                                                text="Mã phản ánh: PA-2611-000123"))
    assert result.provider_id
    assert fake_twilio.sends[0]["To"] == CALLER
    assert fake_twilio.sends[0]["Body"] == "Mã phản ánh: PA-2611-000123"


async def test_send_to_unlinked_call_is_not_retryable() -> None:
    channel = voice(tw.make_settings())
    with pytest.raises(SendError) as info:
        await channel.send(OutboundMessage(channel="voice", recipient="call:" + CALL_SID,
                                           text="x"))
    assert info.value.retryable is False


async def test_fetch_recording_with_basic_auth(fake_twilio: Any, http: Any) -> None:
    fake_twilio.add_media("RE1", b"RIFF fake wav", "audio/x-wav")
    channel = voice(tw.make_settings(twilio_api_base=fake_twilio.base), http=http)
    url = f"{fake_twilio.base}/2010-04-01/Accounts/{tw.ACCOUNT_SID}/Recordings/RE1.wav"
    data, mime = await channel.fetch_media(Attachment("audio", url, "audio/wav"), 10_000)
    assert data == b"RIFF fake wav"
    assert mime == "audio/x-wav"


async def test_fetch_local_stream_recording(tmp_path: Path) -> None:
    settings = tw.make_settings(var_dir=tmp_path)
    calls = settings.resolved_media_dir() / "calls"
    calls.mkdir(parents=True)
    (calls / "MZ1.wav").write_bytes(b"RIFFdata")
    channel = voice(settings)
    data, mime = await channel.fetch_media(
        Attachment("audio", (calls / "MZ1.wav").resolve().as_uri(), "audio/wav"), 100)
    assert (data, mime) == (b"RIFFdata", "audio/wav")
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    with pytest.raises(SendError):
        await channel.fetch_media(Attachment("audio", outside.as_uri()), 100)


# --- Media Streams over the real WebSocket route --------------------------------------------


@pytest.fixture(scope="module")
def mulaw_speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Vietnamese speech from espeak-ng, converted by sox to raw μ-law 8 kHz mono."""
    folder = tmp_path_factory.mktemp("voice")
    wav = espeak_wav(VI_HELLO, folder / "hello.wav")
    raw = sox(wav, folder / "hello.ul", "-r", "8000", "-c", "1", "-e", "mu-law", "-t", "raw")
    return raw.read_bytes()


def frames(mulaw: bytes, size: int = 160) -> list[str]:
    """20 ms base64 payloads, as Twilio sends them."""
    return [base64.b64encode(mulaw[i:i + size]).decode() for i in range(0, len(mulaw), size)]


class FakeSession:
    """A deterministic recognizer: one final segment after 1 s of audio."""

    def __init__(self) -> None:
        self.bytes = 0
        self.emitted = False

    def accept(self, pcm16: bytes) -> str | None:
        self.bytes += len(pcm16)
        if not self.emitted and self.bytes >= 32000:
            self.emitted = True
            return "xin chào"
        return None

    def partial(self) -> str:
        return "" if self.emitted else "xin"

    def finish(self) -> Transcript:
        return Transcript(text="xin chào tôi muốn phản ánh", confidence=0.87,
                          duration_s=self.bytes / 32000, rtf=0.01, engine="fake")


class FakeTranscriber:
    engine = "fake"

    def stream(self, rate: int = 16000) -> FakeSession:
        return FakeSession()


class FakeSpeech:
    def __init__(self, transcriber: Any) -> None:
        self.transcriber = transcriber

    def streaming_transcriber(self) -> Any:
        return self.transcriber


class CollectingIngestor:
    """Stands in for gateway.web.ingest.Ingestor: keeps what the route persists."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.arrived = asyncio.Event()

    async def accept(self, messages: list[Any]) -> Any:
        self.messages.extend(messages)
        self.arrived.set()


def stream_app(settings: Any, speech: Any) -> web.Application:
    """The route on a bare app with the keys it reads (no database)."""
    app = web.Application()
    app[SETTINGS] = settings
    channels = ChannelSet()
    channels["voice"] = voice(settings)
    # The route reads only the channels and the speech service; the sessions are never used.
    sessions = session_factory(create_engine("sqlite:///:memory:"))
    app[SERVICES] = Services(settings=settings, sessions=sessions, texts=Texts.load(),
                             metrics=Metrics(), channels=channels, speech=speech)
    app[INGESTOR] = CollectingIngestor()  # type: ignore[assignment]
    setup_voice_stream(app)
    return app


SIGNED_UPGRADE = {"X-Twilio-Signature": sign(
    tw.AUTH_TOKEN, "wss://paht.example.gov.vn/webhooks/twilio/media", {})}


def call_parameters(caller: str | None = CALLER, call_sid: str = CALL_SID) -> dict[str, str]:
    """The <Parameter>s our signed TwiML gives a call (From, expiry, per-call token)."""
    import time

    from channels.voice import VoiceConfig

    config = VoiceConfig.from_settings(tw.make_settings())
    expires = int(time.time()) + 600
    params = {EXPIRES_PARAM: str(expires),
              TOKEN_PARAM: stream_token(config, call_sid, caller or "", expires)}
    if caller:
        params["From"] = caller
    return params


async def replay(client: Any, payloads: list[str], *, headers: dict[str, str] | None = None,
                 custom: dict[str, str] | None = None, account: str = tw.ACCOUNT_SID,
                 stop: bool = True, dtmf_after: int | None = None) -> int | None:
    """Play a call into the route; returns the close code when the server hung up."""
    ws = await client.ws_connect("/webhooks/twilio/media",
                                 headers=SIGNED_UPGRADE if headers is None else headers)
    await ws.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await ws.send_json({
        "event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
        "start": {"streamSid": STREAM_SID, "accountSid": account, "callSid": CALL_SID,
                  "tracks": ["inbound"],
                  "customParameters": call_parameters() if custom is None else custom,
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                  "channels": 1}},
    })
    for index, payload in enumerate(payloads):
        if ws.closed:
            break
        await ws.send_json({
            "event": "media", "sequenceNumber": str(index + 2), "streamSid": STREAM_SID,
            "media": {"track": "inbound", "chunk": str(index + 1),
                      "timestamp": str(index * 20), "payload": payload},
        })
        if dtmf_after is not None and index + 1 == dtmf_after:
            await ws.send_json({"event": "dtmf", "streamSid": STREAM_SID,
                                "dtmf": {"track": "inbound_track", "digit": "#"}})
            break
    if stop and dtmf_after is None:
        await ws.send_json({"event": "stop", "sequenceNumber": str(len(payloads) + 2),
                            "streamSid": STREAM_SID,
                            "stop": {"accountSid": account, "callSid": CALL_SID}})
    code = None
    if stop:
        async for _ in ws:  # the server closes once the message is persisted
            pass
        code = ws.close_code
    await ws.close()
    return code


def wav_seconds(url: str) -> float:
    path = Path(url.removeprefix("file://"))
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        return wav.getnframes() / 8000


async def test_stream_is_transcribed_and_persisted(aiohttp_client: Any, tmp_path: Path,
                                                   mulaw_speech: bytes) -> None:
    settings = tw.make_settings(var_dir=tmp_path, voice_mode="stream")
    app = stream_app(settings, FakeSpeech(FakeTranscriber()))
    client = await aiohttp_client(app)
    payloads = frames(mulaw_speech)
    await replay(client, payloads)
    (message,) = app[INGESTOR].messages
    assert message.channel == "voice"
    assert message.external_id == f"stream:{STREAM_SID}"
    assert message.sender == "tel:" + CALLER
    assert message.text == "xin chào tôi muốn phản ánh"
    assert message.raw["confidence"] == 0.87
    assert message.meta == MessageMeta(transcribed=True, confidence=0.87)
    assert message.raw["segments"] == ["xin chào"]
    assert message.raw["partials"] == ["xin"]
    assert message.raw["media_frames"] == len(payloads)
    assert message.raw["callSid"] == CALL_SID
    (audio,) = message.attachments
    assert audio.kind == "audio" and audio.mime == "audio/wav"
    assert audio.url.startswith("file://")
    assert Path(audio.url.removeprefix("file://")).is_relative_to(
        (tmp_path / "media" / "calls").resolve())
    assert wav_seconds(audio.url) == pytest.approx(len(mulaw_speech) / 8000)
    json.dumps(dict(message.raw))


async def test_stream_without_model_keeps_audio(aiohttp_client: Any, tmp_path: Path,
                                                mulaw_speech: bytes) -> None:
    settings = tw.make_settings(var_dir=tmp_path, voice_mode="stream")
    app = stream_app(settings, FakeSpeech(None))
    client = await aiohttp_client(app)
    await replay(client, frames(mulaw_speech), custom=call_parameters(caller=None))
    (message,) = app[INGESTOR].messages
    assert message.text == ""
    assert message.sender == "call:" + CALL_SID  # no From parameter: the lead links the call
    assert message.meta.transcribed is False and message.meta.confidence is None
    assert "transcribed" not in message.raw
    assert wav_seconds(message.attachments[0].url) > 1.0


async def test_stream_hash_key_ends_the_call(aiohttp_client: Any, tmp_path: Path,
                                             mulaw_speech: bytes) -> None:
    app = stream_app(tw.make_settings(var_dir=tmp_path, voice_mode="stream"), None)
    client = await aiohttp_client(app)
    code = await replay(client, frames(mulaw_speech), dtmf_after=10, stop=True)
    assert code == aiohttp.WSCloseCode.OK  # we hung up: Twilio runs the TwiML after <Connect>
    (message,) = app[INGESTOR].messages
    assert message.raw["digits"] == "#"
    assert message.raw["media_frames"] == 10


async def test_stream_time_limit_closes_the_socket(aiohttp_client: Any, tmp_path: Path) -> None:
    app = stream_app(tw.make_settings(var_dir=tmp_path, voice_mode="stream",
                                      voice_max_seconds=1), None)
    client = await aiohttp_client(app)
    silence = frames(b"\xff" * 8000 * 3)  # 3 s of μ-law silence
    await replay(client, silence, stop=True)
    (message,) = app[INGESTOR].messages
    assert message.raw["media_frames"] == 50  # 1 s of 20 ms frames, then we hang up


async def test_stream_dropped_connection_still_persists(aiohttp_client: Any, tmp_path: Path,
                                                        mulaw_speech: bytes) -> None:
    app = stream_app(tw.make_settings(var_dir=tmp_path, voice_mode="stream"), None)
    client = await aiohttp_client(app)
    await replay(client, frames(mulaw_speech)[:20], stop=False)
    await app[INGESTOR].arrived.wait()
    (message,) = app[INGESTOR].messages
    assert message.raw["media_frames"] == 20


async def test_stream_from_another_account_is_dropped(aiohttp_client: Any, tmp_path: Path,
                                                      mulaw_speech: bytes) -> None:
    app = stream_app(tw.make_settings(var_dir=tmp_path, voice_mode="stream"), None)
    client = await aiohttp_client(app)
    await replay(client, frames(mulaw_speech)[:5], account="AC" + "9" * 32)
    assert app[INGESTOR].messages == []


async def test_stream_signature_checked(aiohttp_client: Any, tmp_path: Path,
                                        mulaw_speech: bytes) -> None:
    app = stream_app(tw.make_settings(var_dir=tmp_path, voice_mode="stream"), None)
    client = await aiohttp_client(app)
    good = sign(tw.AUTH_TOKEN, "wss://paht.example.gov.vn/webhooks/twilio/media", {})
    await replay(client, frames(mulaw_speech)[:5], headers={"X-Twilio-Signature": good})
    assert len(app[INGESTOR].messages) == 1
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/webhooks/twilio/media",
                                headers={"X-Twilio-Signature": "Zm9yZ2Vk"})
    assert info.value.status == 403
    # No signature at all: refused too (it used to be accepted).
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/webhooks/twilio/media")
    assert info.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/webhooks/twilio/media",
                                headers={"X-Twilio-Signature": "ch\u1eef-k\u00fd"})
    assert info.value.status == 403


# --- through the real app (tests/conftest.py fixtures) ----------------------------------------


def _app_settings(settings_factory: Any, tmp_path: Path, **extra: Any) -> Any:
    return settings_factory(
        twilio_account_sid=tw.ACCOUNT_SID, twilio_auth_token=tw.AUTH_TOKEN,
        twilio_number=tw.NUMBER, public_base_url=tw.PUBLIC, var_dir=tmp_path / "var",
        voice_mode="stream", **extra,
    )


async def _stored(client: Any) -> list[dict[str, Any]]:
    from sqlmodel import select

    from store.models import InboundEvent

    async with client.app[SERVICES].sessions() as session:
        query = select(InboundEvent.external_id, InboundEvent.sender).where(
            InboundEvent.channel == "voice")
        return [{"external_id": r[0], "sender": r[1]} for r in (await session.exec(query)).all()]


async def test_route_webhooks_through_app(settings_factory: Any, gateway_client: Any,
                                          tmp_path: Path) -> None:
    client = await gateway_client(_app_settings(settings_factory, tmp_path))
    for name, status in [("call_start_stream.json", 200), ("recording_completed.json", 200),
                         ("recording_duplicate.json", 200), ("call_status_completed.json", 200),
                         ("recording_forged_signature.json", 403), ("call_empty_body.json", 400)]:
        fx = load(name)
        raw, suffix, body = tw.signed_request(fx)
        resp = await client.post(suffix, data=body, headers=dict(raw.headers))
        assert resp.status == status, name
        if name == "call_start_stream.json":
            assert "<Connect><Stream" in await resp.text()
    assert await _stored(client) == [{"external_id": "RE" + "d6" * 16,
                                      "sender": "tel:" + CALLER}]


async def test_route_media_stream_no_model(settings_factory: Any, gateway_client: Any,
                                           tmp_path: Path, mulaw_speech: bytes) -> None:
    """The no-model path through create_app: audio kept, empty transcript, message stored."""
    client = await gateway_client(_app_settings(settings_factory, tmp_path))
    await replay(client, frames(mulaw_speech))
    assert await _stored(client) == [{"external_id": f"stream:{STREAM_SID}",
                                      "sender": "tel:" + CALLER}]
    saved = list((tmp_path / "var" / "media" / "calls").glob("*.wav"))
    assert len(saved) == 1


@pytest.mark.speech
async def test_route_media_stream_with_vosk(settings_factory: Any, gateway_client: Any,
                                            tmp_path: Path, aiohttp_client: Any) -> None:
    """A real Kaldi recognizer (the Korean test model) behind the route: plumbing only."""
    folder = tmp_path / "ko"
    folder.mkdir()
    wav = espeak_wav(KO_TEXT, folder / "ko.wav", voice="ko")
    mulaw = sox(wav, folder / "ko.ul", "-r", "8000", "-c", "1", "-e", "mu-law", "-t", "raw")
    from nlp.stt import load_transcriber

    transcriber = load_transcriber("vosk", vosk_model_dir())
    settings = tw.make_settings(var_dir=tmp_path, voice_mode="stream")
    app = stream_app(settings, FakeSpeech(transcriber))
    client = await aiohttp_client(app)
    await replay(client, frames(mulaw.read_bytes()))
    (message,) = app[INGESTOR].messages
    assert message.raw["engine"] == "vosk"
    assert message.meta.transcribed is True
    assert isinstance(message.text, str)
