"""What the dialog answers: replies with their buttons, and the texts they are made of.

Every text comes from `config/messages.vi.toml` (`messages.en.toml` for citizens who write
English); on channels that render like SMS the short `[sms]` form of a text is used when there
is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from channels.base import Button
from channels.registry import ChannelSet
from gateway.domain.intents import CODE_RE
from gateway.domain.reports import report_text
from gateway.domain.texts import Texts
from nlp.classifier import Classifier
from store.models import Report

__all__ = ["CANCEL", "CODE_RE", "CONFIRM", "SPLIT", "TOGETHER", "Outcome", "Replies", "Reply"]

CONFIRM, CANCEL, SPLIT, TOGETHER = "confirm", "cancel", "split", "together"
SUMMARY_CHARS = 280  # a long letter is shortened in the summary, never echoed whole
# Sectors where a photo of the scene helps the agency (asked once, with the summary).
PHOTO_HELPS = frozenset({"trat_tu_do_thi", "ve_sinh_moi_truong", "ha_tang_giao_thong",
                         "ha_tang_do_thi", "dien", "cap_nuoc", "vien_thong", "dat_dai"})


@dataclass
class Reply:
    """A message the dialog wants sent back on the citizen's channel."""

    text: str
    buttons: tuple[Button, ...] = ()


@dataclass
class Outcome:
    """What handling one message did: replies, and the report it touched."""

    replies: list[Reply] = field(default_factory=list)
    report: Report | None = None
    ignored: bool = False


def shorten(text: str, limit: int = SUMMARY_CHARS, more: str = "…") -> str:
    """`text` cut at a word boundary near `limit` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return f"{cut}… {more}".rstrip()


class Replies:
    """Builds the dialog's answers from the texts, the classifier and the channels' traits."""

    def __init__(self, texts: Texts, classifier: Classifier | None,
                 channels: ChannelSet) -> None:
        self.t = texts
        self.classifier = classifier
        self.channels = channels

    def sms_like(self, channel: str) -> bool:
        """Answers on this channel go out like SMS: short texts, no buttons."""
        return self.channels.traits(channel).sms_like

    def text(self, channel: str, name: str, lang: str = "vi", **values: object) -> str:
        """A dialog text, in its short SMS form when the answer goes by SMS."""
        if self.sms_like(channel) and self.t.has(f"sms.{name}", lang):
            return self.t.get(f"sms.{name}", lang, **values)
        return self.t.get(f"dialog.{name}", lang, **values)

    def submitted(self, report: Report, lang: str = "vi") -> str:
        """The confirmation a citizen gets with the tracking code."""
        if self.channels.traits(report.channel).spoken:
            if "silent" in report.flags:
                return self.text("voice", "voice_silent", lang)
            key = "voice_pending" if "transcript_pending" in report.flags else "voice_received"
            return self.text("voice", key, lang, code=report.code)
        if report.urgent:
            key = "submitted_urgent"
        elif "no_place" in report.flags:
            key = "submitted_no_place"
        else:
            key = "submitted"
        return self.text(report.channel, key, lang, code=report.code)

    def confirm_buttons(self, lang: str = "vi") -> tuple[Button, ...]:
        """Send / cancel, under a summary."""
        return (
            Button(self.t.get("dialog.confirm_button", lang), CONFIRM),
            Button(self.t.get("dialog.cancel_button", lang), CANCEL),
        )

    def split_buttons(self, count: int, lang: str = "vi") -> tuple[Button, ...]:
        """File separately / together / cancel, under the two-problems offer."""
        return (
            Button(self.t.get("dialog.split_button", lang, count=count), SPLIT),
            Button(self.t.get("dialog.together_button", lang), TOGETHER),
            Button(self.t.get("dialog.cancel_button", lang), CANCEL),
        )

    def sector_name(self, code: str | None, lang: str = "vi") -> str:
        """The Vietnamese name of a sector code (the code itself when unknown)."""
        clf = self.classifier
        if clf is not None and code in clf.sectors:
            return clf.sectors[code].name
        return self.t.get("dialog.sector_pending", lang)

    def place(self, draft: Report, lang: str = "vi") -> str:
        """Where the report is, in words: never raw coordinates."""
        if draft.lat is not None and draft.lon is not None:
            if draft.address:
                return self.t.get("dialog.place_shared_named", lang, address=draft.address)
            return self.t.get("dialog.place_shared", lang)
        return draft.address or self.t.get("dialog.place_unknown", lang)

    def summary(self, draft: Report, lang: str = "vi") -> str:
        """What the citizen is about to send: text, expected sector, place, media."""
        sector = self.t.get("dialog.sector_pending", lang)
        text = report_text(draft)
        clf = self.classifier
        if clf is not None and text:
            sector = self.sector_name(clf.classify(text).sector, lang)
        media = (self.t.get("dialog.media_count", lang, count=len(draft.attachments))
                 if draft.attachments else self.t.get("dialog.media_none", lang))
        short = shorten(text, more=self.t.get("dialog.summary_more", lang)) if text else "…"
        return self.t.get("dialog.summary", lang, text=short, sector=sector,
                          place=self.place(draft, lang), media=media)

    def photo_helps(self, draft: Report) -> bool:
        """A photo of the scene would help the agency with this report."""
        text = report_text(draft)
        if self.classifier is None or not text or draft.attachments:
            return False
        return self.classifier.classify(text).sector in PHOTO_HELPS
