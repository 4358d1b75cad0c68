"""A local fake of the Twilio REST API (https://www.twilio.com/docs/messaging/api/message-resource).

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`: form body (To, From or
  MessagingServiceSid, Body, StatusCallback, MediaUrl…), HTTP Basic auth AccountSid:AuthToken;
  answers 201 with a Message resource, or a scripted Twilio error
  (`{"code", "message", "more_info", "status"}`) with its HTTP status (400/429/5xx).
- `GET /2010-04-01/Accounts/{AccountSid}/Messages/{MM}/Media/{ME}` (Basic auth) answers 307
  to `/cdn/{ME}` like Twilio's redirect to its short-lived CDN link; the CDN serves without
  auth and refuses requests that carry our credentials (they must not leak past Twilio).
- `GET /2010-04-01/Accounts/{AccountSid}/Recordings/{RE}.wav` (Basic auth) serves a recording.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

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
