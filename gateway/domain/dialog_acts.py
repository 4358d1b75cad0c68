"""The dialog's building blocks and the acts that are not the report itself: emergencies,
status queries, cancel, corrections, splitting two problems, ratings and shared contacts.

`gateway.domain.dialog.Dialog` puts them together; state lives in the `conversation` table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import InboundMessage
from gateway.domain import reports
from gateway.domain.intents import Intent, Intents
from gateway.domain.lifecycle import GATEWAY
from gateway.domain.replies import Outcome, Replies, Reply
from gateway.services import Services
from nlp.normalize import Normalizer
from store.models import Citizen, Conversation, Report, ReportStatus, utcnow
from store.repos import alerts as alerts_repo
from store.repos import citizens as citizens_repo
from store.repos import conversations as conversations_repo

EMERGENCY_STATE = "emergency_place"  # an urgent report was filed; its place is asked for


@lru_cache(maxsize=8)
def _intents(directory: Path | None, normalizer: Normalizer | None) -> Intents:
    return Intents.load(normalizer, directory)


class DialogCore:
    """Shared state and helpers of the dialog, and its acts."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.t = services.texts
        self.window = timedelta(minutes=services.settings.conversation_window_minutes)
        self.life = services.lifecycle
        self.r = Replies(services.texts, services.classifier, services.channels)
        clf = services.classifier
        self.intents = _intents(services.settings.config_dir,
                                clf.normalizer if clf is not None else None)

    # -- conversation and draft -----------------------------------------------------------

    async def _conversation(
        self, session: AsyncSession, msg: InboundMessage, citizen: Citizen,
        known: citizens_repo.Known | None = None,
    ) -> Conversation:
        if known is not None and msg.sender in known.conversations:
            conv = known.conversations[msg.sender]  # read (and locked) for the whole batch
        else:
            conv = await conversations_repo.conversation_of(session, msg.sender, lock=True)
        if conv is None:
            conv = Conversation(sender=msg.sender, channel=msg.channel, citizen_id=citizen.id or 0)
            session.add(conv)
            if known is None:
                await session.flush()
            else:  # the batch flushes it with the draft; the next message finds it here
                known.conversations[msg.sender] = conv
        elif conv.citizen_id != citizen.id:
            conv.citizen_id = citizen.id or 0
            session.add(conv)
        return conv

    async def _draft(self, session: AsyncSession, conv: Conversation) -> Report | None:
        """The conversation's draft, whether or not its window has closed."""
        if conv.report_id is None or conv.state == "rating":
            return None
        report = await session.get(Report, conv.report_id)
        if report is None or report.status != ReportStatus.DRAFT:
            return None
        return report

    def _expired(self, conv: Conversation) -> bool:
        return conv.expires_at is not None and conv.expires_at < utcnow()

    async def _new_draft(
        self, session: AsyncSession, msg: InboundMessage, citizen: Citizen, conv: Conversation
    ) -> Report:
        draft = Report(channel=msg.channel, citizen_id=citizen.id or 0, sender=msg.sender,
                       status=ReportStatus.DRAFT)
        session.add(draft)
        # No flush yet: the draft is inserted once, with its text, where its id is needed
        # (`Dialog._keep_draft`), and the conversation learns the id then.
        conv.state = "collecting"
        conv.asked = []
        conv.memo = {}
        return draft

    def _reset(self, session: AsyncSession, conv: Conversation, state: str = "idle") -> None:
        conv.state, conv.report_id, conv.asked, conv.expires_at = state, None, [], None
        conv.memo = {}
        session.add(conv)

    async def _keep_draft(self, session: AsyncSession, conv: Conversation,
                          draft: Report) -> None:
        """Give a new draft its id (flushing only the draft) and link the conversation to it."""
        session.add(draft)
        if draft.id is None:
            # In a worker batch everything else is flushed at commit, one multi-row INSERT
            # per table: a full flush here would send each event's rows one by one.
            await session.flush([draft])
        conv.report_id = draft.id
        session.add(conv)

    def _touch(self, session: AsyncSession, conv: Conversation) -> None:
        conv.last_activity_at = utcnow()
        conv.expires_at = conv.last_activity_at + self.window
        session.add(conv)

    def _has_place(self, draft: Report) -> bool:
        return draft.lat is not None or bool(draft.address)

    def _place_from(self, msg: InboundMessage, text: str) -> str | None:
        if not text or self.s.classifier is None:
            return None
        return self.s.classifier.classify(text).address  # the message text: classified once

    async def _submit(self, session: AsyncSession, conv: Conversation, draft: Report,
                      prefix: list[Reply], lang: str) -> Outcome:
        self._mark(draft)
        await reports.submit(session, self.s, draft)
        self._reset(session, conv)
        return Outcome([*prefix, Reply(self.r.submitted(draft, lang))], draft)

    def _mark(self, draft: Report) -> None:
        """Flags the review gate reads: no place given, a photo without words."""
        flags = set(draft.flags)
        if not self._has_place(draft):
            flags.add("no_place")
        else:
            flags.discard("no_place")
        if draft.attachments and not reports.report_text(draft).strip():
            flags.add("photo_only")
        else:
            flags.discard("photo_only")
        draft.flags = sorted(flags)

    # -- emergencies ----------------------------------------------------------------------

    async def _emergency(self, session: AsyncSession, msg: InboundMessage, conv: Conversation,
                         citizen: Citizen, intent: Intent, draft: Report | None,
                         absorb: Callable[..., None], lang: str) -> Outcome:
        """Advice first, the report submitted as urgent at once, the duty officer alerted."""
        hazard = intent.hazard
        assert hazard is not None
        if conv.state == EMERGENCY_STATE and conv.memo.get("emergency_report"):
            report = await session.get(Report, int(conv.memo["emergency_report"]))
            if report is not None and report.status != ReportStatus.DRAFT:
                return await self._emergency_more(session, msg, conv, report, lang, advice=True)
        if draft is None:
            draft = await self._new_draft(session, msg, citizen, conv)
        absorb(draft)
        draft.urgent = True
        draft.flags = sorted({*draft.flags, "emergency", f"hazard:{hazard.name}"})
        self._mark(draft)
        await reports.submit(session, self.s, draft)
        alerts_repo.add_alert(session, draft.id or 0, hazard.name, hazard.numbers, msg.channel)
        self.s.metrics.inc("paht_emergencies_total", hazard=hazard.name)
        numbers = self.intents.emergencies.describe(hazard.numbers, lang)
        advice = self.r.text(msg.channel, "emergency", lang, numbers=numbers, code=draft.code) \
            if self.r.sms_like(msg.channel) else \
            self.t.get("emergency.advice", lang, numbers=numbers, code=draft.code)
        replies = [Reply(advice)]
        self._reset(session, conv)
        if self._has_place(draft):
            replies.append(Reply(self.t.get("emergency.place_known", lang,
                                            place=self.r.place(draft, lang))))
        elif not self.s.channels.traits(msg.channel).spoken:
            conv.state = EMERGENCY_STATE
            conv.memo = {"emergency_report": draft.id}
            conv.expires_at = utcnow() + self.window
            replies.append(Reply(self.t.get("emergency.ask_place", lang)))
        return Outcome(replies, draft)

    async def _emergency_more(self, session: AsyncSession, msg: InboundMessage,
                              conv: Conversation, report: Report, lang: str,
                              advice: bool = False) -> Outcome:
        """A message after an emergency report: its place, or more about what happens."""
        text = msg.text.strip()
        place = self._place_from(msg, text)
        if text:
            report.text = f"{report.text}\n{text}" if report.text else text
        if msg.location is not None:
            report.lat, report.lon = msg.location.lat, msg.location.lon
            report.address = msg.location.address or report.address
        elif place:
            report.address = place
        report.updated_at = utcnow()
        session.add(report)
        replies = []
        if advice:
            hazard_numbers = next((a.numbers for a in await alerts_repo.alerts_of(
                session, report.id or 0)), [])
            numbers = self.intents.emergencies.describe(tuple(hazard_numbers), lang)
            replies.append(Reply(self.t.get("emergency.advice", lang, numbers=numbers,
                                            code=report.code)))
        if self._has_place(report):
            report.flags = [f for f in report.flags if f != "no_place"]
            self._reset(session, conv)
            replies.append(Reply(self.t.get("dialog.place_updated", lang, code=report.code)))
        else:
            replies.append(Reply(self.t.get("emergency.ask_place", lang)))
        return Outcome(replies, report)

    # -- status, cancel, rating, contact ----------------------------------------------------

    async def _status(self, session: AsyncSession, citizen: Citizen, intent: Intent,
                      lang: str) -> Outcome:
        await session.flush()  # a status look-up must see this batch's reports too
        if intent.code is not None:
            report = await reports.find_by_code(session, intent.code)
            if report is None:
                text = self.t.get("dialog.status_not_found", lang, code=intent.code)
                return Outcome([Reply(text)], ignored=True)
            return Outcome([Reply(await self.life.status_line(session, report))], ignored=True)
        own = await alerts_repo.recent_reports_of(session, citizen.id or 0)
        if not own:
            return Outcome([Reply(self.t.get("dialog.status_none", lang))], ignored=True)
        lines = [f"• {await self.life.status_line(session, r)}" for r in own]
        text = self.t.get("dialog.status_recent", lang, lines="\n".join(lines))
        return Outcome([Reply(text)], ignored=True)

    async def _cancel(self, session: AsyncSession, conv: Conversation, draft: Report | None,
                      lang: str) -> Outcome:
        if draft is None:
            self._reset(session, conv) if conv.state != "rating" else None
            return Outcome([Reply(self.t.get("dialog.nothing_to_cancel", lang))], ignored=True)
        await self.life.cancel_draft(session, draft, "cancelled_by_citizen")
        self._reset(session, conv)
        return Outcome([Reply(self.t.get("dialog.cancelled", lang))], draft)

    async def _rate(self, session: AsyncSession, conv: Conversation, value: int) -> Outcome:
        if not 1 <= value <= 5 or conv.report_id is None:
            return Outcome(ignored=True)
        report = await session.get(Report, conv.report_id)
        if report is None:
            return Outcome(ignored=True)
        await self.life.rate(session, report, value)  # the centre gets the rating too
        conv.state, conv.report_id = "idle", None
        session.add(conv)
        return Outcome([Reply(self.t.get("notify.rated", conv.lang))], report)

    async def _contact(self, msg: InboundMessage, lang: str) -> Outcome:
        if not msg.contact_phone:
            return Outcome([Reply(self.t.get("dialog.phone_not_own", lang))], ignored=True)
        return Outcome([Reply(self.t.get("dialog.phone_saved", lang, phone=msg.contact_phone))],
                       ignored=True)

    # -- corrections and two problems -------------------------------------------------------

    def _correct(self, draft: Report, intent: Intent, msg: InboundMessage) -> bool:
        """Apply a correction to the draft; False when nothing could be applied."""
        new = (intent.new or "").strip()
        if not new:
            return False
        old = (intent.old or "").strip()
        if old:
            pattern = re.compile(re.escape(old), re.IGNORECASE)
            hit = False
            if draft.address and pattern.search(draft.address):
                draft.address = pattern.sub(new, draft.address)
                draft.lat = draft.lon = None
                hit = True
            if pattern.search(draft.text):
                draft.text = pattern.sub(new, draft.text)
                hit = True
            if hit:
                return True
        place = msg.location is None and self._place_from(msg, msg.text.strip())
        if place:
            draft.address, draft.lat, draft.lon = place, None, None
            return True
        if old:
            return False
        lines = draft.text.split("\n") if draft.text else []
        draft.text = "\n".join([*lines[:-1], new])  # "sửa lại: …" replaces the last words
        return True

    def _two_problems(self, text: str) -> tuple[list[str], list[str]] | None:
        """Two problems in one message: their texts and sectors, or None."""
        clf = self.s.classifier
        if clf is None or len(text) < 30:
            return None
        result = clf.classify(text)
        firsts: dict[str, int] = {}
        for m in result.matches:
            if m.sector != "khac" and m.role == "object" and m.weight >= 2.0:
                firsts.setdefault(m.sector, m.start)
        if len(firsts) < 2 or result.runner_up not in firsts or result.sector not in firsts:
            return None
        a, b = sorted((result.sector, result.runner_up), key=lambda s: firsts[s])
        end_a = max((m.end for m in result.matches if m.sector == a and m.start < firsts[b]),
                    default=None)
        if end_a is None:  # both sectors rest on the same words: one problem, not two
            return None
        gap = text[end_a:firsts[b]]
        cut = _SPLIT_AT.search(gap) if firsts[b] > end_a else None
        if cut is None:
            return None
        at = end_a + cut.start()
        first = text[:at].strip(" ,;.")
        second = text[end_a + cut.end():].strip(" ,;.")
        if len(first) < 8 or len(second) < 8:
            return None
        return [first, second[:1].upper() + second[1:]], [a, b]


# Where one problem ends and the next begins: a sentence end, a new line, "và", "còn",
# "ngoài ra", "thêm nữa", "với lại" (and their diacritic-free forms).
_SPLIT_AT = re.compile(
    r"(?:[.;!?\n]\s*|,?\s+(?:và|va|còn|con|ngoài ra|ngoai ra|thêm nữa|them nua|với lại|"
    r"voi lai|đồng thời|dong thoi|and|also)\s+)(?:(?:còn|con|thêm nữa|ngoài ra)\s+)?",
    re.IGNORECASE)


async def cancel_quietly(session: AsyncSession, services: Services, draft: Report,
                         why: str) -> None:
    """Drop a draft that described no problem (no reply to the citizen)."""
    await services.lifecycle.cancel_draft(session, draft, why, GATEWAY)
