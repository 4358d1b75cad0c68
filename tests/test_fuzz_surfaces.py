"""Fuzz every HTTP surface besides the webhooks (issue 16 §12): Open311 GET and POST in json
and xml, the API, /chat/*, the central status callback, /media/ and the Media Streams frames.
The rule: never a 5xx, and the public feeds stay valid JSON / well-formed XML.
HYPOTHESIS_SURFACE_EXAMPLES sets the size (default 40 per surface, a few seconds)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.keys import SERVICES

EXAMPLES = int(os.environ.get("HYPOTHESIS_SURFACE_EXAMPLES", "40"))
SURFACE = settings(max_examples=EXAMPLES, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])
KEY = "fuzz-key"
weird = st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.sampled_from(
    ["inf", "-inf", "nan", "1e308", "-1e308", "999", "\x00", "\x0b\x01", "%00", "../../x",
     "khóa", "0" * 500, "[]", "{}", "<x>", "2026-13-45T99:99:99Z"])
fields = st.dictionaries(st.sampled_from(
    ["api_key", "service_code", "lat", "long", "address_string", "description", "media_url",
     "phone", "email", "jurisdiction_id", "start_date", "end_date", "status",
     "service_request_id", "limit", "offset", "sid", "token", "after"]), weird, max_size=8)


@pytest.fixture
async def client(settings_factory, gateway_client) -> Any:
    return await gateway_client(settings_factory(
        open311_api_keys=KEY, api_tokens="fuzz-token", central_callback_secret="sec",
        rate_limit_open311_per_ip=0, rate_limit_chat_per_ip=0, rate_limit_chat_per_session=0,
        run_workers=False))


def _header(value: str) -> str | None:
    """`value` as the client can send it (latin-1 bytes, no control characters), or None."""
    try:
        raw = value.encode("utf-8").decode("latin-1")
    except UnicodeError:
        return None
    return None if any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in raw) else raw


def _check_feed(fmt: str, status: int, body: bytes) -> None:
    assert status < 500, body[:300]
    if fmt == "json":
        json.loads(body, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    else:
        ET.fromstring(body.split(b"?>", 1)[1] if body.startswith(b"<?xml") else body)


async def _feeds_valid(client: Any) -> None:
    for fmt in ("json", "xml"):
        resp = await client.get(f"/open311/v2/requests.{fmt}")
        _check_feed(fmt, resp.status, await resp.read())


@SURFACE
@given(params=fields, fmt=st.sampled_from(["json", "xml"]), keyed=st.booleans())
async def test_fuzz_open311_post(client, params: dict[str, str], fmt: str, keyed: bool) -> None:
    if keyed:
        params = {**params, "api_key": KEY}
    resp = await client.post(f"/open311/v2/requests.{fmt}", data=params)
    assert resp.status < 500, await resp.text()
    if resp.status == 200:
        await _feeds_valid(client)


@SURFACE
@given(params=fields, fmt=st.sampled_from(["json", "xml"]), rid=weird)
async def test_fuzz_open311_get(client, params: dict[str, str], fmt: str, rid: str) -> None:
    resp = await client.get(f"/open311/v2/requests.{fmt}", params=params)
    _check_feed(fmt, resp.status, await resp.read()) if resp.status == 200 else None
    assert resp.status < 500
    resp = await client.get(f"/open311/v2/requests/{quote(rid, safe='')}.{fmt}")
    assert resp.status < 500


@SURFACE
@given(params=fields, token=weird, path=st.sampled_from(
    ["/api/v1/reports", "/api/v1/messages", "/api/v1/reports/PA-1"]))
async def test_fuzz_api(client, params: dict[str, str], token: str, path: str) -> None:
    for auth in (f"Bearer {token}", "Bearer fuzz-token"):
        value = _header(auth)
        if value is None:
            continue
        resp = await client.get(path, params=params, headers={"Authorization": value})
        assert resp.status < 500, await resp.text()


@SURFACE
@given(body=st.binary(max_size=400) | st.builds(lambda v: json.dumps(v).encode(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12)), sig=weird)
async def test_fuzz_central_callback(client, body: bytes, sig: str) -> None:
    from store.forward import sign

    for header in (sig, sign(body, "sec")):
        value = _header(header)
        if value is None:
            continue
        resp = await client.post("/api/v1/central/status", data=body,
                                 headers={"X-PAHT-Signature": value})
        assert resp.status < 500, await resp.text()


@SURFACE
@given(params=fields, body=st.binary(max_size=300), mime=st.sampled_from(
    ["image/png", "image/jpeg", "image/webp", "text/html", "image/svg+xml", ""]),
    path=weird)
async def test_fuzz_chat_and_media(client, params: dict[str, str], body: bytes, mime: str,
                                   path: str) -> None:
    from channels.web import session_token

    secret = client.app[SERVICES].settings.session_secret
    good = {"sid": "fz", "token": session_token(secret, "fz")}
    for query in (params, {**params, **good}):
        resp = await client.post("/chat/upload", data=body, params=query,
                                 headers={"Content-Type": mime} if mime else {})
        assert resp.status < 500
        resp = await client.get("/chat/messages", params=query)
        assert resp.status < 500
    resp = await client.get("/media/" + quote(path, safe="/"))
    assert resp.status in (403, 404)


@SURFACE
@given(frames=st.lists(st.text(max_size=200) | st.builds(json.dumps, st.fixed_dictionaries(
    {"event": st.sampled_from(["start", "media", "dtmf", "stop", "mark", "x"])},
    optional={"start": st.none() | st.integers() | st.dictionaries(
        st.sampled_from(["accountSid", "callSid", "customParameters", "mediaFormat"]),
        st.none() | st.text(max_size=10) | st.lists(st.integers(), max_size=2)),
        "media": st.none() | st.text(max_size=5) | st.dictionaries(
            st.sampled_from(["payload", "track"]), st.text(max_size=20) | st.integers()),
        "dtmf": st.none() | st.lists(st.integers(), max_size=2) | st.dictionaries(
            st.just("digit"), st.text(max_size=3) | st.integers()),
        "streamSid": st.text(max_size=10) | st.integers()})), max_size=6))
async def test_fuzz_media_stream_frames(tmp_path_factory, frames: list[str]) -> None:
    from channels.voice import VoiceConfig
    from channels.voice_stream import MediaStream

    try:
        from tests.fakes import twilio_api as tw
    except ImportError:
        from fakes import twilio_api as tw  # type: ignore[no-redef]

    config = VoiceConfig.from_settings(tw.make_settings(
        var_dir=tmp_path_factory.mktemp("v"), voice_mode="stream"))
    stream = MediaStream(config)
    for frame in frames:
        if await stream.feed_frame(frame):
            break
    assert await stream.finish() is None  # no forged frame sequence makes a message
