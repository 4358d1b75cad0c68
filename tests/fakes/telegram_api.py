"""A local fake of the Telegram Bot API (https://core.telegram.org/bots/api#making-requests).

An aiohttp app answering `POST /bot<token>/<method>` like the real server
(`{"ok": true, "result": ...}` or `{"ok": false, "error_code": ..., "description": ...,
"parameters": {...}}`) and `GET /file/bot<token>/<file_path>` for downloads. It records every
call so tests assert what the citizen would have seen. python-telegram-bot posts its
parameters form-encoded with JSON-encoded values (reply_markup, allowed_updates), so the fake
decodes both forms and JSON bodies.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token_abc"


@dataclass
class Call:
    """One recorded Bot API call."""

    method: str
    params: dict[str, Any]


@dataclass
class FakeTelegram:
    """State of the fake server: recorded calls, scripted failures, files, pending updates."""

    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    # method -> queued error answers (status, description, parameters) used before success
    failures: dict[str, deque[tuple[int, str, dict[str, Any] | None]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # file_id -> (path, data)
    # getFile may report a size different from the real content (to test streaming limits)
    reported_sizes: dict[str, int | None] = field(default_factory=dict)
    # Updates not yet confirmed; getUpdates(offset) confirms (drops) those below `offset`.
    pending: list[dict[str, Any]] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    next_message_id: int = 1000

    def fail(
        self, method: str, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        """Make the next call of `method` fail with this Bot API error."""
        self.failures[method].append((status, description, parameters))

    def add_file(self, file_id: str, path: str, data: bytes, reported: int | None = -1) -> None:
        """Serve `data` for `file_id` at /file/bot<token>/<path>."""
        self.files[file_id] = (path, data)
        self.reported_sizes[file_id] = len(data) if reported == -1 else reported

    def named(self, method: str) -> list[Call]:
        """The recorded calls of one method."""
        return [c for c in self.calls if c.method == method]

    def sent(self) -> list[dict[str, Any]]:
        """The sendMessage parameters, in order."""
        return [c.params for c in self.named("sendMessage")]

    # --- handlers -----------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            body = await request.json()
            return dict(body) if isinstance(body, dict) else {}
        form = await request.post()
        params: dict[str, Any] = {}
        for key, value in form.items():
            text = str(value)
            try:
                params[key] = json.loads(text)
            except ValueError:
                params[key] = text
        return params

    async def api(self, request: web.Request) -> web.Response:
        """POST /bot<token>/<method>."""
        if request.match_info["token"] != self.token:
            return _error(404, "Not Found")  # what Telegram answers for a wrong token
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(Call(method, params))
        if self.failures[method]:
            status, description, parameters = self.failures[method].popleft()
            return _error(status, description, parameters)
        if method == "getFile" and str(params.get("file_id")) not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        return _ok(self._result(method, params))

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {"id": 123456, "is_bot": True, "first_name": "PAHT", "username": "PahtBot",
                    "can_join_groups": False, "can_read_all_group_messages": False,
                    "supports_inline_queries": False}
        if method == "sendMessage":
            self.next_message_id += 1
            return {"message_id": self.next_message_id, "date": 1718000100,
                    "chat": {"id": int(params["chat_id"]), "type": "private"},
                    "from": {"id": 123456, "is_bot": True, "first_name": "PAHT"},
                    "text": params.get("text", "")}
        if method == "getFile":
            file_id = str(params.get("file_id"))
            path, _ = self.files[file_id]
            result: dict[str, Any] = {"file_id": file_id, "file_unique_id": "u-" + file_id,
                                      "file_path": path}
            size = self.reported_sizes.get(file_id)
            if size is not None:
                result["file_size"] = size
            return result
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
            limit = int(params.get("limit") or 100)
            return self.pending[:limit]
        if method == "getWebhookInfo":
            hooks = self.named("setWebhook")
            url = hooks[-1].params.get("url", "") if hooks else ""
            return {"url": url, "has_custom_certificate": False, "pending_update_count": 0,
                    "allowed_updates": hooks[-1].params.get("allowed_updates") if hooks else None}
        # setWebhook, deleteWebhook, answerCallbackQuery and the rest: plain True
        return True

    async def file(self, request: web.Request) -> web.StreamResponse:
        """GET /file/bot<token>/<path>."""
        if request.match_info["token"] != self.token:
            raise web.HTTPNotFound()
        path = request.match_info["path"]
        self.downloads.append(path)
        for stored_path, data in self.files.values():
            if stored_path == path:
                return web.Response(body=data, content_type="application/octet-stream")
        raise web.HTTPNotFound()

    def app(self) -> web.Application:
        """The aiohttp application serving this fake."""
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.api)
        app.router.add_get("/file/bot{token}/{path:.+}", self.file)
        return app


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)
