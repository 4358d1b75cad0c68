"""The web chat page and its small JSON API (session, photo upload, reply polling).

Messages themselves go through `/webhooks/web` like every other channel's webhook.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import jinja2
from aiohttp import web

from channels.web import session_token
from gateway.keys import SERVICES, SETTINGS
from store.repos import console as console_repo

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)
IMAGE_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}
MAX_UPLOAD = 8_000_000


def _check(request: web.Request, sid: str, token: str) -> None:
    secret = request.app[SETTINGS].session_secret
    if not sid or not token or not secrets.compare_digest(session_token(secret, sid), token):
        raise web.HTTPForbidden(text="bad session")


async def page(request: web.Request) -> web.Response:
    """The chat page (Vietnamese, mobile-first)."""
    texts = request.app[SERVICES].texts
    html = TEMPLATES.get_template("chat.html").render(t=texts.data["web"])
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def new_session(request: web.Request) -> web.Response:
    """A new chat session id and its token."""
    sid = secrets.token_urlsafe(18)
    secret = request.app[SETTINGS].session_secret
    return web.json_response({"sid": sid, "token": session_token(secret, sid)})


async def upload(request: web.Request) -> web.Response:
    """Store one photo for the session and return its URL for the next message."""
    sid, token = request.query.get("sid", ""), request.query.get("token", "")
    _check(request, sid, token)
    mime = request.content_type
    if mime not in IMAGE_TYPES:
        raise web.HTTPUnsupportedMediaType(text="only JPEG, PNG or WebP photos")
    if request.content_length and request.content_length > MAX_UPLOAD:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=request.content_length)
    data = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        data.extend(chunk)
        if len(data) > MAX_UPLOAD:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=len(data))
    name = secrets.token_hex(16) + IMAGE_TYPES[mime]
    rel = Path("web") / name[:2] / name
    path = request.app[SETTINGS].resolved_media_dir() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return web.json_response({"url": f"/media/{rel.as_posix()}", "mime": mime})


async def messages(request: web.Request) -> web.Response:
    """Replies for this session after `after` (the outbox rows addressed to it)."""
    sid, token = request.query.get("sid", ""), request.query.get("token", "")
    _check(request, sid, token)
    try:
        after = int(request.query.get("after", "0"))
    except ValueError as exc:
        raise web.HTTPBadRequest(text="after must be an integer") from exc
    services = request.app[SERVICES]
    async with services.sessions() as session:
        rows = await console_repo.replies_to(session, f"web:{sid}", after,
                                             ("reply", "notify"), limit=50)
    return web.json_response({"messages": [
        {"id": r.id, "text": r.payload.get("text", ""),
         "buttons": [{"title": b["title"], "payload": b["payload"], "kind": b["kind"]}
                     for b in r.payload.get("buttons", [])],
         "at": r.created_at.isoformat()}
        for r in rows
    ]})


async def media(request: web.Request) -> web.StreamResponse:
    """Serve a stored media file (names are unguessable digests)."""
    root = request.app[SETTINGS].resolved_media_dir().resolve()
    path = (root / request.match_info["path"]).resolve()
    if root not in path.parents or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


def setup_webchat(app: web.Application) -> None:
    """Register the chat page and its API."""
    app.router.add_get("/", page)
    app.router.add_post("/chat/session", new_session)
    app.router.add_post("/chat/upload", upload)
    app.router.add_get("/chat/messages", messages)
    app.router.add_get("/media/{path:.+}", media)
