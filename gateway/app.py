"""The aiohttp application: `create_app(settings)` wires store, channels, NLP and workers.

Resources live in `cleanup_ctx` generators (aiohttp-demos' way), in dependency order:
database → HTTP client → services (texts, classifier, speech, channels) → background tasks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from channels.registry import ChannelSet
from gateway.domain.keywords import recent_judgements
from gateway.domain.texts import Texts
from gateway.keys import ENGINE, INGESTOR, SERVICES, SETTINGS
from gateway.ops.metrics import Metrics
from gateway.services import Services
from gateway.settings import Settings
from gateway.web.ingest import Ingestor
from gateway.workers.speech import Speech, start_speech
from nlp.classifier import Classifier
from store import migrate
from store.db import create_engine, is_sqlite, session_factory
from store.repos.credentials import DbTokenStore
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
    yield
    await engine.dispose()


def _load_classifier(settings: Settings, judged: list[tuple[str, str]]) -> Classifier:
    return Classifier.load(settings.config_dir, min_score=settings.review_min_score,
                           min_margin=settings.review_min_margin, examples=judged)


async def _services(app: web.Application) -> AsyncIterator[None]:
    """Build every shared dependency once, in order, then hand them out typed."""
    settings = app[SETTINGS]
    sessions = session_factory(app[ENGINE])
    texts = Texts.load(settings.config_dir)
    judged = await recent_judgements(settings, sessions)
    classifier: Classifier | None = await asyncio.to_thread(_load_classifier, settings, judged)
    speech: Speech | None = await start_speech(settings)
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        # Every channel's typed config is validated here: a renamed setting stops the start.
        channels = ChannelSet.build(settings, http=http, tokens=DbTokenStore(sessions),
                                    texts=texts.data)
        services = Services(
            settings=settings, sessions=sessions, texts=texts, metrics=Metrics(),
            channels=channels, classifier=classifier, speech=speech,
            write_gate=WriteGate() if is_sqlite(settings.database_url) else None,
        )
        await channels.start_all()
        app[SERVICES] = services
        app[INGESTOR] = Ingestor(sessions, services.metrics, services.worker_wake,
                                 services.write_gate)
        try:
            yield
        finally:
            await channels.stop_all()
            if speech is not None:
                speech.close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.run_workers:
        yield
        return
    from gateway.workers.jobs import build_scheduler, make_forwarder
    from gateway.workers.leader import Leader
    from gateway.workers.learning import relearn_loop
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
        asyncio.create_task(relearn_loop(services, stop), name="relearn"),
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
    app.cleanup_ctx.extend([_database, _services, _background])

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
