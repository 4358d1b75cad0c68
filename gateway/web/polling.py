"""`paht serve --telegram-polling`: Telegram long polling for a developer without a public URL.

Updates go through the same parse code and the same durable ingest as the webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.keys import INGESTOR, SERVICES


def enable_telegram_polling(app: web.Application) -> None:
    """Start long polling with the app (after the channels exist), stop it on shutdown."""

    async def _ctx(app: web.Application) -> AsyncIterator[None]:
        from channels.telegram import TelegramChannel
        from channels.telegram_polling import run_polling

        channel = app[SERVICES].channels.get("telegram")
        if not isinstance(channel, TelegramChannel):
            raise RuntimeError("Telegram polling needs PAHT_TELEGRAM_TOKEN")
        stop = asyncio.Event()
        task = asyncio.create_task(run_polling(channel, app[INGESTOR].accept, stop))
        yield
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=35)

    app.cleanup_ctx.append(_ctx)
