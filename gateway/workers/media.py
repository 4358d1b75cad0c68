"""Pipeline stage before the database: download a message's media and transcribe its audio.

Runs outside any transaction (network and CPU-heavy work must not hold a database writer);
what it produces is attached to the report in the event's transaction afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channels.base import Attachment, InboundMessage
from gateway.services import Services
from gateway.web.media_access import stored_path_of

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
    for att in msg.attachments:
        if att.url.startswith("/media/"):  # stored by the web chat upload
            stored = stored_path_of(att.url, services.settings.session_secret)
            if stored is None or not stored.startswith("web/"):
                records.append(attachment_record(att, None, "not an upload of this gateway"))
            else:
                records.append(attachment_record(
                    Attachment(kind=att.kind, url="/media/" + stored, mime=att.mime,
                               name=att.name), stored))
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
        # The extension decides the Content-Type we serve: from the checked type, never the
        # sender's file name (a ".html" name must not become a page).
        ext = mimetypes.guess_extension(mime or "") or ".bin"
        # Random, not derived from the message: provider ids are sequential and guessable.
        name = secrets.token_hex(16)
        rel = Path(msg.channel) / name[:2] / f"{name}{ext}"
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
        if msg.meta.transcribed and msg.text and msg.raw.get("source") == "keypad":
            # The hotline's emergency key: its words are ours, said for the caller.
            return (msg.text, msg.meta.confidence, ["keypad_emergency"])
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
    settings = services.settings
    limit = float(settings.voice_max_seconds)
    words = vocabulary_of(services) if settings.stt_vocabulary else []
    trimmed = False
    for item in audio:
        data = await asyncio.to_thread((settings.resolved_media_dir() / item["path"]).read_bytes)
        try:
            # The pool refuses a file declaring far more than the limit before decoding and
            # trims the rest at the limit; a transcription that hangs is abandoned (its worker
            # finishes on its own), so the slow lane never holds a citizen's events for ever.
            result = await asyncio.wait_for(
                speech.transcribe_flow(data, engine, max_seconds=limit, vocabulary=words),
                timeout=settings.stt_timeout_seconds)
        except TimeoutError:
            log.warning("transcription timed out",
                        extra={"timeout_s": settings.stt_timeout_seconds})
            return (None, None, ["transcript_timeout"])
        except Exception as exc:
            log.warning("transcription failed", extra={"why": str(exc)[:200]})
            return (None, None, ["transcript_failed"])
        item["transcript"] = result.text
        item["duration_s"] = round(result.duration_s, 2)
        trimmed = trimmed or result.duration_s >= limit - 0.05
        if result.text:
            texts.append(result.text)
        if result.confidence is not None:
            confidences.append(result.confidence)
    flags = ([] if texts else ["silent"]) + (["audio_trimmed"] if trimmed else [])
    conf = sum(confidences) / len(confidences) if confidences else None
    return ("\n".join(texts) if texts else "", conf, flags)


def vocabulary_of(services: Services) -> list[str]:
    """The domain words the speech engines are primed with (sectors, config/voice.toml)."""
    from gateway.domain.hotline import vocabulary

    return vocabulary(services)


async def prepare(services: Services, msg: InboundMessage) -> Prepared:
    """Fetch media and transcribe audio for one message (no database access)."""
    media = await fetch_media(services, msg) if msg.attachments else []
    if not media and not services.channels.traits(msg.channel).spoken:
        return Prepared(msg)
    transcript, confidence, flags = await transcribe(services, msg, media)
    return Prepared(msg, media, transcript, confidence, flags)
