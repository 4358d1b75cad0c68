"""POST /webhooks/twilio/voice/flow: the hotline's in-call steps after the caller has spoken.

Every request is signed by Twilio (X-Twilio-Signature over PAHT_PUBLIC_BASE_URL + path +
query, 403 otherwise; 400 for a body that is not a form); the query strings of the URLs we
hand Twilio (step, recording, counters) are therefore covered by the signature. Steps:

- `start`    a key pressed during the greeting: 9 is the emergency key, anything else records.
- `hold`     the <Record action>: hold ("xin chờ", pause, redirect) until the recording's report
             is ready, at most PAHT_VOICE_HOLD_SECONDS, then read it back; not ready: the
             operator / call-back path (the recording is still worked; nothing is lost).
- `menu`     the read-back's keypad: 1 confirm, 2 sector menu, 3 speak again, 0 operator, 9.
- `sector`   the sector menu's keypad (1–8).
- `operator` <Dial> the duty desk in working hours, else a call-back request.
- `dialed`   how the <Dial> ended: not answered → call-back request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from channels.base import InboundMessage, MalformedError, MessageMeta, SignatureError, utcnow
from channels.twilio_common import TWIML_TYPE, require_form
from channels.voice import VoiceChannel, caller_sender
from channels.voice_menu import (
    FLOW_PATH,
    KEY_AGAIN,
    KEY_CONFIRM,
    KEY_EMERGENCY,
    KEY_OPERATOR,
    KEY_SECTOR,
    CallMenu,
)
from gateway.domain import hotline
from gateway.keys import INGESTOR, SERVICES
from gateway.services import Services
from gateway.web.ratelimit import LIMITS, client_ip
from gateway.web.webhooks import read_raw
from store.models import Report
from store.repos import calls as calls_repo

log = logging.getLogger("paht.voice_calls")
KEYPAD_NUMBERS = ("114", "115", "113")  # key 9: every emergency number, fire first


class Call:
    """One signed flow request: the step, the caller, the recording and the query state."""

    def __init__(self, services: Services, channel: VoiceChannel, menu: CallMenu,
                 params: dict[str, str], query: dict[str, str],
                 ingest: Callable[[list[InboundMessage]], Awaitable[Any]]) -> None:
        self.s = services
        self.ingest = ingest
        self.channel = channel
        self.menu = menu
        self.params = params
        self.query = query
        self.cfg = hotline.hotline_config(services.settings.config_dir)
        self.call_sid = params.get("CallSid", "")
        self.sender = caller_sender(params.get("From"), self.call_sid)
        self.digits = (params.get("Digits") or "").strip()
        self.rec = query.get("rec") or params.get("RecordingSid", "")
        # Stream mode has no recording id: the call's report is the newest stream event of this
        # caller since `since` (a timestamp the flow carries from step to step).
        self.since = self.q("since")

    def since_time(self) -> datetime | None:
        """When a streamed call's audio started (None for a recorded call)."""
        return datetime.fromtimestamp(self.since, UTC) if self.since and not self.rec else None

    def q(self, name: str, default: int = 0) -> int:
        """An integer of our own query string (signed, but be strict anyway)."""
        value = self.query.get(name, "")
        return int(value) if value.isdigit() else default

    def callback_url(self) -> str:
        """The recordingStatusCallback of a new <Record> in this call."""
        tel = self.sender if self.sender.startswith("tel:") else None
        return self.channel.recording_callback(tel)

    # -- steps ------------------------------------------------------------------------------

    async def start(self) -> str:
        """A key during the greeting: 9 is an emergency, others start the recording."""
        if self.digits == KEY_EMERGENCY:
            return await self.emergency()
        return self.menu.record_again(self.menu.url("hold"), self.callback_url(),
                                      key="record_prompt")

    async def hold(self) -> str:
        """Wait for the report of the call's recording (bounded), then read it back."""
        now = int(time.time())
        started = self.q("t", now)
        since = self.q("since")
        async with self.s.sessions() as db:
            state, report = await hotline.call_report(
                db, self.rec or None, self.sender,
                datetime.fromtimestamp(since, UTC) if since else None)
            if state == "ready" and report is not None:
                old = self.query.get("replaces", "")
                if old and old != self.rec:
                    _, first = await hotline.call_report(db, old, self.sender, None)
                    if first is not None:
                        await hotline.supersede(db, self.s, first, report)
                        await db.commit()
                return await self.readback(db, report)
        if state == "waiting" and now - started < self.s.settings.voice_hold_seconds:
            nxt = self.menu.url("hold", rec=self.rec, t=started, since=since,
                                replaces=self.query.get("replaces", ""))
            return self.menu.hold(nxt, self.cfg.pause_seconds, first=started == now)
        log.info("hotline read-back not ready in time", extra={"state": state})
        self.s.metrics.inc("paht_hotline_total", outcome="not_ready")
        return await self.operator(reason="not_ready")

    async def readback(self, db: Any, report: Report, repeat: int = 0) -> str:
        """What was understood, the emergency advice first if there is one, the options."""
        numbers = await hotline.emergency_numbers(db, report)
        advice = self.advice(numbers) if numbers and not repeat else None
        self.s.metrics.inc("paht_hotline_total", outcome="readback")
        if repeat:
            advice = self.menu.t["no_input"]
        return self.menu.readback(
            hotline.spoken_sector(self.s, self.cfg, report.sector), hotline.spoken_place(report),
            self.menu.url("menu", rec=self.rec, r=repeat, since=self.since or ""),
            emergency=advice)

    async def on_menu(self) -> str:
        """The read-back's keypad."""
        async with self.s.sessions() as db:
            _, report = await hotline.call_report(db, self.rec or None, self.sender,
                                                    self.since_time())
            if report is None:
                return await self.operator(reason="not_ready")
            if self.digits == KEY_CONFIRM and hotline.spoken_sector(
                    self.s, self.cfg, report.sector) is not None:
                await hotline.caller_confirms(db, self.s, report)
                await db.commit()
                self.s.metrics.inc("paht_hotline_total", outcome="confirmed")
                return self.menu.confirmed()
            if self.digits == KEY_SECTOR:
                return self.sector_menu()
            if self.digits == KEY_AGAIN:
                action = self.menu.url("hold", replaces=self.rec)
                return self.menu.record_again(action, self.callback_url())
            if self.digits == KEY_OPERATOR:
                return await self.operator(reason="asked", report=report)
            if self.digits == KEY_EMERGENCY:
                return await self.emergency()
            repeat = self.q("r") + 1
            if repeat > self.cfg.menu_repeats:
                return await self.operator(reason="no_input", report=report)
            return await self.readback(db, report, repeat)

    def sector_menu(self, repeat: int = 0) -> str:
        """"Bấm 1: …" for the province's sectors."""
        names = [name for _, name in hotline.menu_names(self.s, self.cfg)]
        return self.menu.sector_menu(names, self.menu.url("sector", rec=self.rec, r=repeat,
                                                       since=self.since or ""),
                                     repeat=repeat > 0)

    async def on_sector(self) -> str:
        """The sector menu's keypad: the caller's sector, stored and confirmed."""
        choices = hotline.menu_names(self.s, self.cfg)
        index = int(self.digits) - 1 if self.digits.isdigit() else -1
        if self.digits == KEY_EMERGENCY:
            return await self.emergency()
        if not 0 <= index < len(choices):
            repeat = self.q("r") + 1
            if repeat > self.cfg.menu_repeats:
                return await self.operator(reason="no_input")
            return self.sector_menu(repeat)
        code, name = choices[index]
        async with self.s.sessions() as db:
            _, report = await hotline.call_report(db, self.rec or None, self.sender,
                                                    self.since_time())
            if report is None:
                return await self.operator(reason="not_ready")
            await hotline.caller_confirms(db, self.s, report, sector=code)
            await db.commit()
        self.s.metrics.inc("paht_hotline_total", outcome="sector_chosen")
        return self.menu.confirmed(name)

    async def operator(self, reason: str, report: Report | None = None,
                       prefix: str | None = None) -> str:
        """The duty desk in working hours (<Dial>), else a call-back request."""
        number = hotline.operator_number(self.s, self.cfg)
        if number and reason != "dial_failed":
            self.s.metrics.inc("paht_hotline_total", outcome="dialed")
            return self.menu.dial(number, self.cfg.dial_timeout,
                                  self.menu.url("dialed", rec=self.rec, since=self.since or ""))
        return await self.callback(reason, report, prefix)

    async def callback(self, reason: str, report: Report | None = None,
                       prefix: str | None = None) -> str:
        """Leave a call-back request for the operators and say so."""
        async with self.s.sessions() as db:
            if report is None and (self.rec or self.since):
                _, report = await hotline.call_report(db, self.rec or None, self.sender,
                                                      self.since_time())
            await calls_repo.request_callback(db, self.call_sid or f"anon:{self.rec}",
                                              self.sender, reason,
                                              report.id if report is not None else None)
        self.s.metrics.inc("paht_hotline_total", outcome="callback")
        key = "not_ready" if reason == "not_ready" else "callback"
        number = self.s.settings.voice_operator_number or self.cfg.operator_number
        if key == "callback" and number:
            key = "callback_after_hours"  # a desk exists: it is only closed now
        return self.menu.callback(key, prefix)

    async def dialed(self) -> str:
        """The <Dial> ended: a call that was not answered leaves a call-back request."""
        status = (self.params.get("DialCallStatus") or "").lower()
        if status == "completed":
            return self.menu.goodbye()
        return await self.callback("no_answer")

    async def emergency(self) -> str:
        """Key 9: the 114/115/113 advice, a duty alert (through the pipeline), the desk."""
        message = InboundMessage(
            channel="voice", external_id=f"keypad9:{self.call_sid or self.rec}",
            sender=self.sender, text=self.s.texts.get("voice_menu.emergency_text"),
            received_at=utcnow(),
            raw={"CallSid": self.call_sid, "Digits": self.digits, "source": "keypad"},
            meta=MessageMeta(transcribed=True, confidence=1.0),
        )
        await self.ingest([message])
        self.s.metrics.inc("paht_hotline_total", outcome="emergency")
        advice = self.advice(KEYPAD_NUMBERS)
        number = hotline.operator_number(self.s, self.cfg)
        if number:
            return self.menu.emergency(advice, self.menu.url("operator", rec=self.rec), None)
        return self.menu.emergency(advice, self.menu.url("hold"), self.callback_url())

    def advice(self, numbers: tuple[str, ...]) -> str:
        """The [voice] emergency text with the numbers read out."""
        table = _numbers_table(self.s)
        described = ", ".join(table.get(n, n) for n in numbers)
        return self.channel.text("emergency").format(numbers=described)


def _numbers_table(services: Services) -> dict[str, str]:
    import tomllib

    from gateway.domain.texts import config_dir

    path = config_dir(services.settings.config_dir) / "emergency.toml"
    with path.open("rb") as fh:
        return {str(k): str(v) for k, v in tomllib.load(fh).get("numbers", {}).items()}


STEPS = {"start", "hold", "menu", "sector", "operator", "dialed", "readback"}


async def flow(request: web.Request) -> web.StreamResponse:
    """One step of the in-call flow (signed like every Twilio webhook)."""
    app = request.app
    services = app[SERVICES]
    channel = services.channels.get("voice")
    if not isinstance(channel, VoiceChannel) or channel.menu is None:
        raise web.HTTPNotFound(text="channel voice is not configured")
    limits = app.get(LIMITS)
    if limits is not None:
        ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"),
                       limits.trusted_proxies)
        outcome, retry_after = limits.check_ip(ip)
        if outcome == "limited":
            return web.Response(status=429, text="too many requests",
                                headers={"Retry-After": str(retry_after)})
    raw = await read_raw(request, channel.max_body_bytes)
    try:
        channel.verify(raw)
        params = require_form(raw)
    except SignatureError as exc:
        log.warning("flow signature rejected", extra={"why": str(exc)})
        return web.Response(status=exc.status, text="invalid signature")
    except MalformedError:
        return web.Response(status=400, text="malformed body")
    step = raw.query.get("step", "")
    if step not in STEPS:
        return web.Response(status=400, text="unknown step")
    call = Call(services, channel, channel.menu, dict(params), dict(raw.query),
                app[INGESTOR].accept)
    if step == "start":
        body = await call.start()
    elif step == "hold":
        body = await call.hold()
    elif step == "menu":
        body = await call.on_menu()
    elif step == "sector":
        body = await call.on_sector()
    elif step == "operator":
        body = await call.operator(reason="emergency")
    elif step == "dialed":
        body = await call.dialed()
    else:
        body = call.sector_menu()
    return web.Response(status=200, body=body.encode("utf-8"), content_type=TWIML_TYPE)


async def _enable_menu(app: web.Application) -> None:
    """At start-up (services exist by now): give the voice channel its [voice_menu] texts."""
    services = app.get(SERVICES)
    channel = services.channels.get("voice") if services is not None else None
    if isinstance(channel, VoiceChannel) and services is not None:
        menu_texts = services.texts.data.get("voice_menu", {})
        if services.settings.voice_readback and menu_texts:
            channel.set_menu_texts(menu_texts)


def setup_voice_calls(app: web.Application) -> None:
    """Add POST /webhooks/twilio/voice/flow (both voice modes)."""
    app.router.add_post(FLOW_PATH, flow)
    app.on_startup.append(_enable_menu)
