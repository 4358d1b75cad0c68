"""The shared services every part of the gateway uses, built once by `create_app`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Channel
from gateway.domain.texts import Texts
from gateway.ops.metrics import Metrics
from gateway.settings import Settings
from store.write_gate import WriteGate


@dataclass
class Services:
    """Settings, database sessions, texts, classifier, channels and wake-up events."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    texts: Texts
    metrics: Metrics
    channels: dict[str, Channel] = field(default_factory=dict)
    classifier: Any = None  # nlp.classifier.Classifier, or None when it failed to load
    speech: Any = None  # nlp.stt.SpeechPool, or None without models
    worker_wake: asyncio.Event = field(default_factory=asyncio.Event)
    outbox_wake: asyncio.Event = field(default_factory=asyncio.Event)
    write_gate: WriteGate | None = None  # SQLite only: webhook commits go first
