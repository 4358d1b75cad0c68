"""A local fake of the Zalo OA OpenAPI and OAuth v4 (https://developers.zalo.me/docs/official-account).

- `POST /v3.0/oa/message/cs` with an `access_token` header: HTTP 200 always; `{"error": 0,
  "message": "Success", "data": {"message_id", "user_id"}}` or `{"error": <code>, "message"}`
  (-216 when the token is not the current one, or a scripted error code).
- `POST /v4/oa/access_token` (form: app_id, grant_type=refresh_token, refresh_token; header
  `secret_key`): rotates the pair — the used refresh token dies (single use) — and answers
  `{"access_token", "refresh_token", "expires_in": "90000"}` (a string, like Zalo), or
  `{"error": -14014, "error_name": "Invalid refresh token"}`.
- `GET /media/<name>` serves bytes for `fetch_media` tests.
Both bases (zalo_api_base and zalo_oauth_base) can point at the same fake server.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

APP_ID = "360846524940903967"
APP_SECRET = "test-app-secret"


@dataclass
class FakeZalo:
    """State of the fake: the live token pair, recorded sends and refreshes, scripted errors."""

    access_token: str = "access-1"
    refresh_token: str = "refresh-1"
    app_id: str = APP_ID
    app_secret: str = APP_SECRET
    sends: list[dict[str, Any]] = field(default_factory=list)
    send_tokens: list[str] = field(default_factory=list)
    refreshes: list[dict[str, str]] = field(default_factory=list)
    errors: deque[tuple[int, str]] = field(default_factory=deque)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    generation: int = 1
    next_id: int = 1

    def fail(self, code: int, message: str = "error") -> None:
        """Make the next cs send answer this error (with HTTP 200, as Zalo does)."""
        self.errors.append((code, message))

    def expire_access_token(self) -> None:
        """Invalidate the current access token (the refresh token still works)."""
        self.access_token = "expired-" + self.access_token

    def app(self) -> web.Application:
        """The aiohttp application to run with aiohttp_server."""
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/cs", self._cs)
        app.router.add_post("/v4/oa/access_token", self._token)
        app.router.add_get("/media/{name}", self._media)
        return app

    async def _cs(self, request: web.Request) -> web.Response:
        token = request.headers.get("access_token", "")
        body = await request.json()
        self.send_tokens.append(token)
        if token != self.access_token:
            return web.json_response({"error": -216, "message": "Access token is invalid"})
        if self.errors:
            code, message = self.errors.popleft()
            return web.json_response({"error": code, "message": message})
        self.sends.append(body)
        mid = f"zmid{self.next_id:016x}"
        self.next_id += 1
        return web.json_response({"error": 0, "message": "Success",
                                  "data": {"message_id": mid,
                                           "user_id": body["recipient"]["user_id"]}})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.refreshes.append({k: str(v) for k, v in form.items()})
        app_ok = form.get("app_id") == self.app_id
        if request.headers.get("secret_key") != self.app_secret or not app_ok:
            return web.json_response({"error": -14002, "error_name": "Invalid app"})
        token_ok = form.get("refresh_token") == self.refresh_token
        if form.get("grant_type") != "refresh_token" or not token_ok:
            return web.json_response({"error": -14014, "error_name": "Invalid refresh token",
                                      "error_description": "refresh token is invalid"})
        self.generation += 1
        self.access_token = f"access-{self.generation}"
        self.refresh_token = f"refresh-{self.generation}"
        return web.json_response({"access_token": self.access_token,
                                  "refresh_token": self.refresh_token, "expires_in": "90000"})

    async def _media(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.media:
            raise web.HTTPNotFound()
        data, mime = self.media[name]
        return web.Response(body=data, content_type=mime)
