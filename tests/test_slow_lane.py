"""A slow download or transcription never holds other citizens' messages, nor reorders its own.

The worker waits `worker_prepare_wait_seconds` for a batch's media and speech; an event still
preparing then goes on in a slow lane with its sender's later events, in order, while the
rest of the batch commits and the worker claims more.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlmodel import select

from channels.base import Attachment, Channel, InboundMessage, OutboundMessage, SendResult
from gateway.keys import INGESTOR, SERVICES
from gateway.workers.pipeline import Worker
from store.models import InboundEvent, Report, utcnow


class SlowMedia(Channel):
    """A channel whose media download waits until the test lets it finish."""

    name = "slowmedia"

    def __init__(self) -> None:
        super().__init__(None)
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(provider_id="ok")

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> tuple[bytes, str]:
        self.started.set()
        await self.release.wait()
        return b"\xff\xd8\xff\xe0" + b"0" * 64, "image/jpeg"


async def _statuses(services: Any) -> dict[str, str]:
    async with services.sessions() as s:
        return {e.external_id: e.status for e in (await s.exec(select(InboundEvent))).all()}


async def test_a_slow_download_holds_only_its_own_sender(settings_factory: Any,
                                                         gateway_client: Any) -> None:
    client = await gateway_client(settings_factory(worker_prepare_wait_seconds=0.05,
                                                   review_policy="all"))
    services = client.app[SERVICES]
    channel = SlowMedia()
    services.channels["slowmedia"] = channel
    now = utcnow()
    photo = (Attachment("image", "https://cdn.example/a.jpg", "image/jpeg"),)
    await client.app[INGESTOR].accept([
        InboundMessage("slowmedia", "a1", "slowmedia:a", "Cống thoát nước bị tắc", now,
                       attachments=photo),
        InboundMessage("slowmedia", "b1", "slowmedia:b", "Đèn đường hỏng ở ngõ 5",
                       now + timedelta(seconds=1)),
        InboundMessage("slowmedia", "a2", "slowmedia:a", "ở số 12 Lê Lợi",
                       now + timedelta(seconds=2)),
    ])
    worker = Worker(services)
    assert await worker.run_once() == 3
    assert channel.started.is_set()
    # The other citizen's message is done while the photo is still downloading; the slow
    # sender's later message waits behind its photo instead of overtaking it.
    assert await _statuses(services) == {"a1": "processing", "b1": "done", "a2": "processing"}
    assert await worker.run_once() == 0  # nothing else is due: both are still leased
    channel.release.set()
    await worker.wait_idle()
    assert await _statuses(services) == {"a1": "done", "b1": "done", "a2": "done"}
    async with services.sessions() as s:
        report = (await s.exec(select(Report).where(Report.sender == "slowmedia:a"))).one()
    assert report.text == "Cống thoát nước bị tắc\nở số 12 Lê Lợi"
    assert len(report.attachments) == 1 and report.attachments[0].get("path")
