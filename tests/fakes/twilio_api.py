"""A local fake of the Twilio REST API (https://www.twilio.com/docs/messaging/api/message-resource).

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: form body (To, From or
  MessagingServiceSid, Body, StatusCallback, MediaUrl…), HTTP Basic auth AccountSid:AuthToken;
  answers 201 with a Message resource, or a scripted Twilio error
  (`{"code", "message", "more_info", "status"}`) with its HTTP status (400/429/5xx).
- `GET /2010-04-01/Accounts/{AccountSid}/Messages/{MM}/Media/{ME}` (Basic auth) answers 307
  to `/cdn/{ME}` like Twilio's redirect to its short-lived CDN link; the CDN serves without
  auth and refuses requests that carry our credentials (they must not leak past Twilio).
- `GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RE}.wav` (Basic auth) serves a recording.

Also the webhook side of the tests: `signed_request` builds the form body from a fixture's
params and signs it the way Twilio does (public URL + sorted params, HMAC-SHA1 of the token).
"""

from __future__ import annotations

import base64
import json
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from multidict import MultiDict

from channels.base import InboundMessage, MalformedError, RawRequest, SignatureError
from channels.twilio_common import sign
from gateway.settings import Settings

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"


@dataclass
class FakeTwilio:
    """State of the fake: recorded sends and downloads, queued errors, media files."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    sends: list[dict[str, Any]] = field(default_factory=list)
    errors: deque[tuple[int, int, str, dict[str, str]]] = field(default_factory=deque)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    cdn_hits: list[dict[str, str]] = field(default_factory=list)
    next_id: int = 1

    def fail(self, status: int, code: int, message: str = "error",
             headers: dict[str, str] | None = None) -> None:
        """Make the next Messages.json call fail with this Twilio error."""
        self.errors.append((status, code, message, headers or {}))

    def add_media(self, sid: str, data: bytes, mime: str) -> None:
        """Serve `data` as media/recording `sid`."""
        self.media[sid] = (data, mime)

    def app(self) -> web.Application:
        """The aiohttp application to run with aiohttp_server."""
        app = web.Application()
        base = "/2010-04-01/Accounts/{account}"
        app.router.add_post(base + "/Messages.json", self._create)
        app.router.add_get(base + "/Messages/{message}/Media/{media}", self._media)
        app.router.add_get(base + "/Recordings/{recording}.wav", self._recording)
        app.router.add_get("/cdn/{media}", self._cdn)
        return app

    def _authorized(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return (request.headers.get("Authorization") == f"Basic {expected}"
                and request.match_info.get("account") == self.account_sid)

    @staticmethod
    def _error(status: int, code: int, message: str,
               headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(
            {"code": code, "message": message, "status": status,
             "more_info": f"https://www.twilio.com/docs/errors/{code}"},
            status=status, headers=headers,
        )

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        form = await request.post()
        body = {key: form.getall(key) if key == "MediaUrl" else form[key] for key in form}
        if self.errors:
            status, code, message, headers = self.errors.popleft()
            self.sends.append({"failed": True, **body})
            return self._error(status, code, message, headers)
        if not form.get("To") or not (form.get("From") or form.get("MessagingServiceSid")):
            return self._error(400, 21604, "A 'To' phone number is required.")
        self.sends.append(body)
        sid = f"SM{self.next_id:032x}"
        self.next_id += 1
        resource = {
            "sid": sid, "account_sid": self.account_sid, "to": form["To"],
            "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body", ""), "status": "queued", "num_segments": "1",
            "num_media": str(len(form.getall("MediaUrl", []))), "direction": "outbound-api",
            "api_version": "2010-04-01", "price": None, "error_code": None,
            "error_message": None, "date_created": "Sun, 22 Nov 2026 17:00:00 +0000",
            "date_updated": "Sun, 22 Nov 2026 17:00:00 +0000", "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {}, "price_unit": "USD",
        }
        return web.json_response(resource, status=201)

    async def _media(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        media = request.match_info["media"]
        if media not in self.media:
            return self._error(404, 20404, "The requested resource was not found")
        # Twilio answers media GETs with a redirect to a signed, short-lived CDN URL.
        raise web.HTTPTemporaryRedirect(f"/cdn/{media}?Expires=1&Signature=fake")

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self.cdn_hits.append(dict(request.headers))
        if "Authorization" in request.headers:
            return web.Response(status=400, text="credentials must not reach the CDN")
        data, mime = self.media.get(request.match_info["media"], (b"", ""))
        if not data:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type=mime)

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        data, mime = self.media.get(request.match_info["recording"], (b"", ""))
        if not data:
            return self._error(404, 20404, "The requested resource was not found")
        return web.Response(body=data, content_type=mime)


# --- webhook side -------------------------------------------------------------------------

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures"
PUBLIC = "https://paht.example.gov.vn"  # what Twilio calls (and signs)
INTERNAL = "http://127.0.0.1:8080"  # what the app sees behind the TLS proxy
NUMBER = "+14155550100"


def make_settings(**overrides: Any) -> Settings:
    """Settings for the Twilio channels with a test auth token."""
    values: dict[str, Any] = {
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_number": NUMBER,
        "public_base_url": PUBLIC,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def load(folder: str, name: str) -> dict[str, Any]:
    """One fixture file of tests/fixtures/<folder>/."""
    return json.loads((FIXTURE_DIR / folder / name).read_text(encoding="utf-8"))


def signed_request(fx: dict[str, Any], token: str = AUTH_TOKEN) -> tuple[RawRequest, str, bytes]:
    """Build the form body from the fixture's params and sign it as the fixture says."""
    params: dict[str, str] = fx["params"]
    body = fx["raw_body"].encode() if "raw_body" in fx else urlencode(list(params.items())).encode()
    query = fx.get("query", "")
    suffix = fx["path"] + (f"?{query}" if query else "")
    is_form = "raw_body" not in fx
    signed_params = MultiDict(params) if is_form else MultiDict()
    mode = fx["signature"]
    headers = {"Content-Type": fx.get("content_type", "application/x-www-form-urlencoded")}
    if mode == "valid":
        headers["X-Twilio-Signature"] = sign(token, PUBLIC + suffix, signed_params)
    elif mode == "forged":
        headers["X-Twilio-Signature"] = sign("some-other-token", PUBLIC + suffix, signed_params)
    elif mode == "internal_url":
        headers["X-Twilio-Signature"] = sign(token, INTERNAL + suffix, signed_params)
    elif mode == "tampered":
        changed = MultiDict({**params, "Body": params.get("Body", "") + " (đã sửa)"})
        headers["X-Twilio-Signature"] = sign(token, PUBLIC + suffix, changed)
    elif mode.startswith("valid_for_query:"):
        other = fx["path"] + "?" + mode.split(":", 1)[1]
        headers["X-Twilio-Signature"] = sign(token, PUBLIC + other, signed_params)
    else:
        assert mode == "missing", mode
    raw = RawRequest("POST", INTERNAL + suffix, headers, dict(parse_qsl(query)), body)
    return raw, suffix, body


def run_channel(channel: Any, raw: RawRequest) -> tuple[int, list[InboundMessage], Any]:
    """verify → parse → ack, answering as gateway/web/webhooks.py does."""
    try:
        channel.verify(raw)
    except SignatureError as exc:
        return exc.status, [], None
    try:
        messages = channel.parse(raw)
    except MalformedError:
        return 400, [], None
    return 200, messages, channel.ack(raw, messages)


def check_messages(messages: list[InboundMessage], expected: list[dict[str, Any]],
                   channel: str) -> None:
    """Compare parsed messages with the fixture's expectation."""
    assert len(messages) == len(expected)
    for got, want in zip(messages, expected, strict=True):
        assert got.channel == channel
        assert got.external_id == want["external_id"]
        assert got.sender == want["sender"]
        assert got.text == want["text"]
        assert unicodedata.is_normalized("NFC", got.text)
        assert got.kind == want["kind"]
        assert [{"kind": a.kind, "mime": a.mime, "url": a.url} for a in got.attachments] == [
            {"kind": a["kind"], "mime": a["mime"], "url": a["url"]} for a in want["attachments"]
        ]
        assert got.received_at.tzinfo is not None
        for key, value in want.get("raw", {}).items():
            assert got.raw[key] == value
        for key, value in want.get("meta", {}).items():
            assert getattr(got.meta, key) == value, key
        if "silent" not in want.get("meta", {}):
            assert not got.meta.silent
        json.dumps(dict(got.raw))  # the audit copy is JSON-ready
