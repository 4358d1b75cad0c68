"""Typed application keys (aiohttp `web.AppKey`): one per object the app holds.

Everything the request handlers share lives in `Services` (typed, built once at start-up);
the engine and the ingestor are the web layer's own.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.services import Services
from gateway.settings import Settings
from gateway.web.ingest import Ingestor

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
ENGINE = web.AppKey("engine", AsyncEngine)
INGESTOR = web.AppKey("ingestor", Ingestor)
