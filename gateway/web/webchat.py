"""The web chat page and its small JSON API (session, photo upload, reply polling).

Messages themselves go through `/webhooks/web` like every other channel's webhook.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path

import jinja2
from aiohttp import web

from channels.web import session_token
from gateway.keys import SERVICES, SETTINGS
from gateway.web.chat_session import check_session
from gateway.web.console.auth import MEDIA_COOKIE, load_operator, read_session, sign, unsign
from gateway.web.media_access import (
    UPLOAD_COOKIE,
    UploadQuota,
    magic_ok,
    owner_tag,
    safe_file,
    signature_ok,
    sweep_uploads,
    uploaded_by,
    with_media_headers,
)
from gateway.web.ratelimit import limited_response, request_ip, too_many
from gateway.web.webchat_history import history
from store.repos import console as console_repo

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)
IMAGE_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}
MAX_UPLOAD = 8_000_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    """Store one photo for the session and return its signed URL for the next message."""
    sid, token = request.query.get("sid", ""), request.query.get("token", "")
    check_session(request, sid, token)
    for key, surface in ((None, "chat"), (sid, "chat_session")):
        refused = limited_response(request, surface, key)
        if refused is not None:
            return refused
    settings = request.app[SETTINGS]
    mime = request.content_type
    if mime not in IMAGE_TYPES:
        raise web.HTTPUnsupportedMediaType(text="only JPEG, PNG or WebP photos")
    if request.content_length and request.content_length > MAX_UPLOAD:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=request.content_length)
    quota = upload_quota(request.app)
    ip = request_ip(request)
    if not quota.allows(sid, ip, request.content_length or 0):
        return too_many(600)
    data = bytearray()
    try:
        async with asyncio.timeout(settings.http_body_timeout_seconds):
            async for chunk in request.content.iter_chunked(65536):
                data.extend(chunk)
                if len(data) > MAX_UPLOAD:
                    raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD,
                                                        actual_size=len(data))
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="upload too slow") from None
    if not magic_ok(mime, bytes(data[:16])):
        raise web.HTTPUnsupportedMediaType(text="the file is not a JPEG, PNG or WebP photo")
    if not quota.allows(sid, ip, len(data)):
        return too_many(600)
    quota.spend(sid, ip, len(data))
    # Random (never guessable), prefixed with the session's tag so only it may view it.
    name = owner_tag(settings.session_secret, sid) + secrets.token_hex(16) + IMAGE_TYPES[mime]
    rel = Path("web") / name[:2] / name
    path = settings.resolved_media_dir() / rel
    await asyncio.to_thread(_store, path, bytes(data))
    _maybe_sweep(request.app)
    resp = web.json_response({"url": f"/media/{rel.as_posix()}", "mime": mime})
    resp.set_cookie(UPLOAD_COOKIE, sign(settings.session_secret, "chat-media", {"s": sid}),
                    max_age=24 * 3600, path="/media/web", httponly=True, samesite="Lax",
                    secure=settings.public_base_url.lower().startswith("https://"))
    return resp


def _store(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


_QUOTAS: weakref.WeakKeyDictionary[web.Application, UploadQuota] = weakref.WeakKeyDictionary()
_SWEPT: weakref.WeakKeyDictionary[web.Application, float] = weakref.WeakKeyDictionary()
_SWEEPS: set[asyncio.Task[int]] = set()
SWEEP_EVERY_S = 600.0


def upload_quota(app: web.Application) -> UploadQuota:
    """The app's upload quotas (made on first use from the upload_* settings)."""
    quota = _QUOTAS.get(app)
    if quota is None:
        settings = app[SETTINGS]
        quota = _QUOTAS[app] = UploadQuota(settings.upload_max_per_session,
                                           settings.upload_max_bytes_per_ip)
    return quota


def _maybe_sweep(app: web.Application) -> None:
    """Delete unreferenced old uploads, at most every SWEEP_EVERY_S, in the background."""
    now = time.monotonic()
    if now - _SWEPT.get(app, -SWEEP_EVERY_S) < SWEEP_EVERY_S:
        return
    _SWEPT[app] = now
    task = asyncio.create_task(sweep_uploads(app[SETTINGS], app[SERVICES].sessions))
    _SWEEPS.add(task)
    task.add_done_callback(_SWEEPS.discard)


async def messages(request: web.Request) -> web.Response:
    """Replies for this session after `after` (the outbox rows addressed to it)."""
    sid, token = request.query.get("sid", ""), request.query.get("token", "")
    check_session(request, sid, token)
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
    """A stored media file, for a console operator or a signed unexpired link (else 403)."""
    rel = request.match_info["path"]
    settings = request.app[SETTINGS]
    path = safe_file(settings.resolved_media_dir(), rel)
    if path is None:
        raise web.HTTPNotFound()
    signed = signature_ok(settings.session_secret, rel, request.query.get("exp", ""),
                          request.query.get("sig", ""))
    chat = unsign(settings.session_secret, "chat-media", request.cookies.get(UPLOAD_COOKIE))
    if not signed and chat is not None and uploaded_by(settings.session_secret,
                                                       str(chat.get("s", "")), rel):
        signed = True  # the web chat session that uploaded this photo
    if not signed:
        session = read_session(request, MEDIA_COOKIE)
        if session is None or await load_operator(request, session) is None:
            return with_media_headers(web.Response(status=403, text="forbidden"))
    return with_media_headers(web.FileResponse(path))


def _chat_limited(handler: Handler) -> Handler:
    """The /chat/* per-IP limit (429) in front of `handler`."""
    async def limited(request: web.Request) -> web.StreamResponse:
        refused = limited_response(request, "chat")
        return refused if refused is not None else await handler(request)

    limited.__name__ = handler.__name__
    limited.__doc__ = handler.__doc__
    return limited


def setup_webchat(app: web.Application) -> None:
    """Register the chat page and its API."""
    app.router.add_get("/", page)
    app.router.add_post("/chat/session", _chat_limited(new_session))
    app.router.add_post("/chat/upload", upload)  # limits itself, per IP and per session
    app.router.add_get("/chat/messages", _chat_limited(messages))
    app.router.add_get("/chat/history", _chat_limited(history))
    app.router.add_get("/media/{path:.+}", media)
