"""The one dialog every channel shares: an intent step (gateway/domain/intents.py), then the
state machine: emergency advice first; join messages into a draft; ask once for what is
missing (the place, what a photo shows, what happens at a place); summarise; submit on
confirmation (or when the window closes, if the draft describes a problem).

State lives in the `conversation` table, so it survives restarts and works with several
gateway processes (the worker processes one event at a time per row lock/claim).
"""

from __future__ import annotations

import logging
from functools import partial

from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Button, InboundMessage
from gateway.domain import reports
from gateway.domain.dialog_acts import EMERGENCY_STATE, DialogCore, cancel_quietly
from gateway.domain.intents import Intent
from gateway.domain.replies import CANCEL, CONFIRM, SPLIT, TOGETHER, Outcome, Reply
from gateway.domain.texts import fold
from store.models import Citizen, Conversation, Report, ReportStatus, utcnow
from store.repos import citizens as citizens_repo

log = logging.getLogger("paht.dialog")

__all__ = ["Dialog"]


class Dialog(DialogCore):
    """Handles one inbound message inside the caller's transaction."""

    async def handle(
        self, session: AsyncSession, msg: InboundMessage, citizen: Citizen,
        extra_attachments: list[dict] | None = None, transcript: str | None = None,
        transcript_confidence: float | None = None, flags: list[str] | None = None,
        known: citizens_repo.Known | None = None,
    ) -> Outcome:
        """Decide what `msg` means and update the draft; returns the replies to send."""
        conv = await self._conversation(session, msg, citizen, known)
        outcome = await self._handle(session, msg, citizen, conv, extra_attachments or [],
                                     transcript, transcript_confidence, flags or [])
        # Zalo and SMS number the buttons: remember what "1", "2"… stand for.
        with_buttons = [r for r in outcome.replies if r.buttons]
        if with_buttons:
            conv.options = [b.payload for b in with_buttons[-1].buttons if b.kind != "contact"]
            session.add(conv)
        elif outcome.replies and conv.options:
            conv.options = []
            session.add(conv)
        return outcome

    async def _handle(
        self, session: AsyncSession, msg: InboundMessage, citizen: Citizen, conv: Conversation,
        media: list[dict], transcript: str | None, confidence: float | None, flags: list[str],
    ) -> Outcome:
        lang = conv.lang or "vi"
        if msg.kind == "follow":
            return Outcome([Reply(self.t.get("dialog.welcome", lang))])
        if msg.kind in ("unfollow", "status"):
            return Outcome(ignored=True)
        if msg.kind == "contact":
            return await self._contact(msg, lang)
        prefix: list[Reply] = []
        draft = await self._draft(session, conv)
        if draft is not None and self._expired(conv):
            # The window closed but the expiry job has not run yet: close it now (submitted
            # only if it describes a problem), and this message starts afresh.
            prefix = (await self.close_expired(session, conv)).replies
            draft = None
        if conv.state == EMERGENCY_STATE and self._expired(conv):
            self._reset(session, conv)
        text = msg.text.strip()
        payload = self._payload(msg, conv, text)
        if payload is not None:
            if prefix and payload in (CONFIRM, CANCEL):
                return Outcome(prefix)  # the window closed first: the draft is settled
            return await self._postback(session, msg, citizen, conv, draft, payload, lang)
        folded = fold(text)
        if conv.state == "rating" and folded in {"1", "2", "3", "4", "5"}:
            return await self._rate(session, conv, int(folded))
        if folded in self.t.words("help"):
            return Outcome([Reply(self.t.get("dialog.help", lang))], ignored=True)
        if folded in self.t.words("phone"):
            button = Button(self.t.get("dialog.ask_phone_button", lang), "phone", "contact")
            return Outcome([Reply(self.t.get("dialog.ask_phone", lang), (button,))], ignored=True)
        words = text or (transcript or "")
        norm = self.intents.normalize(words)
        intent = self.intents.detect(words, conv.state, norm)
        if intent.lang == "en" or norm.has_diacritics:
            lang = conv.lang = intent.lang
            session.add(conv)
        absorb = partial(self._absorb, msg=msg, attachments=media, transcript=transcript,
                         confidence=confidence, flags=flags)
        if intent.name == "emergency":
            out = await self._emergency(session, msg, conv, citizen, intent, draft, absorb, lang)
            return self._flag_abuse(session, citizen, out.report, intent, out, lang, prefix)
        if conv.state == EMERGENCY_STATE and conv.memo.get("emergency_report"):
            report = await session.get(Report, int(conv.memo["emergency_report"]))
            if (report is not None and (text or msg.location is not None)
                    and intent.name in ("report", "correction")):
                return await self._emergency_more(session, msg, conv, report, lang)
        act = await self._by_intent(session, msg, citizen, conv, draft, intent, lang, absorb)
        if act is None:
            act = await self._report(session, msg, citizen, conv, draft, intent, lang, absorb)
        act.replies[:0] = prefix
        return act

    async def _by_intent(self, session: AsyncSession, msg: InboundMessage, citizen: Citizen,
                         conv: Conversation, draft: Report | None, intent: Intent, lang: str,
                         absorb: partial[None]) -> Outcome | None:
        """Intents that never become report text; None for a report (or more information)."""
        name = intent.name
        if name == "status":
            return await self._status(session, citizen, intent, lang)
        if name == "out_of_scope":
            key = f"out_of_scope.{intent.topic}"
            key = key if self.t.has(key, lang) else "out_of_scope.default"
            return Outcome([Reply(self.t.get(key, lang, **self.intents.services))], ignored=True)
        if name == "cancel":
            return await self._cancel(session, conv, draft, lang)
        if name == "abuse":
            citizen.abuse_flags += 1
            session.add(citizen)
            return Outcome([Reply(self.t.get("dialog.abuse_only", lang))], ignored=True)
        has_media = bool(msg.attachments or msg.location)
        if name == "confirm" and not has_media:
            if draft is not None and (reports.report_text(draft) or draft.attachments):
                return await self._submit(session, conv, draft, [], lang)
            return Outcome([Reply(self.t.get("dialog.ack", lang))], ignored=True)
        if name == "deny" and not has_media:
            if draft is not None:
                self._touch(session, conv)
                return Outcome([Reply(self.t.get("dialog.ask_correction", lang))], draft)
            return Outcome([Reply(self.t.get("dialog.greeting", lang))], ignored=True)
        if name == "correction" and draft is not None and reports.report_text(draft):
            if self._correct(draft, intent, msg):
                draft.updated_at = utcnow()
                session.add(draft)
                self._touch(session, conv)
                conv.state = "confirming"
                reply = Reply(f"{self.t.get('dialog.corrected', lang)}\n\n"
                              f"{self.r.summary(draft, lang)}", self.r.confirm_buttons(lang))
                return Outcome([reply], draft)
            return None  # nothing to replace: it is more information
        if name in ("thanks", "ack", "greeting") and not has_media:
            if self.s.channels.traits(msg.channel).spoken:
                return None
            key = {"thanks": "dialog.thanks", "ack": "dialog.ack"}.get(name, "dialog.greeting")
            if draft is not None and name == "greeting":
                key = "dialog.greeting"
            return Outcome([Reply(self.t.get(key, lang))], ignored=True)
        return None

    async def _postback(self, session: AsyncSession, msg: InboundMessage, citizen: Citizen,
                        conv: Conversation, draft: Report | None, payload: str,
                        lang: str) -> Outcome:
        if payload == CONFIRM:
            if draft is None:
                return Outcome([Reply(self.t.get("dialog.nothing_to_cancel", lang))],
                               ignored=True)
            return await self._submit(session, conv, draft, [], lang)
        if payload == CANCEL:
            return await self._cancel(session, conv, draft, lang)
        if payload.startswith("rate:"):
            try:
                return await self._rate(session, conv, int(payload.split(":")[1]))
            except (IndexError, ValueError):
                return Outcome(ignored=True)
        if payload == "location":
            return Outcome([Reply(self.t.get("dialog.ask_place_how", lang))], ignored=True)
        if payload == "phone":
            button = Button(self.t.get("dialog.ask_phone_button", lang), "phone", "contact")
            return Outcome([Reply(self.t.get("dialog.ask_phone", lang), (button,))], ignored=True)
        if payload in (SPLIT, TOGETHER) and draft is not None:
            return await self._split(session, msg, citizen, conv, draft, payload == SPLIT, lang)
        return Outcome(ignored=True)

    def _payload(self, msg: InboundMessage, conv: Conversation, text: str) -> str | None:
        """A pressed button, or a digit answering numbered buttons (Zalo, SMS)."""
        if msg.kind == "postback" and msg.postback:
            return msg.postback
        if text.isdigit() and conv.options and conv.state != "rating":
            n = int(text)
            if 1 <= n <= len(conv.options):
                return conv.options[n - 1]
        return None

    # -- the report itself --------------------------------------------------------------

    async def _report(self, session: AsyncSession, msg: InboundMessage, citizen: Citizen,
                      conv: Conversation, draft: Report | None, intent: Intent, lang: str,
                      absorb: partial[None]) -> Outcome:
        text = msg.text.strip()
        has_content = bool(text or msg.attachments or msg.location or absorb.keywords.get(
            "transcript"))
        if draft is None and not has_content:
            return Outcome([Reply(self.t.get("dialog.sticker", lang))], ignored=True)
        if draft is None:
            draft = await self._new_draft(session, msg, citizen, conv)
        had_text = bool(reports.report_text(draft))
        place_only = (not had_text and bool(text) and msg.location is None
                      and self._only_a_place(text))
        absorb(draft, keep_text=not place_only)
        out = self._flag_abuse(session, citizen, draft, intent, Outcome(report=draft), lang, [])
        self._touch(session, conv)
        await self._keep_draft(session, conv, draft)
        if text and not self.s.channels.traits(msg.channel).spoken:
            parts = self._two_problems(text)
            if parts is not None and self.s.channels.traits(msg.channel).conversational:
                conv.memo = {**conv.memo, "split": parts[0], "sectors": parts[1]}
        nxt = await self._next_step(session, msg, conv, draft, lang, place_only)
        nxt.replies[:0] = out.replies
        return nxt

    def _only_a_place(self, text: str) -> bool:
        """The message names a place and nothing that happens there."""
        clf = self.s.classifier
        if clf is None:
            return False
        result = clf.classify(text)
        return bool(result.address) and not any(m.sector != "khac" for m in result.matches)

    async def _next_step(self, session: AsyncSession, msg: InboundMessage, conv: Conversation,
                         draft: Report, lang: str, place_only: bool) -> Outcome:
        traits = self.s.channels.traits(msg.channel)
        if traits.spoken:  # a call: nothing to ask, submit it
            return await self._submit(session, conv, draft, [], lang)
        has_text = bool(reports.report_text(draft))
        has_place = self._has_place(draft)
        conv.state = "collecting"
        if not has_text:
            if draft.attachments and "photo_what" not in conv.asked:
                conv.asked = [*conv.asked, "photo_what"]
                return Outcome([Reply(self.t.get("dialog.ask_photo_what", lang))], draft)
            if has_place and "what" not in conv.asked:
                conv.asked = [*conv.asked, "what"]
                return Outcome([Reply(self.r.text(msg.channel, "ask_what", lang,
                                                  place=self.r.place(draft, lang)))], draft)
            return Outcome([Reply(self.t.get("dialog.added", lang))], draft)
        if not has_place and "place" not in conv.asked:
            conv.asked = [*conv.asked, "place"]
            buttons = () if self.r.sms_like(msg.channel) else (
                Button(self.t.get("dialog.ask_place_button", lang), "location", "location"),)
            return Outcome([Reply(self.r.text(msg.channel, "ask_place", lang), buttons)], draft)
        if not traits.conversational:
            # SMS: every message costs the citizen money — submit as soon as we have a place
            # or after one question.
            return await self._submit(session, conv, draft, [], lang)
        if not has_place and not msg.text.strip():
            # A photo while we wait for the place: acknowledged, the question stands.
            return Outcome([Reply(self.t.get("dialog.added", lang))], draft)
        if "split" in conv.memo and "split_offered" not in conv.asked:
            conv.asked = [*conv.asked, "split_offered"]
            conv.state = "confirming"
            sectors = ", ".join(self.r.sector_name(s, lang) for s in conv.memo["sectors"])
            text = self.t.get("dialog.two_problems", lang, count=2, sectors=sectors)
            return Outcome([Reply(text, self.r.split_buttons(2, lang))], draft)
        conv.state = "confirming"
        summary = self.r.summary(draft, lang)
        if "photo" not in conv.asked and self.r.photo_helps(draft):
            conv.asked = [*conv.asked, "photo"]
            summary = f"{summary}\n{self.t.get('dialog.ask_photo', lang)}"
        return Outcome([Reply(summary, self.r.confirm_buttons(lang))], draft)

    async def _split(self, session: AsyncSession, msg: InboundMessage, citizen: Citizen,
                     conv: Conversation, draft: Report, split: bool, lang: str) -> Outcome:
        parts = conv.memo.get("split")
        if not split or not parts:
            conv.memo = {k: v for k, v in conv.memo.items() if k not in ("split", "sectors")}
            conv.state = "confirming"
            session.add(conv)
            return Outcome([Reply(self.r.summary(draft, lang), self.r.confirm_buttons(lang))],
                           draft)
        first, second = parts
        if second in draft.text:  # the earlier lines and the first problem stay here
            kept = draft.text.replace(second, "").rstrip(" ,;.\n")
            for sep in (" và", " còn", " va", " con", " and"):
                kept = kept.removesuffix(sep)
            draft.text = kept.rstrip(" ,;.") or first
        else:
            draft.text = first
        other = Report(channel=draft.channel, citizen_id=draft.citizen_id, sender=draft.sender,
                       status=ReportStatus.DRAFT, text=second, lat=draft.lat, lon=draft.lon,
                       address=draft.address, attachments=list(draft.attachments),
                       flags=[f for f in draft.flags if f == "abusive"])
        session.add(other)
        await session.flush([other])  # only its id is needed now; the rest goes at commit
        done = []
        for report in (draft, other):
            self._mark(report)
            await reports.submit(session, self.s, report)
            done.append(report)
        self._reset(session, conv)
        codes = ", ".join(r.code or "" for r in done)
        key = "dialog.submitted_many"
        return Outcome([Reply(self.t.get(key, lang, count=len(done), codes=codes))], draft)

    def _absorb(self, draft: Report, *, msg: InboundMessage, attachments: list[dict],
                transcript: str | None, confidence: float | None, flags: list[str],
                keep_text: bool = True) -> None:
        text = msg.text.strip()
        if keep_text and msg.kind == "edit" and draft.text and "\n" not in draft.text:
            draft.text = text  # an edit of the only message so far replaces it
        elif keep_text and text and msg.postback is None:
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
        if flags:
            draft.flags = sorted({*draft.flags, *flags})
        if not draft.address:
            # A call has no typed words: the place is in what the caller said.
            place = self._place_from(msg, text or (transcript or "").strip())
            if place:
                draft.address = place
        draft.updated_at = utcnow()

    def _flag_abuse(self, session: AsyncSession, citizen: Citizen, report: Report | None,
                    intent: Intent, out: Outcome, lang: str, prefix: list[Reply]) -> Outcome:
        """Real abuse: the report is flagged for operators and a polite word goes first."""
        out.replies[:0] = prefix
        if not intent.abusive or report is None:
            return out
        if "abusive" not in report.flags:
            report.flags = sorted({*report.flags, "abusive"})
            citizen.abuse_flags += 1
            session.add(citizen)
            session.add(report)
        out.replies.insert(len(prefix), Reply(self.t.get("dialog.abuse_warning", lang)))
        return out

    # -- the window -----------------------------------------------------------------------

    async def close_expired(self, session: AsyncSession, conv: Conversation) -> Outcome:
        """Close a draft whose window has closed: submitted only if it describes a problem.

        Greetings, thanks, questions and status queries never become draft text, so an
        empty draft is closed quietly; a photo without words goes to an operator (flag
        `photo_only`); a draft without a place is marked `no_place` for review.
        """
        lang = conv.lang or "vi"
        draft = await self._draft(session, conv)
        if conv.state == EMERGENCY_STATE:
            self._reset(session, conv)
            return Outcome(ignored=True)
        if draft is None:
            self._reset(session, conv)
            return Outcome(ignored=True)
        text = reports.report_text(draft)
        if not text.strip() and not draft.attachments:
            self._reset(session, conv)
            await cancel_quietly(session, self.s, draft, "empty_draft")
            return Outcome(ignored=True)
        if text.strip() and not draft.attachments and not self._describes_problem(text):
            self._reset(session, conv)
            await cancel_quietly(session, self.s, draft, "not_a_problem")
            return Outcome(ignored=True)
        return await self._submit(session, conv, draft, [], lang)

    def _describes_problem(self, text: str) -> bool:
        """False for a question or small talk the intent step did not catch."""
        clf = self.s.classifier
        if clf is None:
            return True
        result = clf.classify(text)
        if any(m.sector != "khac" for m in result.matches):
            return True
        norm = self.intents.normalize(text)
        asks = "?" in text or bool(self.intents.question.find(
            [t for t in norm.tokens if t.text[:1].isalnum()]))
        return not asks and len(text.split()) > 3
