"""Hostile input, property-based (hypothesis): no body or header makes a channel blow up.

Contract under test (channels/base.py): `verify` raises only SignatureError, `parse` only
MalformedError, `ack` nothing — for ANY input. Three layers per channel (facebook, zalo,
telegram, sms, voice, web):
  1. arbitrary bytes and headers, unsigned and signed with the right secret;
  2. the channel's own fixture bodies mutated at a random place (a value swapped for any JSON
     value, a key dropped, a form field set to any text), then validly signed, so the parser
     (not the signature check) meets the hostile structure;
  3. the real webhook route on a batch of such bodies: never a 500.
A longer fuzz run of layer 2 is marked `slow` (HYPOTHESIS_FUZZ_EXAMPLES sets its size).
`deadline=None` everywhere: hypothesis' per-example deadline is a wall-clock assertion.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

# Hypothesis keeps a cache directory; keep it out of the repository.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), "paht-hypothesis"))
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.common import (
    FB_SECRET,
    PUBLIC,
    TG_SECRET,
    TW_TOKEN,
    WEB_SECRET,
    ZALO_APP_ID,
    ZALO_OA_SECRET,
    channel_settings,
)
from channels.base import InboundMessage, MalformedError, RawRequest, SignatureError
from channels.registry import channel_class
from channels.twilio_common import sign as twilio_sign
from channels.web import session_token
from gateway.domain.texts import Texts
from gateway.keys import SERVICES
from gateway.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
CHANNELS = ("facebook", "zalo", "telegram", "sms", "voice", "web")
PATHS = {"facebook": ["/webhooks/facebook"], "zalo": ["/webhooks/zalo"],
         "telegram": ["/webhooks/telegram"], "sms": ["/webhooks/twilio/sms"],
         "web": ["/webhooks/web"],
         "voice": ["/webhooks/twilio/voice", "/webhooks/twilio/voice/recording",
                   "/webhooks/twilio/voice/status"]}
FORM = ("sms", "voice")
SETTINGS = Settings(_env_file=None, **channel_settings())  # type: ignore[call-arg]
MUTATED = list(CHANNELS)
TEXTS = Texts.load().data
CHANNEL_OBJECTS = {name: channel_class(name).from_settings(SETTINGS, texts=TEXTS.get(name, {}))
                   for name in CHANNELS}
QUICK = settings(max_examples=150, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def sign(channel: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """Headers with the valid signature of `body` for `channel` (as the provider signs)."""
    out = dict(headers)
    if channel == "facebook":
        out["X-Hub-Signature-256"] = "sha256=" + hmac.new(
            FB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    elif channel == "zalo":
        try:
            ts = str(json.loads(body).get("timestamp", ""))
        except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
            ts = ""
        text = body.decode("utf-8", errors="replace")
        out["X-ZEvent-Signature"] = "mac=" + hashlib.sha256(
            (ZALO_APP_ID + text + ts + ZALO_OA_SECRET).encode()).hexdigest()
    elif channel == "telegram":
        out["X-Telegram-Bot-Api-Secret-Token"] = TG_SECRET
    elif channel in FORM:
        from urllib.parse import parse_qsl

        try:
            params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            params = {}
        out["X-Twilio-Signature"] = twilio_sign(TW_TOKEN, PUBLIC + path, params)
    return out


def run(channel: str, path: str, body: bytes, headers: dict[str, str]) -> list[InboundMessage]:
    """verify → parse → ack as the route does; only the documented exceptions may escape."""
    obj = CHANNEL_OBJECTS[channel]
    raw = RawRequest("POST", PUBLIC + path, headers, {}, body)
    try:
        obj.verify(raw)
    except SignatureError as exc:
        assert exc.status in (401, 403)
        return []
    try:
        messages = obj.parse(raw)
    except MalformedError:
        return []
    assert isinstance(messages, list)
    for m in messages:
        assert isinstance(m, InboundMessage) and m.channel == channel
        assert isinstance(m.external_id, str) and m.external_id
        assert isinstance(m.sender, str) and m.received_at.tzinfo is not None
        json.dumps(dict(m.raw))  # the audit trail must be storable
    ack = obj.ack(raw, messages)
    assert 200 <= ack.status < 300
    return messages


# -- fixture bodies and their mutations --------------------------------------------------------

def _fixture_bodies(channel: str) -> list[tuple[str, Any]]:
    """(path, body) of each fixture: a JSON object/list, or a dict of form params."""
    if channel == "web":
        sid = "hostilesession0001"
        return [("/webhooks/web", {"sid": sid, "token": session_token(WEB_SECRET, sid),
                                   "id": "m1", "text": "Cây đổ",
                                   "location": {"lat": 16.4, "lon": 107.5}})]
    out: list[tuple[str, Any]] = []
    for path in sorted((FIXTURES / channel).glob("*.json")):
        try:
            case = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:  # telegram's malformed.json is a raw body on purpose
            continue
        if channel in FORM:
            if "params" in case and "raw_body" not in case:
                out.append((case.get("path", PATHS[channel][0]), case["params"]))
        elif channel == "telegram":
            out.append((PATHS[channel][0], case))
        elif "body" in case:
            out.append((PATHS[channel][0], case["body"]))
    return out


BODIES = {name: _fixture_bodies(name) for name in CHANNELS}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(body: Any, path: tuple[Any, ...], value: Any, drop: bool) -> Any:
    if not path:
        return value
    body = json.loads(json.dumps(body))
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return body


@st.composite
def mutated(draw: st.DrawFn, channel: str) -> tuple[str, bytes, dict[str, str]]:
    """A fixture body of `channel` changed in one place, then signed validly."""
    path, body = draw(st.sampled_from(BODIES[channel]))
    if channel in FORM:
        params = dict(body)
        key = draw(st.sampled_from([*params, "Extra", "From", "RecordingUrl", "NumMedia",
                                    "MediaUrl0", "Latitude", "RecordingDuration"]))
        if draw(st.booleans()) and key in params:
            del params[key]
        else:
            params[key] = draw(st.text(max_size=60) | st.sampled_from(
                ["-1", "99999999999999999999", "nan", "http://127.0.0.1/x", "file:///etc/passwd",
                 "+84", "\x00", "1e309"]))
        raw = urlencode(list(params.items())).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        where = draw(st.sampled_from(_paths(body)))
        changed = _mutate(body, where, draw(json_values), draw(st.booleans()))
        raw = json.dumps(changed, ensure_ascii=draw(st.booleans())).encode()
        headers = {"Content-Type": "application/json"}
    return path, raw, sign(channel, path, raw, headers)


# -- 1. arbitrary bytes ----------------------------------------------------------------------

header_values = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=80)


@pytest.mark.parametrize("channel", CHANNELS)
@QUICK
@given(body=st.binary(max_size=2000), junk=st.dictionaries(
    st.sampled_from(["Content-Type", "X-Hub-Signature-256", "X-Hub-Signature",
                     "X-ZEvent-Signature", "X-ZEvent-Timestamp", "X-Twilio-Signature",
                     "X-Telegram-Bot-Api-Secret-Token", "I-Twilio-Idempotency-Token"]),
    header_values, max_size=4), signed_too=st.booleans(), data=st.data())
def test_arbitrary_bytes(channel: str, body: bytes, junk: dict[str, str], signed_too: bool,
                         data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(PATHS[channel]))
    headers = sign(channel, path, body, junk) if signed_too else junk
    run(channel, path, body, headers)


@pytest.mark.parametrize("channel", [*MUTATED[:3], MUTATED[5]])
@QUICK
@given(value=json_values)
def test_arbitrary_json_documents_signed(channel: str, value: Any) -> None:
    path = PATHS[channel][0]
    body = json.dumps(value).encode()
    run(channel, path, body, sign(channel, path, body, {"Content-Type": "application/json"}))


@pytest.mark.parametrize("channel", FORM)
@QUICK
@given(params=st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=8),
       data=st.data())
def test_arbitrary_forms_signed(channel: str, params: dict[str, str],
                                data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(PATHS[channel]))
    body = urlencode(list(params.items())).encode()
    run(channel, path, body, sign(channel, path, body,
                                  {"Content-Type": "application/x-www-form-urlencoded"}))


# -- 2. mutated fixtures, validly signed --------------------------------------------------------

@pytest.mark.parametrize("channel", MUTATED)
@QUICK
@given(data=st.data())
def test_mutated_fixtures(channel: str, data: st.DataObject) -> None:
    path, body, headers = data.draw(mutated(channel))
    run(channel, path, body, headers)


FUZZ = settings(max_examples=int(os.environ.get("HYPOTHESIS_FUZZ_EXAMPLES", "1500")),
                deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.mark.slow
@pytest.mark.parametrize("channel", MUTATED)
@FUZZ
@given(data=st.data())
def test_fuzz_mutated_fixtures(channel: str, data: st.DataObject) -> None:
    path, body, headers = data.draw(mutated(channel))
    run(channel, path, body, headers)


# -- 3. the route ------------------------------------------------------------------------------

def _route_cases(channel: str, count: int, seed: int) -> list[tuple[str, bytes, dict[str, str]]]:
    rnd = random.Random(seed)
    cases = []
    for _ in range(count):
        path, body = rnd.choice(BODIES[channel])
        if channel in FORM:
            params = dict(body)
            params[rnd.choice([*params, "X"])] = rnd.choice(["", "\x00", "😀" * 50, "-1"])
            raw = urlencode(list(params.items())).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            where = rnd.choice(_paths(body))
            raw = json.dumps(_mutate(body, where, rnd.choice(
                [None, -1, 2**64, "", "x" * 300, [], {}, [{}], {"id": None}, 1.5]), False)).encode()
            headers = {"Content-Type": "application/json"}
        cases.append((path, raw, sign(channel, path, raw, headers)))
    return cases


@pytest.mark.parametrize("channel", CHANNELS)
async def test_route_never_answers_500(settings_factory: Any, gateway_client: Any,
                                       channel: str) -> None:
    client = await gateway_client(settings_factory(**channel_settings()))
    seen: set[int] = set()
    for path, body, headers in _route_cases(channel, 60, seed=hash(channel) & 0xFFFF):
        resp = await client.post(path, data=body, headers=headers)
        seen.add(resp.status)
        assert resp.status < 500, (resp.status, body[:300])
    for body in (b"", b"\xff\xfe", b"[" * 100_000, b"{" * 70 + b"}" * 70, b"null", b"0"):
        path = PATHS[channel][0]
        resp = await client.post(path, data=body, headers=sign(channel, path, body, {}))
        assert resp.status < 500, (resp.status, body[:50])
    assert seen & {200, 400}


async def test_a_crashing_channel_is_400_or_403_never_500(settings_factory: Any,
                                                          gateway_client: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:

    client = await gateway_client(settings_factory(**channel_settings()))
    body = b'{"object": "page", "entry": [{"id": "1", "time": 1, "messaging": true}]}'
    path = "/webhooks/facebook"
    resp = await client.post(path, data=body, headers=sign("facebook", path, body, {}))
    assert resp.status == 400  # the facebook parser bug above, contained by the route

    telegram = client.app[SERVICES].channels["telegram"]

    def boom(raw: RawRequest) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(telegram, "parse", boom)
    path = "/webhooks/telegram"
    resp = await client.post(path, data=b"{}", headers=sign("telegram", path, b"{}", {}))
    assert resp.status == 400
    monkeypatch.setattr(telegram, "verify", boom)
    resp = await client.post(path, data=b"{}", headers=sign("telegram", path, b"{}", {}))
    assert resp.status == 403
    metrics = client.app[SERVICES].metrics
    assert metrics.value("paht_messages_rejected_total", channel="telegram",
                         reason="parser_error") == 1
    assert metrics.value("paht_messages_rejected_total", channel="telegram",
                         reason="verify_error") == 1


# -- media downloads: provider hosts only, size-limited (no SSRF) -----------------------------
# Telegram downloads by file_id through the configured Bot API only; a foreign file_path is
# refused in tests/test_telegram.py::test_fetch_media_refuses_foreign_paths. HTML in citizen
# text is escaped by the console: tests/test_console.py::test_citizen_script_is_inert.

class Target:
    """A local 'internal service' that must never be reached, plus a redirecting 'CDN'."""

    def __init__(self) -> None:
        self.hits: list[str] = []

    def app(self) -> Any:
        from aiohttp import web

        async def any_path(request: web.Request) -> web.StreamResponse:
            self.hits.append(request.path)
            if request.path.startswith("/redirect"):
                raise web.HTTPFound(request.query["to"])
            if request.path.startswith("/big"):
                return web.Response(body=b"\0" * 300_000, content_type="image/jpeg")
            return web.Response(body=b"secret", content_type="text/plain")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", any_path)
        return app


@pytest.fixture
async def target(aiohttp_server: Any) -> Any:
    t = Target()
    server = await aiohttp_server(t.app())
    t.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    t.hostport = f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    return t


# The providers' real API bases (the bench points them at a dead local port).
MEDIA_SETTINGS = Settings(_env_file=None, **{  # type: ignore[call-arg]
    k: v for k, v in channel_settings().items() if not k.endswith(("_api_base", "_oauth_base"))})


def _media_channel(name: str, http: Any, allowed: tuple[str, ...] = ()) -> Any:
    cls: Any = channel_class(name)
    texts = TEXTS.get(name, {})
    if name in ("facebook", "zalo"):
        return cls(cls.config_model.from_settings(MEDIA_SETTINGS), http=http, texts=texts,
                   allowed_media_hosts=allowed)
    if name == "telegram":  # its API stays the dead local port: no test touches the internet
        return cls.from_settings(SETTINGS, http=http, texts=texts)
    return cls.from_settings(MEDIA_SETTINGS, http=http, texts=texts)


SSRF_URLS = [
    "{base}/internal", "https://127.0.0.1/x", "file:///etc/passwd", "http://169.254.169.254/",
    "https://evil.example/x.jpg", "https://graph.facebook.com.evil.example/x",
    "https://fbcdn.net@evil.example/x", "gopher://127.0.0.1:25/", "ftp://dl.zalo.me/x",
    "//127.0.0.1/x", "not a url",
]


@pytest.mark.parametrize("name", ["facebook", "zalo", "sms", "voice", "telegram", "web"])
@pytest.mark.parametrize("url", SSRF_URLS)
async def test_fetch_media_refuses_non_provider_hosts(target: Any, name: str, url: str) -> None:
    import aiohttp

    from channels.base import Attachment, MediaFetcher, SendError

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
        channel = _media_channel(name, http)
        if name == "web":  # uploads are stored by the gateway itself: nothing to fetch
            assert not isinstance(channel, MediaFetcher)
            return
        with pytest.raises(SendError) as info:
            await channel.fetch_media(Attachment("image", url.format(base=target.base)), 10_000)
    if name != "telegram":
        assert not info.value.retryable  # a bad host never gets better
    assert target.hits == []  # nothing internal was ever contacted


@pytest.mark.parametrize("name", ["facebook", "zalo"])
async def test_a_provider_redirect_to_an_internal_host_is_refused(target: Any,
                                                                 aiohttp_server: Any,
                                                                 name: str) -> None:
    import aiohttp

    from channels.base import Attachment, SendError

    inner = Target()
    internal = await aiohttp_server(inner.app())
    cdn = f"{target.base}/redirect?to={internal.make_url('/secret')}"
    async with aiohttp.ClientSession() as http:
        channel = _media_channel(name, http, allowed=(target.hostport,))  # the "CDN" only
        with pytest.raises(SendError):
            await channel.fetch_media(Attachment("image", cdn), 10_000)
        with pytest.raises(SendError, match="too large"):
            await channel.fetch_media(Attachment("image", f"{target.base}/big"), 100_000)
    assert inner.hits == []
