"""Media Streams WebSocket against forged streams (issue 16 §1): signature on the upgrade,
accountSid and the per-call token at start, stream mode only, caps on streams, frames, time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_voice import (
    CALL_SID,
    CALLER,
    SIGNED_UPGRADE,
    STREAM_SID,
    call_parameters,
    frames,
    replay,
    stream_app,
)

from gateway.keys import INGESTOR
from gateway.web import voice_stream

try:
    from tests.fakes import twilio_api as tw
except ImportError:
    from fakes import twilio_api as tw  # type: ignore[no-redef]


@pytest.fixture
def mulaw_speech() -> bytes:
    """Six seconds of varied μ-law bytes (the content does not matter here)."""
    return bytes(range(256)) * 190


def _app(tmp_path: Path, **extra: Any) -> Any:
    return stream_app(tw.make_settings(var_dir=tmp_path, voice_mode="stream", **extra), None)


@pytest.mark.parametrize("custom", [
    {"From": CALLER},  # no token at all (what the forged stream sent)
    {**call_parameters(), "paht_token": "0" * 64},  # a made-up token
    {**call_parameters(), "From": "+84912000111"},  # a token for another caller
    {**call_parameters(call_sid="CA" + "ee" * 16)},  # a token of another call
    {**call_parameters(), "paht_expires": "1000"},  # expired (and not what was signed)
], ids=["no-token", "forged", "other-caller", "other-call", "expired"])
async def test_start_without_a_valid_token_makes_no_message(aiohttp_client: Any,
                                                            tmp_path: Path, custom: Any,
                                                            mulaw_speech: bytes) -> None:
    app = _app(tmp_path)
    client = await aiohttp_client(app)
    await replay(client, frames(mulaw_speech)[:5], custom=custom)
    await asyncio.sleep(0)
    assert app[INGESTOR].messages == []
    assert not list((tmp_path / "media" / "calls").glob("*.wav"))


@pytest.mark.parametrize("account", ["", "AC" + "9" * 32], ids=["missing", "foreign"])
async def test_start_needs_our_account_sid(aiohttp_client: Any, tmp_path: Path, account: str,
                                           mulaw_speech: bytes) -> None:
    app = _app(tmp_path)
    client = await aiohttp_client(app)
    await replay(client, frames(mulaw_speech)[:5], account=account)
    assert app[INGESTOR].messages == []


async def test_valid_token_is_not_kept_in_the_audit_trail(aiohttp_client: Any, tmp_path: Path,
                                                          mulaw_speech: bytes) -> None:
    app = _app(tmp_path)
    client = await aiohttp_client(app)
    await replay(client, frames(mulaw_speech)[:5])
    (message,) = app[INGESTOR].messages
    assert message.sender == "tel:" + CALLER and message.raw["callSid"] == CALL_SID
    assert "paht_token" not in message.raw["customParameters"]


async def test_route_exists_only_in_stream_mode(aiohttp_client: Any, tmp_path: Path) -> None:
    app = stream_app(tw.make_settings(var_dir=tmp_path, voice_mode="record"), None)
    client = await aiohttp_client(app)
    resp = await client.get("/webhooks/twilio/media", headers=SIGNED_UPGRADE)
    assert resp.status == 404


async def test_concurrent_streams_are_capped(aiohttp_client: Any, tmp_path: Path) -> None:
    app = _app(tmp_path, voice_max_streams=2)
    client = await aiohttp_client(app)
    open_ws = [await client.ws_connect("/webhooks/twilio/media", headers=SIGNED_UPGRADE)
               for _ in range(2)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/webhooks/twilio/media", headers=SIGNED_UPGRADE)
    assert info.value.status == 503
    for ws in open_ws:
        await ws.close()


async def test_oversized_frame_closes_the_stream(aiohttp_client: Any, tmp_path: Path) -> None:
    app = _app(tmp_path)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/webhooks/twilio/media", headers=SIGNED_UPGRADE)
    await ws.send_str('{"event": "media", "media": {"payload": "' + "A" * 200_000 + '"}}')
    async for _ in ws:
        pass
    assert ws.closed
    assert app[INGESTOR].messages == []


async def test_a_stream_must_start_in_time(aiohttp_client: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voice_stream, "START_TIMEOUT_S", 0.2)
    app = _app(tmp_path)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/webhooks/twilio/media", headers=SIGNED_UPGRADE)
    async for _ in ws:  # we send nothing: the server hangs up
        pass
    assert ws.closed and app[INGESTOR].messages == []


async def test_reused_stream_sid_never_overwrites_the_recording(aiohttp_client: Any,
                                                                tmp_path: Path,
                                                                mulaw_speech: bytes) -> None:
    app = _app(tmp_path)
    client = await aiohttp_client(app)
    await replay(client, frames(mulaw_speech)[:30])
    saved = tmp_path / "media" / "calls" / f"{STREAM_SID}.wav"
    first = saved.read_bytes()
    await replay(client, frames(b"\xff" * 8000)[:10])  # same streamSid, other audio
    assert saved.read_bytes() == first
    assert len(app[INGESTOR].messages) == 1
