"""Typed application keys (aiohttp `web.AppKey`) for everything the app holds."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Channel
from gateway.ops.metrics import Metrics
from gateway.services import Services
from gateway.settings import Settings
from gateway.web.ingest import Ingestor

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
METRICS = web.AppKey("metrics", Metrics)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CHANNELS = web.AppKey("channels", dict[str, Channel])
DISABLED = web.AppKey("disabled_channels", dict[str, str])
INGESTOR = web.AppKey("ingestor", Ingestor)
WAKE = web.AppKey("wake", asyncio.Event)
OUTBOX_WAKE = web.AppKey("outbox_wake", asyncio.Event)
CLASSIFIER = web.AppKey("classifier", object)  # nlp.classifier.Classifier or None
SPEECH = web.AppKey("speech", object)  # gateway.workers.speech.Speech or None
SERVICES = web.AppKey("services", Services)
