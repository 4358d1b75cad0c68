"""The intent step before the dialog's state machine: what a citizen's message means.

Intents: emergency, status (a tracking code anywhere, or "… đến đâu rồi"), out_of_scope
(administrative procedures: a pointer to the right service), cancel, confirm, deny, correction,
thanks, ack ("ok"), greeting, abuse (nothing but abuse) and report (everything else: the
report itself or more information for it). Phrases are data (`config/intents.toml`,
`config/emergency.toml`) and match with and without diacritics, in teencode and in central
dialect; numbered replies (Zalo, SMS) are mapped to the buttons they number by the dialog.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.domain.emergency import Emergencies, Hazard
from gateway.domain.phrases import PhraseSet, content_tokens, covered
from gateway.domain.texts import config_dir
from nlp.normalize import Normalized, Normalizer

CODE_RE = re.compile(r"\b([A-Za-z]{2,4}-\d{4}-\d{6})\b")
COVERING = ("cancel", "confirm", "deny", "thanks", "ack", "greeting")
INTENTS = ("emergency", "status", "out_of_scope", "cancel", "confirm", "deny", "correction",
           "thanks", "ack", "greeting", "abuse", "report")
# "không phải X mà (là) Y": the place or words X are replaced by Y.
_NOT_BUT = re.compile(
    r"(?:không|khong|ko|k|hông|chẳng|chang)\s+phải\s+(?:là\s+|la\s+)?(?P<old>.+?)\s*,?\s+"
    r"(?:mà\s+là|ma\s+la|mà|ma)\s+(?P<new>.+)$", re.IGNORECASE | re.DOTALL)
_NOT_BUT_PLAIN = re.compile(
    r"(?:khong|ko|k|hong|chang)\s+phai\s+(?:la\s+)?(?P<old>.+?)\s*,?\s+"
    r"(?:ma\s+la|ma)\s+(?P<new>.+)$", re.IGNORECASE | re.DOTALL)
_NOT_BUT_EN = re.compile(r"not\s+(?P<old>.+?)\s*,?\s+but\s+(?P<new>.+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Intent:
    """What one message means, with what the dialog needs to act on it."""

    name: str
    code: str | None = None  # status: the tracking code in the message
    hazard: Hazard | None = None  # emergency
    topic: str | None = None  # out_of_scope
    abusive: bool = False  # abuse words were used (any intent)
    lang: str = "vi"  # vi | en: the language of the message
    old: str | None = None  # correction: what is replaced (None: the place)
    new: str | None = None  # correction: the replacement
    words: tuple[str, ...] = field(default=())  # the abuse words found


class Intents:
    """Detects the intent of a message from configured phrase lists."""

    def __init__(self, data: dict[str, Any], emergencies: Emergencies,
                 normalizer: Normalizer) -> None:
        self.normalizer = normalizer
        self.emergencies = emergencies
        self.particles = PhraseSet(normalizer).add(data.get("particles", {}).get("words", ()))
        self.covering = {name: PhraseSet(normalizer).add(data.get(name, {}).get("phrases", ()),
                                                         name) for name in COVERING}
        self.status = PhraseSet(normalizer).add(data.get("status", {}).get("phrases", ()))
        self.correction = PhraseSet(normalizer).add(
            data.get("correction", {}).get("phrases", ()))
        oos = data.get("out_of_scope", {})
        self.question = PhraseSet(normalizer).add(oos.get("question", ()))
        self.complaint = PhraseSet(normalizer).add(oos.get("report", ()))
        self.topics = PhraseSet(normalizer)
        for topic, spec in oos.get("topics", {}).items():
            self.topics.add(spec.get("phrases", ()), topic)
        self.abuse = PhraseSet(normalizer).add(data.get("abuse", {}).get("words", ()))
        self.abuse_rest = PhraseSet(normalizer).add(data.get("abuse", {}).get("rest", ()))
        self.oos_max_tokens = int(oos.get("max_tokens", 30))
        self.services: dict[str, str] = dict(data.get("services", {}))
        self.en_words = frozenset(data.get("language", {}).get("en_words", ()))

    @classmethod
    def load(cls, normalizer: Normalizer | None = None, directory: Path | None = None) -> Intents:
        """Read intents.toml and emergency.toml (a province's copy, else the packaged one)."""
        norm = normalizer or Normalizer.load()
        data = _toml("intents.toml", directory)
        return cls(data, Emergencies(_toml("emergency.toml", directory), norm), norm)

    def normalize(self, text: str) -> Normalized:
        """The normalised form every detector reads (computed once per message)."""
        return self.normalizer.normalize(text)

    def detect(self, text: str, state: str = "idle", norm: Normalized | None = None) -> Intent:
        """The intent of `text` typed while the conversation is in `state`."""
        norm = norm if norm is not None else self.normalize(text)
        toks = content_tokens(norm)
        lang = self.language(norm)
        abuse_hits = self.abuse.find(toks)
        abusive = bool(abuse_hits)
        words = tuple(h.phrase.text.rstrip("!") for h in abuse_hits)
        base = Intent("report", abusive=abusive, lang=lang, words=words)
        hazard = self.emergencies.detect(norm)
        if hazard is not None:
            return replace(base, name="emergency", hazard=hazard)
        code = CODE_RE.search(text)
        if code is not None:
            return replace(base, name="status", code=code.group(1).upper())
        if not toks:
            return replace(base, name="ack" if text.strip() else "report")
        if abusive:
            rest = [t for i, t in enumerate(toks)
                    if not any(h.first <= i <= h.last for h in abuse_hits)]
            if not rest or covered(rest, [self.abuse_rest, self.particles])[0]:
                return replace(base, name="abuse")
            toks = rest
        name = self._covering(toks, state)
        if name is not None:
            return replace(base, name=name)
        if self.status.find(toks):
            return replace(base, name="status")
        topic = self._out_of_scope(toks, text)
        if topic is not None:
            return replace(base, name="out_of_scope", topic=topic)
        corr = self._correction(text, toks)
        if corr is not None:
            return replace(base, name="correction", old=corr[0], new=corr[1])
        return replace(base, name="report")

    def language(self, norm: Normalized) -> str:
        """"en" for a message written in English, else "vi"."""
        if norm.has_diacritics:
            return "vi"
        words = [t.text for t in norm.tokens if t.text.isalpha()]
        hits = sum(1 for w in words if w in self.en_words)
        return "en" if words and hits >= 2 and hits * 2 >= len(words) else "vi"

    def _covering(self, toks: list[Any], state: str) -> str | None:
        order = list(COVERING)
        if state == "confirming":
            order.remove("ack")  # "ok" under a summary sends it
        else:
            order.remove("confirm")
            order.insert(order.index("ack") + 1, "confirm")
        for name in order:
            ok, tags = covered(toks, [self.covering[name], self.particles])
            if ok and tags:
                return name
        # "chào ad, cảm ơn nhé": greetings and thanks together.
        ok, tags = covered(toks, [self.covering["thanks"], self.covering["greeting"],
                                  self.covering["ack"], self.particles])
        if ok and tags:
            return "thanks" if "thanks" in tags else "greeting"
        return None

    def _out_of_scope(self, toks: list[Any], text: str) -> str | None:
        topics = self.topics.find(toks)
        if not topics or len(toks) > self.oos_max_tokens:
            return None
        asks = bool(self.question.find(toks)) or "?" in text
        if not asks or self.complaint.find(toks):
            return None  # a complaint about a procedure is a report (thu_tuc_hanh_chinh)
        return topics[0].tag

    def _correction(self, text: str, toks: list[Any]) -> tuple[str | None, str] | None:
        stripped = text.strip()
        for rx in (_NOT_BUT, _NOT_BUT_PLAIN, _NOT_BUT_EN):
            m = rx.search(stripped)
            if m is not None and m.start() < 16:  # said first: "nhầm, không phải …"
                return m.group("old").strip(" ,.:"), m.group("new").strip(" ,.:!")
        hits = [h for h in self.correction.find(toks) if h.first <= 1]
        if not hits:
            return None
        hit = max(hits, key=lambda h: h.last)
        rest_start = toks[hit.last + 1].start if hit.last + 1 < len(toks) else len(text)
        rest = text[rest_start:].strip(" ,.:;-!")
        return (None, rest) if rest else None


def _toml(name: str, directory: Path | None) -> dict[str, Any]:
    path = config_dir(directory) / name
    if not path.exists():  # a province copy made before this file existed
        path = config_dir(None) / name
    with path.open("rb") as fh:
        return tomllib.load(fh)
