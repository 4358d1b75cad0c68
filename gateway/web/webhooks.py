"""Webhook and ops routes: raw body → verify → parse → persist → ack (DESIGN §2.1).

Nothing slow happens before the acknowledgement: Zalo wants 200 within 2 s and Telegram
resends after 60 s. If the database cannot take the message we answer 503 so the provider
retries — never 2xx for a message we did not save. Hostile input stops as early as possible:
per-IP rate limit before the body is read (429), size bound (413), JSON nested deeper than
MAX_JSON_DEPTH before any parser sees it (400), per-sender rate limit after parse (429).
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from channels.base import MalformedError, RawRequest, SignatureError
from channels.download import BodyTooLarge, read_limited
from channels.registry import WEBHOOK_PATHS
from gateway.keys import ENGINE, INGESTOR, SERVICES, SETTINGS
from gateway.web.ratelimit import LIMITS, RateLimits, client_ip, json_too_deep
from gateway.workers.speech import Speech
from store.db import ping
from store.repos import events as events_repo

log = logging.getLogger("paht.routes")
# The app's channels, built once at start-up (gateway/app.py); the routes ask it, not names.


async def read_raw(request: web.Request, limit: int) -> RawRequest:
    """Read the body once (bounded) and freeze the request for the channel."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    try:
        async with asyncio.timeout(request.app[SETTINGS].http_body_timeout_seconds):
            body = await read_limited(request.content, limit)
    except BodyTooLarge as exc:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=exc.size) from None
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="request body too slow") from None
    return RawRequest(
        method=request.method,
        url=str(request.url),
        headers=dict(request.headers),
        query=dict(request.query),
        body=body,
    )


def _channel_for(request: web.Request) -> str:
    name = WEBHOOK_PATHS.get(request.path)
    if name is None:
        raise web.HTTPNotFound(text="unknown channel")
    return name


async def webhook(request: web.Request) -> web.StreamResponse:
    """The generic webhook: every channel's POST goes through here."""
    app = request.app
    name = _channel_for(request)
    metrics = app[SERVICES].metrics
    channel = app[SERVICES].channels.get(name)
    if channel is None:
        metrics.inc("paht_messages_rejected_total", channel=name, reason="disabled")
        raise web.HTTPNotFound(text=f"channel {name} is not configured")
    limits = app[LIMITS]
    ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"),
                   limits.trusted_proxies)
    outcome, retry_after = limits.check_ip(ip)
    if outcome == "allowlisted":
        metrics.inc("paht_ratelimit_allowlisted_total", channel=name)
    elif outcome == "limited":
        metrics.inc("paht_messages_rejected_total", channel=name, reason="rate_limit_ip")
        return _too_many(retry_after)
    if app[SERVICES].channels.traits(name).direct_clients:
        # Citizens' own browsers post here (no provider in between): limit them per IP too.
        outcome, retry_after = limits.check_surface("chat", ip)
        if outcome == "limited":
            metrics.inc("paht_messages_rejected_total", channel=name, reason="rate_limit_ip")
            return _too_many(retry_after)
    limit = min(app[SETTINGS].max_body_bytes, channel.max_body_bytes)
    try:
        raw = await read_raw(request, limit)
    except web.HTTPRequestEntityTooLarge:
        metrics.inc("paht_messages_rejected_total", channel=name, reason="too_large")
        raise
    if json_too_deep(raw.body):
        metrics.inc("paht_messages_rejected_total", channel=name, reason="too_deep")
        return web.Response(status=400, text="malformed body")
    try:
        channel.verify(raw)
    except SignatureError as exc:
        metrics.inc("paht_messages_rejected_total", channel=name, reason="signature")
        log.warning("signature rejected", extra={"channel": name, "why": str(exc)})
        return web.Response(status=exc.status, text="invalid signature")
    except Exception:
        # A channel bug on hostile input: what we cannot check is not authentic (no 500).
        metrics.inc("paht_messages_rejected_total", channel=name, reason="verify_error")
        log.exception("signature check crashed", extra={"channel": name})
        return web.Response(status=403, text="invalid signature")
    try:
        messages = channel.parse(raw)
    except MalformedError as exc:
        metrics.inc("paht_messages_rejected_total", channel=name, reason="malformed")
        log.warning("malformed body", extra={"channel": name, "why": str(exc)})
        return web.Response(status=400, text="malformed body")
    except Exception:
        # The contract says MalformedError only; anything else is a parser bug, logged with
        # its traceback and counted, answered like any unparseable body.
        metrics.inc("paht_messages_rejected_total", channel=name, reason="parser_error")
        log.exception("parser crashed", extra={"channel": name})
        return web.Response(status=400, text="malformed body")
    allowed, retry_after = limits.check_senders([m.sender for m in messages])
    if not allowed:
        # Not saved and not acknowledged: the provider delivers it again later.
        metrics.inc("paht_messages_rejected_total", channel=name, reason="rate_limit_sender")
        return _too_many(retry_after)
    try:
        await app[INGESTOR].accept(messages)
    except Exception:
        # Not saved: make the provider retry rather than lose the message.
        metrics.inc("paht_messages_rejected_total", channel=name, reason="store_unavailable")
        log.exception("could not persist inbound messages", extra={"channel": name})
        return web.Response(status=503, text="temporarily unavailable",
                            headers={"Retry-After": "5"})
    ack = channel.ack(raw, messages)
    return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)


def _too_many(retry_after: int) -> web.Response:
    return web.Response(status=429, text="too many requests",
                        headers={"Retry-After": str(retry_after)})


async def webhook_get(request: web.Request) -> web.StreamResponse:
    """GET on a webhook path: the channel's verification handshake (Facebook's hub.challenge)."""
    name = _channel_for(request)
    handshake = request.app[SERVICES].channels.handshakes.get(name)
    if handshake is None:
        raise web.HTTPNotFound()
    raw = RawRequest("GET", str(request.url), dict(request.headers), dict(request.query), b"")
    ack = handshake.handle_get(raw)
    return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)


async def healthz(request: web.Request) -> web.StreamResponse:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when the database answers and takes writes; lists channels and speech state."""
    app = request.app
    db_ok = await ping(app[ENGINE])
    ingestor = app.get(INGESTOR)
    writes_ok = ingestor is None or not ingestor.write_failing()
    speech = app[SERVICES].speech
    channels = app[SERVICES].channels
    body = {
        "status": "ok" if db_ok and writes_ok else "unavailable",
        "database": ("ok" if writes_ok else "writes failing") if db_ok else "unreachable",
        "channels": {
            **{name: "enabled" for name in sorted(channels)},
            **{name: f"disabled: {why}" for name, why in sorted(channels.disabled.items())},
        },
        "speech": speech.describe() if isinstance(speech, Speech) else "not configured",
    }
    return web.json_response(body, status=200 if db_ok and writes_ok else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus metrics."""
    app = request.app
    m = app[SERVICES].metrics
    try:
        async with app[SERVICES].sessions() as session:
            m.set("paht_queue_depth", await events_repo.queue_depth(session))
    except Exception:
        log.warning("metrics: database unreachable")
    return web.Response(text=m.render(), content_type="text/plain", charset="utf-8")


def json_error(status: int, message: str) -> web.Response:
    """A small JSON error body."""
    return web.Response(
        status=status,
        text=json.dumps({"error": message}, ensure_ascii=False),
        content_type="application/json",
    )


def setup_routes(app: web.Application) -> None:
    """Register webhook and ops routes (and the rate limits they share)."""
    app[LIMITS] = RateLimits.from_settings(app[SETTINGS])
    for path in WEBHOOK_PATHS:
        app.router.add_post(path, webhook)
        # Answered only by channels with a GetHandshake (Facebook's hub.challenge), else 404.
        app.router.add_get(path, webhook_get)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
