"""Pipeline stage before the database: download a message's media and transcribe its audio.

Runs outside any transaction (network and CPU-heavy work must not hold a database writer);
what it produces is attached to the report in the event's transaction afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channels.base import Attachment, InboundMessage
from gateway.services import Services

log = logging.getLogger("paht.media")

ALLOWED_MEDIA_PREFIXES = ("image/", "audio/", "video/")
ALLOWED_MEDIA_TYPES = {"application/pdf", "application/ogg", "application/octet-stream"}


@dataclass
class Prepared:
    """A message with its media downloaded and its audio transcribed."""

    msg: InboundMessage
    media: list[dict[str, Any]] = field(default_factory=list)
    transcript: str | None = None
    confidence: float | None = None
    flags: list[str] = field(default_factory=list)


def attachment_record(att: Attachment, local_path: str | None, error: str | None = None) -> dict:
    """How an attachment is kept on the report."""
    record: dict[str, Any] = {"kind": att.kind, "url": att.url, "mime": att.mime, "name": att.name}
    if local_path:
        record["path"] = local_path
    if error:
        record["error"] = error
    return record


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


async def fetch_media(services: Services, msg: InboundMessage) -> list[dict[str, Any]]:
    """Download the message's attachments (worker side, after the ack) into the media dir."""
    records: list[dict[str, Any]] = []
    channel = services.channels.media.get(msg.channel)
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
        await asyncio.to_thread(_write_file, media_dir / rel, data)
        record = attachment_record(att, str(rel))
        record["mime"] = mime
        record["size"] = len(data)
        records.append(record)
    return records


async def transcribe(
    services: Services, msg: InboundMessage, media: list[dict[str, Any]]
) -> tuple[str | None, float | None, list[str]]:
    """Transcribe audio attachments; returns (text, confidence, flags)."""
    audio = [m for m in media if m.get("kind") == "audio" and m.get("path")]
    if not audio:
        silent = services.channels.traits(msg.channel).spoken and msg.meta.silent
        return (None, None, ["silent"] if silent else [])
    if msg.meta.transcribed:
        # A live media stream was transcribed while the caller spoke.
        silent = not msg.text or msg.meta.silent
        return (msg.text, msg.meta.confidence, ["silent"] if silent else [])
    speech = services.speech
    engine = "recording"
    if speech is None or not speech.available_for(engine):
        return (None, None, ["transcript_pending"])
    texts: list[str] = []
    confidences: list[float] = []
    for item in audio:
        data = await asyncio.to_thread(
            (services.settings.resolved_media_dir() / item["path"]).read_bytes)
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


async def prepare(services: Services, msg: InboundMessage) -> Prepared:
    """Fetch media and transcribe audio for one message (no database access)."""
    media = await fetch_media(services, msg) if msg.attachments else []
    if not media and not services.channels.traits(msg.channel).spoken:
        return Prepared(msg)
    transcript, confidence, flags = await transcribe(services, msg, media)
    return Prepared(msg, media, transcript, confidence, flags)
