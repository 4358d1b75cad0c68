"""Telegram CLI helpers: register the webhook, or long-poll getUpdates without a public URL.

Provider docs: https://core.telegram.org/bots/api#setwebhook and
https://core.telegram.org/bots/api#getupdates ("An update is considered confirmed as soon as
getUpdates is called with an offset higher than its update_id"; getUpdates does not work
while a webhook is set, hence the deleteWebhook first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from telegram import error as tg_error
from telegram.warnings import PTBUserWarning

from channels.base import InboundMessage, MalformedError, SendError
from channels.telegram import (
    ALLOWED_UPDATES,
    TelegramChannel,
    TelegramConfig,
    build_application,
    parse_update,
    scrub,
    send_error,
)

log = logging.getLogger("paht.channels.telegram")

WEBHOOK_PATH = "/webhooks/telegram"
_SECRET_CHARS = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

# We call getUpdates through Bot.do_api_request to get the raw update dicts (the very bodies a
# webhook would receive, parsed by the same code); PTB warns that a typed method exists.
warnings.filterwarnings(
    "ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning
)


async def set_webhook(settings: BaseModel) -> dict[str, Any]:
    """`paht telegram set-webhook`: register public_base_url + /webhooks/telegram with the secret.

    Returns getWebhookInfo's answer (url, pending_update_count, last_error_message…).
    """
    config = TelegramConfig.from_settings(settings)
    if not config.token:
        raise ValueError("PAHT_TELEGRAM_TOKEN is not set")
    if not _SECRET_CHARS.match(config.secret):
        # Telegram accepts 1-256 characters of A-Z a-z 0-9 _ - only.
        raise ValueError("PAHT_TELEGRAM_SECRET must be 1-256 characters of A-Za-z0-9_-")
    url = config.public_base_url.rstrip("/") + WEBHOOK_PATH
    if not url.startswith("https://"):
        log.warning("Telegram only delivers webhooks to https URLs (ports 443, 80, 88, 8443)")
    application = build_application(config)
    try:
        async with application:
            bot = application.bot
            await bot.set_webhook(url=url, secret_token=config.secret,
                                  allowed_updates=list(ALLOWED_UPDATES))
            info = await bot.get_webhook_info()
            return dict(info.to_dict())
    except tg_error.TelegramError as exc:
        raise SendError(scrub(str(exc), config.token), retryable=False) from None


async def run_polling(
    channel: TelegramChannel,
    accept: Callable[[list[InboundMessage]], Awaitable[Any]],
    stop: asyncio.Event,
    *,
    poll_seconds: int = 30,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
) -> None:
    """`paht serve --telegram-polling`: deleteWebhook once, then getUpdates until `stop` is set.

    Each batch is parsed like webhook bodies and `accept(messages)` is awaited BEFORE the
    offset moves past it, so a crash or a database error means redelivery, never loss
    (duplicates are no-ops downstream thanks to the update_id dedup).
    """
    region = channel.config.default_region or "VN"
    offset: int | None = None
    delay = backoff
    deleted = False
    while not stop.is_set():
        try:
            bot = await channel.bot()
            if not deleted:
                # Keep pending updates: they are citizens' messages.
                await bot.delete_webhook(drop_pending_updates=False)
                deleted = True
            params: dict[str, Any] = {
                "timeout": poll_seconds, "allowed_updates": list(ALLOWED_UPDATES)
            }
            if offset is not None:
                params["offset"] = offset
            updates = await _until_stopped(
                bot.do_api_request("getUpdates", api_kwargs=params, read_timeout=poll_seconds + 10),
                stop,
            )
            if updates is None:  # stopped mid-poll: nothing of this batch was confirmed
                return
            messages: list[InboundMessage] = []
            for update in updates:
                messages.extend(_parse(update, region))
            if messages:
                await accept(messages)
            if updates:
                offset = max(int(u["update_id"]) for u in updates) + 1
            delay = backoff
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            wait = delay
            if isinstance(exc, SendError) and exc.retry_after:
                wait = max(wait, exc.retry_after)
            elif isinstance(exc, tg_error.RetryAfter):
                wait = max(wait, send_error(exc).retry_after or 0.0)
            log.warning("telegram polling failed; backing off",
                        extra={"why": scrub(str(exc), channel.config.token)[:200],
                               "wait_s": wait})
            delay = min(delay * 2, max_backoff)
            await _sleep_or_stop(wait, stop)


def _parse(update: Any, region: str) -> list[InboundMessage]:
    """parse_update, but a malformed update is logged and skipped (or polling would loop)."""
    if not isinstance(update, dict):
        return []
    try:
        return parse_update(update, region)
    except MalformedError as exc:
        log.warning("skipping malformed telegram update",
                    extra={"update_id": update.get("update_id"), "why": str(exc)})
        return []


async def _until_stopped(call: Awaitable[Any], stop: asyncio.Event) -> Any:
    """Await `call`, or cancel it and return None when `stop` is set first."""
    task = asyncio.ensure_future(call)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
    if task in done:
        return task.result()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
