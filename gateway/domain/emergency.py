"""Danger to life: which hazard a message describes and which numbers to call first.

The hazard -> number table and the phrases are data (`config/emergency.toml`); the advice texts
are in `config/messages.vi.toml` / `messages.en.toml` ([emergency]).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.domain.phrases import PhraseSet, content_tokens
from gateway.domain.texts import config_dir
from nlp.normalize import Normalized, Normalizer

ALONE_TOKENS = 3  # an `alone` phrase counts in a message of at most this many words


@dataclass(frozen=True, slots=True)
class Hazard:
    """What endangers life in a message, the numbers to call (first one first), the words."""

    name: str
    numbers: tuple[str, ...]
    words: tuple[str, ...]


class Emergencies:
    """Finds danger to life in a normalised message."""

    def __init__(self, data: dict[str, Any], normalizer: Normalizer) -> None:
        self.numbers: dict[str, str] = dict(data.get("numbers", {}))
        self.numbers_en: dict[str, str] = dict(data.get("numbers_en", {}))
        self.order: list[str] = []
        self.calls: dict[str, tuple[str, ...]] = {}
        self.phrases = PhraseSet(normalizer)
        self.negatives = PhraseSet(normalizer)
        self.alone = PhraseSet(normalizer)
        for name, spec in data.get("hazards", {}).items():
            self.order.append(name)
            self.calls[name] = tuple(str(n) for n in spec.get("numbers", ()))
            self.phrases.add(spec.get("phrases", ()), name)
            self.negatives.add(spec.get("not", ()), name)
            self.alone.add(spec.get("alone", ()), name)

    @classmethod
    def load(cls, normalizer: Normalizer, directory: Path | None = None) -> Emergencies:
        """Read `emergency.toml` from the config directory."""
        with (config_dir(directory) / "emergency.toml").open("rb") as fh:
            return cls(tomllib.load(fh), normalizer)

    def detect(self, norm: Normalized) -> Hazard | None:
        """The most pressing hazard of the message, or None."""
        toks = content_tokens(norm)
        if not toks:
            return None
        blocked = [(h.first, h.last) for h in self.negatives.find(toks)]
        found: dict[str, list[str]] = {}
        hits = self.phrases.find(toks)
        if len(toks) <= ALONE_TOKENS:  # "CHÁY!!!", "cháy rồi cứu"
            hits += self.alone.find(toks)
        for hit in hits:
            if any(a <= hit.last and hit.first <= b for a, b in blocked):
                continue  # overlaps "bóng đèn bị cháy" (a bulb), "giật điện thoại" (a theft)
            found.setdefault(hit.tag, []).append(hit.phrase.text.rstrip("!"))
        if not found:
            return None
        names = [n for n in self.order if n in found]
        # A named hazard beats a bare cry for help; its numbers come first, then the others'.
        named = [n for n in names if n != "help"] or names
        numbers: list[str] = []
        for n in named:
            numbers += [x for x in self.calls[n] if x not in numbers]
        words = tuple(w for n in named for w in found[n])
        return Hazard(named[0], tuple(numbers), words)

    def describe(self, numbers: tuple[str, ...], lang: str = "vi") -> str:
        """"114 (Cứu nạn, cứu hộ – PCCC), 115 (Cấp cứu y tế)" for the advice text."""
        table = self.numbers_en if lang == "en" and self.numbers_en else self.numbers
        return ", ".join(table.get(n, n) for n in numbers)
