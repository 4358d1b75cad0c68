"""A local fake of the Messenger Send API (https://developers.facebook.com/docs/messenger-platform/reference/send-api/).

`POST /v21.0/me/messages` answers `{"recipient_id", "message_id"}` or a scripted Graph error
(`{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}` with HTTP 400/403/5xx),
checks the page token (Authorization: Bearer or ?access_token=) and records every call.
`GET /media/<name>` serves bytes (optionally without Content-Length, or as a redirect) so
`fetch_media` can be tested against it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PAGE_TOKEN = "EAAB-test-page-token"
VERSION = "v21.0"


@dataclass
class FakeGraph:
    """State of the fake: recorded sends, queued errors, media files."""

    token: str = PAGE_TOKEN
    sends: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    errors: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    media: dict[str, tuple[bytes, str, bool]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    next_id: int = 1

    def fail(self, status: int, code: int, subcode: int | None = None,
             message: str = "error", is_transient: bool | None = None) -> None:
        """Make the next send fail with this Graph error."""
        err: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                               "fbtrace_id": "Atest"}
        if subcode is not None:
            err["error_subcode"] = subcode
        if is_transient is not None:
            err["is_transient"] = is_transient
        self.errors.append((status, {"error": err}))

    def add_media(self, name: str, data: bytes, mime: str = "image/jpeg",
                  chunked: bool = False) -> None:
        """Serve `data` at /media/<name> (chunked: without Content-Length)."""
        self.media[name] = (data, mime, chunked)

    def app(self) -> web.Application:
        """The aiohttp application to run with aiohttp_server."""
        app = web.Application()
        app.router.add_post(f"/{VERSION}/me/messages", self._messages)
        app.router.add_get("/media/{name}", self._media)
        return app

    async def _messages(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth else request.query.get("access_token", "")
        if token != self.token:
            return web.json_response({"error": {"message": "Invalid OAuth access token.",
                                                "type": "OAuthException", "code": 190}},
                                     status=400)
        body = await request.json()
        self.queries.append(dict(request.query))
        if self.errors:
            status, payload = self.errors.popleft()
            self.sends.append({"failed": True, **body})
            return web.json_response(payload, status=status)
        self.sends.append(body)
        mid = f"m_fake{self.next_id}"
        self.next_id += 1
        return web.json_response({"recipient_id": body["recipient"]["id"], "message_id": mid})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name in self.redirects:
            raise web.HTTPFound(self.redirects[name])
        if name not in self.media:
            raise web.HTTPNotFound()
        data, mime, chunked = self.media[name]
        if not chunked:
            return web.Response(body=data, content_type=mime)
        resp = web.StreamResponse(headers={"Content-Type": mime})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(data), 4096):
            await resp.write(data[i:i + 4096])
        await resp.write_eof()
        return resp
