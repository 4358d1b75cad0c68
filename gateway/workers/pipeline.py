"""The worker: claims persisted events and runs the pipeline stages (DESIGN §2.2).

Stages, each a small function: fetch media → transcribe audio → resolve the citizen →
dialog (join the conversation, classify and store on submission) → queue replies (outbox).
Everything one event changes is committed in one transaction together with marking the
event done, so a crash mid-way leaves the event claimable again and nothing half-done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mimetypes
import os
import socket
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from channels.base import InboundMessage
from channels.codec import message_from_dict
from gateway.domain import reports
from gateway.domain.dialog import Dialog, attachment_record
from gateway.ops.privacy import mask_urn
from gateway.services import Services
from gateway.workers.outbox import WINDOW_CHANNELS, release_held
from store import repo
from store.models import EVENT_DONE, EVENT_IGNORED, InboundEvent, utcnow
from store.write_gate import maybe

log = logging.getLogger("paht.pipeline")


async def fetch_media(services: Services, msg: InboundMessage) -> list[dict[str, Any]]:
    """Download the message's attachments (worker side, after the ack) into the media dir."""
    records: list[dict[str, Any]] = []
    channel = services.channels.get(msg.channel)
    media_dir = services.settings.resolved_media_dir()
    for index, att in enumerate(msg.attachments):
        if att.url.startswith("/media/"):  # already stored by the web chat upload
            records.append(attachment_record(att, att.url.removeprefix("/media/")))
            continue
        if channel is None:
            records.append(attachment_record(att, None, "channel disabled"))
            continue
        try:
            data, mime = await channel.fetch_media(att, services.settings.max_media_bytes)
        except Exception as exc:  # kept on the report with its error; the operator sees it
            log.warning("media download failed", extra={"channel": msg.channel, "why": str(exc)})
            records.append(attachment_record(att, None, str(exc)[:200]))
            continue
        mime = (mime or att.mime or "").split(";")[0].strip().lower() or None
        if not media_type_allowed(mime):
            # Citizens send photos, voice notes, videos and documents; anything else (HTML,
            # executables, archives) is not stored.
            records.append(attachment_record(att, None, f"type not accepted: {mime}"))
            continue
        ext = mimetypes.guess_extension(mime or "") or Path(att.name or "").suffix or ".bin"
        digest = hashlib.sha256(f"{msg.channel}:{msg.external_id}:{index}".encode()).hexdigest()
        rel = Path(msg.channel) / digest[:2] / f"{digest[:24]}{ext}"
        path = media_dir / rel
        await asyncio.to_thread(_write_file, path, data)
        record = attachment_record(att, str(rel))
        record["mime"] = mime
        record["size"] = len(data)
        records.append(record)
    return records


ALLOWED_MEDIA_PREFIXES = ("image/", "audio/", "video/")
ALLOWED_MEDIA_TYPES = {"application/pdf", "application/ogg", "application/octet-stream"}


def media_type_allowed(mime: str | None) -> bool:
    """Photos, audio, video and PDF documents; `None` (provider gave no type) is kept."""
    if mime is None:
        return True
    if mime in ("image/svg+xml",):
        return False  # SVG is a document that can carry script
    return mime.startswith(ALLOWED_MEDIA_PREFIXES) or mime in ALLOWED_MEDIA_TYPES


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def transcribe(
    services: Services, msg: InboundMessage, media: list[dict[str, Any]]
) -> tuple[str | None, float | None, list[str]]:
    """Transcribe audio attachments; returns (text, confidence, flags)."""
    audio = [m for m in media if m.get("kind") == "audio" and m.get("path")]
    if not audio:
        silent = msg.channel == "voice" and bool(msg.raw.get("silent"))
        return (None, None, ["silent"] if silent else [])
    if msg.channel == "voice" and msg.raw.get("transcribed"):
        # A live media stream was transcribed while the caller spoke.
        silent = not msg.text or bool(msg.raw.get("silent"))
        return (msg.text, msg.raw.get("confidence"), ["silent"] if silent else [])
    speech = services.speech
    engine = "recording"
    if speech is None or not speech.available_for(engine):
        return (None, None, ["transcript_pending"])
    texts: list[str] = []
    confidences: list[float] = []
    for item in audio:
        data = (services.settings.resolved_media_dir() / item["path"]).read_bytes()
        try:
            result = await speech.transcribe_flow(data, engine)
        except Exception as exc:
            log.warning("transcription failed", extra={"why": str(exc)[:200]})
            return (None, None, ["transcript_failed"])
        item["transcript"] = result.text
        item["duration_s"] = round(result.duration_s, 2)
        if result.text:
            texts.append(result.text)
        if result.confidence is not None:
            confidences.append(result.confidence)
    flags = [] if texts else ["silent"]
    conf = sum(confidences) / len(confidences) if confidences else None
    return ("\n".join(texts) if texts else "", conf, flags)


async def process_event(services: Services, dialog: Dialog, event: InboundEvent) -> None:
    """Run one event through the pipeline and commit everything it changed at once."""
    msg = message_from_dict(event.message)
    media = await fetch_media(services, msg) if msg.attachments else []
    transcript, confidence, flags = await transcribe(services, msg, media)
    if msg.channel == "voice":
        msg = replace(msg, text="")  # what a caller said is a transcript, not typed text
    async with maybe(services.write_gate, urgent=False), services.sessions() as session:
        citizen = await repo.resolve_citizen(
            session, msg.sender, msg.channel, display_name=msg.sender_name,
            phone=msg.contact_phone or _phone_of(msg.sender), seen_at=msg.received_at,
        )
        if msg.channel in WINDOW_CHANNELS:  # only their replies are ever held
            await release_held(services, session, msg.sender)
        outcome = await dialog.handle(
            session, msg, citizen, extra_attachments=media, transcript=transcript,
            transcript_confidence=confidence, flags=flags,
        )
        report = outcome.report
        for n, reply in enumerate(outcome.replies):
            await reports.queue_message(
                session, services, channel=msg.channel, recipient=msg.sender, text=reply.text,
                buttons=reply.buttons, report_id=report.id if report else None,
                dedup_key=f"reply:{event.id}:{n}", inbound_at=msg.received_at,
                # The replies commit with the event's "done" in one transaction, so they are
                # never queued twice; the unique dedup key still guards it.
                check_duplicate=False,
            )
        status = EVENT_IGNORED if outcome.ignored and report is None else EVENT_DONE
        await repo.finish_event(session, event.id or 0, status, report.id if report else None)
        await session.commit()
    await answer_button(services, msg)


async def answer_button(services: Services, msg: InboundMessage) -> None:
    """Stop the spinner on a pressed Telegram inline button (best effort, after commit)."""
    meta = msg.raw.get("paht") if isinstance(msg.raw, dict) else None
    callback_id = meta.get("callback_query_id") if isinstance(meta, dict) else None
    answer = getattr(services.channels.get(msg.channel), "answer_callback", None)
    if callback_id and answer is not None:
        try:
            await answer(callback_id)
        except Exception as exc:  # an expired query is harmless
            log.info("callback answer failed", extra={"why": str(exc)[:200]})


def _phone_of(urn: str) -> str | None:
    return urn[4:] if urn.startswith("tel:") else None


class Worker:
    """Claims due events and processes them, several at a time."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.dialog = Dialog(services)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:x}"
        self.lease = timedelta(seconds=services.settings.worker_lease_seconds)
        # One sender's messages are handled in order: a lock per sender.
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set."""
        poll = self.s.settings.worker_poll_seconds
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("worker loop error")
                handled = 0
            if handled:
                continue
            self.s.worker_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.s.worker_wake.wait(), timeout=poll)

    async def run_once(self) -> int:
        """Claim one batch and process it; returns how many events were handled."""
        limit = max(1, self.s.settings.worker_concurrency) * 4
        async with maybe(self.s.write_gate, urgent=False), self.s.sessions() as session:
            events = await repo.claim_events(session, self.name, limit, self.lease)
        if not events:
            return 0
        groups: dict[str, list[InboundEvent]] = {}
        for event in events:
            groups.setdefault(event.sender, []).append(event)
        sem = asyncio.Semaphore(max(1, self.s.settings.worker_concurrency))

        async def run_group(items: list[InboundEvent]) -> None:
            async with sem:
                for item in items:
                    await self._one(item)

        await asyncio.gather(*(run_group(g) for g in groups.values()))
        return len(events)

    async def _one(self, event: InboundEvent) -> None:
        started = time.perf_counter()
        lock = self._locks.setdefault(event.sender, asyncio.Lock())
        async with lock:
            try:
                await process_event(self.s, self.dialog, event)
            except Exception as exc:
                self.s.metrics.inc("paht_events_failed_total", channel=event.channel)
                async with self.s.sessions() as session:
                    status = await repo.fail_event(
                        session, event.id or 0, f"{type(exc).__name__}: {exc}",
                        event.attempts, self.s.settings.worker_max_attempts,
                    )
                log.exception(
                    "pipeline failed",
                    extra={"event_id": event.id, "sender": mask_urn(event.sender),
                           "status": status},
                )
                return
        if len(self._locks) > 10000:
            self._locks.clear()
        lag = (utcnow() - event.accepted_at).total_seconds()
        self.s.metrics.observe("paht_pipeline_seconds", max(lag, 0.0), channel=event.channel)
        self.s.metrics.observe(
            "paht_stage_seconds", time.perf_counter() - started, stage="process"
        )
