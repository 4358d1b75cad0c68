"""The typed dependencies of the gateway, built once by `create_app` and never patched after."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.registry import ChannelSet
from gateway.domain.lifecycle import Lifecycle
from gateway.domain.texts import Texts
from gateway.ops.metrics import Metrics
from gateway.settings import Settings
from gateway.workers.speech import Speech
from nlp.classifier import Classifier
from store.write_gate import WriteGate


@dataclass
class Services:
    """Settings, database sessions, texts, classifier, speech, channels and wake-up events."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    texts: Texts
    metrics: Metrics
    channels: ChannelSet = field(default_factory=ChannelSet)
    classifier: Classifier | None = None  # None when it failed to load: operators decide
    speech: Speech | None = None  # None without speech-to-text: audio is kept
    worker_wake: asyncio.Event = field(default_factory=asyncio.Event)
    outbox_wake: asyncio.Event = field(default_factory=asyncio.Event)
    write_gate: WriteGate | None = None  # SQLite only: webhook commits go first
    lifecycle: Lifecycle = field(init=False)

    def __post_init__(self) -> None:
        self.lifecycle = Lifecycle(self.settings, self.texts, self.classifier, self.outbox_wake)
