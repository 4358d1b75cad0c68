"""The one dialog every channel shares: join messages into a draft, ask for what is missing
once, summarise, submit on confirmation (or when the window closes), answer commands.

State lives in the `conversation` table, so it survives restarts and works with several
gateway processes (the worker processes one event at a time per row lock/claim).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Button, InboundMessage
from gateway.domain import reports
from gateway.domain.lifecycle import GATEWAY
from gateway.domain.replies import CANCEL, CODE_RE, CONFIRM, Outcome, Replies, Reply
from gateway.domain.texts import fold
from gateway.services import Services
from store.models import Citizen, Conversation, Report, ReportStatus, utcnow
from store.repos import citizens as citizens_repo
from store.repos import conversations as conversations_repo

log = logging.getLogger("paht.dialog")

Handler = Callable[[AsyncSession, InboundMessage, "Conversation", str], Awaitable["Outcome"]]


class Dialog:
    """Handles one inbound message inside the caller's transaction."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.t = services.texts
        self.window = timedelta(minutes=services.settings.conversation_window_minutes)
        self.life = services.lifecycle
        self.r = Replies(services.texts, services.classifier, services.channels)

    # -- entry point ---------------------------------------------------------------------

    async def handle(
        self, session: AsyncSession, msg: InboundMessage, citizen: Citizen,
        extra_attachments: list[dict] | None = None, transcript: str | None = None,
        transcript_confidence: float | None = None, flags: list[str] | None = None,
        known: citizens_repo.Known | None = None,
    ) -> Outcome:
        """Decide what `msg` means and update the draft; returns the replies to send."""
        conv = await self._conversation(session, msg, citizen, known)
        folded = fold(msg.text)
        if msg.kind in ("follow",):
            return Outcome([Reply(self.t.get("dialog.welcome"))])
        if msg.kind in ("unfollow", "status"):
            return Outcome(ignored=True)
        if msg.kind == "contact":
            return await self._contact(session, msg, citizen)
        command = self._command(msg, folded)
        if command is not None:
            await session.flush()  # a status look-up must see this batch's reports too
            return await command(session, msg, conv, folded)
        draft = await self._open_draft(session, conv)
        if conv.state == "rating" and folded in {"1", "2", "3", "4", "5"}:
            return await self._rate(session, conv, int(folded))
        has_content = bool(msg.text.strip() or msg.attachments or msg.location or transcript)
        if draft is None and not has_content:
            return Outcome([Reply(self.t.get("dialog.sticker"))], ignored=True)
        spoken = self.s.channels.traits(msg.channel).spoken
        if draft is None and not spoken and self._small_talk(folded, msg.text):
            key = "dialog.thanks" if folded in self.t.words("thanks") else "dialog.greeting"
            return Outcome([Reply(self.t.get(key))], ignored=True)
        if draft is None:
            draft = await self._new_draft(session, msg, citizen, conv)
        had_place = self._has_place(draft)
        self._absorb(draft, msg, extra_attachments or [], transcript, transcript_confidence)
        if flags:
            draft.flags = sorted({*draft.flags, *flags})
        abusive = self._abusive(folded)
        if abusive and "abusive" not in draft.flags:
            draft.flags = [*draft.flags, "abusive"]
            citizen.abuse_flags += 1
            session.add(citizen)
        conv.last_activity_at = utcnow()
        conv.expires_at = conv.last_activity_at + self.window
        session.add(draft)
        session.add(conv)
        await session.flush()
        prefix = [Reply(self.t.get("dialog.abuse_warning"))] if abusive else []
        return await self._next_step(session, msg, conv, draft, prefix, had_place)

    # -- steps ---------------------------------------------------------------------------

    async def _next_step(
        self, session: AsyncSession, msg: InboundMessage, conv: Conversation, draft: Report,
        prefix: list[Reply], had_place: bool,
    ) -> Outcome:
        if self.s.channels.traits(msg.channel).spoken:  # a call: nothing to ask, submit it
            return await self._submit(session, conv, draft, prefix)
        has_place = self._has_place(draft)
        if not has_place and "place" not in conv.asked:
            conv.asked = [*conv.asked, "place"]
            conv.state = "collecting"
            session.add(conv)
            buttons = () if self.r.sms_like(msg.channel) else (
                Button(self.t.get("dialog.ask_place_button"), "location", "location"),)
            text = self.r.text(msg.channel, "ask_place")
            return Outcome([*prefix, Reply(text, buttons)], draft)
        if not self.s.channels.traits(msg.channel).conversational:
            # SMS: every message costs the citizen money — submit as soon as we have a place
            # or after one question.
            return await self._submit(session, conv, draft, prefix)
        place_arrived = has_place and not had_place
        if conv.state == "confirming" and not place_arrived:
            return Outcome([*prefix, Reply(self.t.get("dialog.added"), self.r.confirm_buttons())],
                           draft)
        if not has_place and not msg.text.strip():
            # A photo while we wait for the place: acknowledge it, the question stands.
            return Outcome([*prefix, Reply(self.t.get("dialog.added"))], draft)
        # The place arrived, or the citizen answered in words we could not place: summarise.
        conv.state = "confirming"
        session.add(conv)
        return Outcome([*prefix, Reply(self.r.summary(draft), self.r.confirm_buttons())], draft)

    async def _submit(
        self, session: AsyncSession, conv: Conversation, draft: Report, prefix: list[Reply]
    ) -> Outcome:
        await reports.submit(session, self.s, draft)
        conv.state = "idle"
        conv.report_id = None
        conv.asked = []
        conv.expires_at = None
        session.add(conv)
        return Outcome([*prefix, Reply(self.r.submitted(draft))], draft)

    async def close_expired(self, session: AsyncSession, conv: Conversation) -> Outcome:
        """Submit the draft of a conversation whose window has closed."""
        draft = await self._open_draft(session, conv, allow_expired=True)
        if draft is None or (not reports.report_text(draft) and not draft.attachments):
            conv.state, conv.report_id, conv.asked, conv.expires_at = "idle", None, [], None
            session.add(conv)
            if draft is not None:
                await self.life.cancel_draft(session, draft, "empty_draft", GATEWAY)
            return Outcome(ignored=True)
        return await self._submit(session, conv, draft, [])

    # -- commands ------------------------------------------------------------------------

    def _command(self, msg: InboundMessage, folded: str) -> Handler | None:
        if msg.kind == "postback" and msg.postback:
            if msg.postback == CONFIRM:
                return self._cmd_confirm
            if msg.postback == CANCEL:
                return self._cmd_cancel
            if msg.postback.startswith("rate:"):
                return self._cmd_rate
            if msg.postback == "location":
                return None
        head = folded.split(" ", 1)[0] if folded else ""
        two = " ".join(folded.split(" ")[:2])
        if folded in self.t.words("help"):
            return self._cmd_help
        status_words = self.t.words("status")
        if (head in status_words or two in status_words) and (
            CODE_RE.search(msg.text) or folded in status_words
        ):
            return self._cmd_status
        if CODE_RE.fullmatch(msg.text.strip()):
            return self._cmd_status
        if folded in self.t.words("cancel"):
            return self._cmd_cancel
        if folded in self.t.words("phone"):
            return self._cmd_phone
        if folded in self.t.words("confirm"):
            return self._cmd_confirm_word
        return None

    async def _cmd_help(
        self, session: AsyncSession, msg: InboundMessage, conv: Conversation, folded: str
    ) -> Outcome:
        return Outcome([Reply(self.t.get("dialog.help"))], ignored=True)

    async def _cmd_status(
        self, session: AsyncSession, msg: InboundMessage, conv: Conversation, folded: str
    ) -> Outcome:
        match = CODE_RE.search(msg.text)
        if match is None:
            return Outcome([Reply(self.t.get("dialog.status_usage"))], ignored=True)
        report = await reports.find_by_code(session, match.group(1))
        if report is None:
            text = self.t.get("dialog.status_not_found", code=match.group(1).upper())
            return Outcome([Reply(text)], ignored=True)
        return Outcome([Reply(await self.life.status_line(session, report))], ignored=True)

    async def _cmd_cancel(
        self, session: AsyncSession, msg: InboundMessage, conv: Conversation, folded: str
    ) -> Outcome:
        draft = await self._open_draft(session, conv)
        if draft is None:
            return Outcome([Reply(self.t.get("dialog.nothing_to_cancel"))], ignored=True)
        await self.life.cancel_draft(session, draft, "cancelled_by_citizen")
        conv.state, conv.report_id, conv.asked, conv.expires_at = "idle", None, [], None
        session.add(conv)
        return Outcome([Reply(self.t.get("dialog.cancelled"))], draft)

    async def _cmd_phone(
        self, session: AsyncSession, msg: InboundMessage, conv: Conversation, folded: str
    ) -> Outcome:
        button = Button(self.t.get("dialog.ask_phone_button"), "phone", "contact")
        return Outcome([Reply(self.t.get("dialog.ask_phone"), (button,))], ignored=True)

    async def _cmd_confirm(
        self, session: AsyncSession, msg: InboundMessage, conv: Conversation, folded: str
    ) -> Outcome:
        draft = await self._open_draft(session, conv, allow_expired=True)
        if draft is None:
            return Outcome([Reply(self.t.get("dialog.nothing_to_cancel"))], ignored=True)
        return await self._submit(session, conv, draft, [])

    async def _cmd_confirm_word(
        self, session: AsyncSession, msg: InboundMessage, conv: Conversation, folded: str
    ) -> Outcome:
        if conv.state == "confirming" and await self._open_draft(session, conv) is not None:
            return await self._cmd_confirm(session, msg, conv, folded)
        if conv.state == "rating" and folded in {"1", "2", "3", "4", "5"}:
            return await self._rate(session, conv, int(folded))
        # "ok"/"có" outside a confirmation is small talk, not a report.
        return Outcome([Reply(self.t.get("dialog.greeting"))], ignored=True)

    async def _cmd_rate(
        self, session: AsyncSession, msg: InboundMessage, conv: Conversation, folded: str
    ) -> Outcome:
        try:
            value = int((msg.postback or "").split(":")[1])
        except (IndexError, ValueError):
            return Outcome(ignored=True)
        return await self._rate(session, conv, value)

    async def _rate(self, session: AsyncSession, conv: Conversation, value: int) -> Outcome:
        if not 1 <= value <= 5 or conv.report_id is None:
            return Outcome(ignored=True)
        report = await session.get(Report, conv.report_id)
        if report is None:
            return Outcome(ignored=True)
        await self.life.rate(session, report, value)  # the centre gets the rating too
        conv.state, conv.report_id = "idle", None
        session.add(conv)
        return Outcome([Reply(self.t.get("notify.rated"))], report)

    async def _contact(
        self, session: AsyncSession, msg: InboundMessage, citizen: Citizen
    ) -> Outcome:
        if not msg.contact_phone:
            return Outcome([Reply(self.t.get("dialog.phone_not_own"))], ignored=True)
        return Outcome([Reply(self.t.get("dialog.phone_saved", phone=msg.contact_phone))],
                       ignored=True)

    # -- helpers -------------------------------------------------------------------------

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

    async def _open_draft(
        self, session: AsyncSession, conv: Conversation, allow_expired: bool = False
    ) -> Report | None:
        if conv.report_id is None or conv.state == "rating":
            return None
        report = await session.get(Report, conv.report_id)
        if report is None or report.status != ReportStatus.DRAFT:
            return None
        if not allow_expired and conv.expires_at is not None and conv.expires_at < utcnow():
            # The window closed but the expiry job has not run yet: submit it now, and the
            # new message starts a new draft.
            await reports.submit(session, self.s, report)
            conv.state, conv.report_id, conv.asked, conv.expires_at = "idle", None, [], None
            session.add(conv)
            return None
        return report

    async def _new_draft(
        self, session: AsyncSession, msg: InboundMessage, citizen: Citizen, conv: Conversation
    ) -> Report:
        draft = Report(
            channel=msg.channel, citizen_id=citizen.id or 0, sender=msg.sender,
            status=ReportStatus.DRAFT
        )
        session.add(draft)
        await session.flush()
        conv.report_id = draft.id
        conv.state = "collecting"
        conv.asked = []
        return draft

    def _absorb(
        self, draft: Report, msg: InboundMessage, attachments: list[dict],
        transcript: str | None, confidence: float | None,
    ) -> None:
        text = msg.text.strip()
        if msg.kind == "edit" and draft.text and "\n" not in draft.text:
            draft.text = text  # an edit of the only message so far replaces it
        elif text and msg.postback is None:
            draft.text = f"{draft.text}\n{text}" if draft.text else text
        if transcript is not None:
            draft.transcript = (
                f"{draft.transcript}\n{transcript}" if draft.transcript else transcript
            )
            draft.transcript_confidence = confidence
        if attachments:
            draft.attachments = [*draft.attachments, *attachments]
        if msg.location is not None:
            draft.lat, draft.lon = msg.location.lat, msg.location.lon
            if msg.location.address:
                draft.address = msg.location.address
        if not draft.address and self.s.classifier is not None and text:
            place = self.s.classifier.classify(text).address
            if place:
                draft.address = place
        draft.updated_at = utcnow()

    def _has_place(self, draft: Report) -> bool:
        return draft.lat is not None or bool(draft.address)

    def _small_talk(self, folded: str, text: str) -> bool:
        if not folded:
            return False
        if folded in self.t.words("greetings") or folded in self.t.words("thanks"):
            return True
        words = folded.split()
        if len(words) <= 4 and self.s.classifier is not None:
            result = self.s.classifier.classify(text)
            # Greetings and thanks match only `khac` phrases; any real sector phrase means
            # the citizen is reporting something, however short.
            return result.sector == "khac" and all(m.sector == "khac" for m in result.matches)
        return False

    def _abusive(self, folded: str) -> bool:
        words = set(folded.split())
        return any((" " in bad and bad in folded) or bad in words for bad in self.t.words("abuse"))
