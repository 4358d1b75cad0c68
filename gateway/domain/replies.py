"""What the dialog answers: replies with their buttons, and the texts they are made of.

Every text comes from `config/messages.vi.toml`; on channels that render like SMS the short
`[sms]` form of a text is used when there is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from channels.base import Button
from channels.registry import ChannelSet
from gateway.domain.reports import report_text
from gateway.domain.texts import Texts
from nlp.classifier import Classifier
from store.models import Report

CODE_RE = re.compile(r"\b([A-Za-z]{2,4}-\d{4}-\d{6})\b")
CONFIRM, CANCEL = "confirm", "cancel"


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

    def text(self, channel: str, name: str, **values: object) -> str:
        """A dialog text, in its short SMS form when the answer goes by SMS."""
        if self.sms_like(channel) and name in self.t.data.get("sms", {}):
            return self.t.get(f"sms.{name}", **values)
        return self.t.get(f"dialog.{name}", **values)

    def submitted(self, report: Report) -> str:
        """The confirmation a citizen gets with the tracking code."""
        if self.channels.traits(report.channel).spoken:
            if "silent" in report.flags:
                return self.text("voice", "voice_silent")
            key = "voice_pending" if "transcript_pending" in report.flags else "voice_received"
            return self.text("voice", key, code=report.code)
        key = "submitted_urgent" if report.urgent else "submitted"
        return self.text(report.channel, key, code=report.code)

    def confirm_buttons(self) -> tuple[Button, ...]:
        """Send / cancel, under a summary."""
        return (
            Button(self.t.get("dialog.confirm_button"), CONFIRM),
            Button(self.t.get("dialog.cancel_button"), CANCEL),
        )

    def summary(self, draft: Report) -> str:
        """What the citizen is about to send: text, expected sector, place, media."""
        sector = "đang phân loại"
        clf = self.classifier
        if clf is not None:
            result = clf.classify(report_text(draft))
            sector = clf.sectors[result.sector].name if result.sector in clf.sectors else sector
        place = draft.address or (
            f"{draft.lat:.5f}, {draft.lon:.5f}" if draft.lat is not None and draft.lon is not None
            else self.t.get("dialog.place_unknown"))
        media = (self.t.get("dialog.media_count", count=len(draft.attachments))
                 if draft.attachments else self.t.get("dialog.media_none"))
        return self.t.get("dialog.summary", text=report_text(draft) or "…",
                          sector=sector, place=place, media=media)
