"""The aiohttp application: `create_app(settings)` wires store, channels, NLP and workers.

Resources live in `cleanup_ctx` generators (aiohttp-demos' way), in dependency order:
database → HTTP client → services (texts, classifier, speech, channels) → background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from channels.registry import CHANNELS as CHANNEL_NAMES
from channels.registry import channel_class
from gateway.domain.texts import Texts
from gateway.keys import (
    CHANNELS,
    CLASSIFIER,
    DISABLED,
    ENGINE,
    HTTP,
    INGESTOR,
    METRICS,
    SERVICES,
    SESSIONS,
    SETTINGS,
    SPEECH,
)
from gateway.ops.metrics import Metrics
from gateway.services import Services
from gateway.settings import Settings
from gateway.web.ingest import Ingestor
from store import migrate
from store.db import create_engine, is_sqlite, session_factory
from store.repo import DbTokenStore
from store.write_gate import WriteGate

log = logging.getLogger("paht.app")


def _session_secret(settings: Settings) -> Settings:
    """Use PAHT_SESSION_SECRET, or a random one kept under var/ so restarts keep sessions."""
    if settings.session_secret:
        return settings
    path = Path(settings.var_dir) / "session_secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        secret = path.read_text().strip()
    else:
        secret = secrets.token_hex(32)
        path.write_text(secret)
        path.chmod(0o600)
    return settings.model_copy(update={"session_secret": secret})


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.auto_migrate and is_sqlite(settings.database_url):
        await asyncio.to_thread(migrate.upgrade, settings.database_url)
    engine = create_engine(settings.database_url)
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    yield
    await engine.dispose()


async def _http(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app[HTTP] = session
        yield


def _load_classifier(settings: Settings) -> object | None:
    try:
        from nlp.classifier import Classifier
    except ImportError:
        log.warning("classifier not available: reports wait for an operator")
        return None
    return Classifier.load(
        settings.config_dir, min_score=settings.review_min_score,
        min_margin=settings.review_min_margin,
    )


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    services = Services(
        settings=settings, sessions=app[SESSIONS], texts=Texts.load(settings.config_dir),
        metrics=metrics,
    )
    services.classifier = await asyncio.to_thread(_load_classifier, settings)
    app[CLASSIFIER] = services.classifier
    from gateway.workers.speech import start_speech

    services.speech = await start_speech(settings)
    app[SPEECH] = services.speech
    tokens = DbTokenStore(app[SESSIONS])
    disabled: dict[str, str] = {}
    for name in CHANNEL_NAMES:
        try:
            cls = channel_class(name)
        except (ImportError, AttributeError) as exc:
            disabled[name] = f"not installed ({type(exc).__name__})"
            continue
        if not cls.enabled(settings):
            disabled[name] = "secrets not configured"
            continue
        channel = cls(settings, http=app[HTTP], tokens=tokens)
        channel.messages = services.texts.data.get(name, {})
        start = getattr(channel, "start", None)
        if start is not None:
            await start()
        services.channels[name] = channel
    app[CHANNELS] = services.channels
    app[DISABLED] = disabled
    app[SERVICES] = services
    if is_sqlite(settings.database_url):
        services.write_gate = WriteGate()
    app[INGESTOR] = Ingestor(app[SESSIONS], metrics, services.worker_wake, services.write_gate)
    yield
    for channel in services.channels.values():
        stop = getattr(channel, "stop", None)
        if stop is not None:
            with contextlib.suppress(Exception):
                await stop()
    if services.speech is not None:
        services.speech.close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.run_workers:
        yield
        return
    from gateway.workers.jobs import build_scheduler, make_forwarder
    from gateway.workers.leader import Leader
    from gateway.workers.outbox import OutboxSender
    from gateway.workers.pipeline import Worker

    services = app[SERVICES]
    stop = asyncio.Event()
    forwarder = make_forwarder(services)
    scheduler = build_scheduler(services, forwarder)
    scheduler.start(paused=True)  # runs only while this process leads (PostgreSQL lock)

    def lead(leading: bool) -> None:
        if not scheduler.running:
            return
        if leading:
            scheduler.resume()
        else:
            scheduler.pause()

    leader = Leader(settings.database_url, on_change=lead)
    tasks = [
        asyncio.create_task(Worker(services).run(stop), name="worker"),
        asyncio.create_task(OutboxSender(services).run(stop), name="outbox"),
        asyncio.create_task(leader.run(stop), name="leader"),
    ]
    yield
    stop.set()
    services.worker_wake.set()
    services.outbox_wake.set()
    scheduler.shutdown(wait=False)
    await asyncio.wait(tasks, timeout=10)
    for task in tasks:
        task.cancel()
    if forwarder is not None:
        await forwarder.close()


def create_app(settings: Settings | None = None) -> web.Application:
    """Build the gateway application from `settings`."""
    settings = _session_secret(settings or Settings())
    app = web.Application(client_max_size=max(settings.max_body_bytes, 10_000_000))
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app.cleanup_ctx.extend([_database, _http, _services, _background])

    from gateway.web.api import setup_api
    from gateway.web.central import setup_central
    from gateway.web.console import setup_console
    from gateway.web.open311 import setup_open311
    from gateway.web.voice_stream import setup_voice_stream
    from gateway.web.webchat import setup_webchat
    from gateway.web.webhooks import setup_routes

    setup_routes(app)
    setup_webchat(app)
    setup_open311(app)
    setup_api(app)
    setup_central(app)
    setup_voice_stream(app)
    setup_console(app)
    return app
