"""Citizen-facing texts from `config/messages.vi.toml` (and `messages.en.toml` for citizens
who write English), and where the config directory is."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any


def config_dir(override: Path | None = None) -> Path:
    """The province's config directory (PAHT_CONFIG_DIR) or the packaged default."""
    if override is not None:
        return Path(override)
    return Path(str(resources.files("config")))


# Combining marks and variation selectors (Vietnamese tone and vowel marks are all in the
# first block); one regex is about twice as fast as testing each character's category.
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff"
                    "\ufe00-\ufe0f\ufe20-\ufe2f]")


@lru_cache(maxsize=16384)
def fold(text: str) -> str:
    """Lower-case, NFC, diacritic-free, single-spaced: for matching commands and keywords."""
    text = unicodedata.normalize("NFD", text.strip().lower()).replace("đ", "d")
    text = text.replace("\u0111", "d")  # đ has no decomposition: it is its own letter
    return " ".join(unicodedata.normalize("NFC", _MARKS.sub("", text)).split())


class Texts:
    """Lookup of message templates by dotted key, e.g. `texts.get("dialog.summary", text=...)`.

    `lang="en"` reads the English set first and falls back to Vietnamese for a missing key.
    """

    def __init__(self, data: dict[str, Any], en: dict[str, Any] | None = None) -> None:
        self.data = data
        self.en = en or {}

    @classmethod
    def load(cls, directory: Path | None = None) -> Texts:
        """Read messages.vi.toml (and messages.en.toml when present) from the config directory."""
        base = config_dir(directory)
        with (base / "messages.vi.toml").open("rb") as fh:
            data = tomllib.load(fh)
        en_path = base / "messages.en.toml"
        if not en_path.exists():
            en_path = config_dir(None) / "messages.en.toml"
        en: dict[str, Any] = {}
        if en_path.exists():
            with en_path.open("rb") as fh:
                en = tomllib.load(fh)
        return cls(data, en)

    def has(self, key: str, lang: str = "vi") -> bool:
        """Whether a template exists at `key` (in `lang`, or in Vietnamese)."""
        section, _, name = key.partition(".")
        return name in self.data.get(section, {}) or (
            lang == "en" and name in self.en.get(section, {}))

    def get(self, key: str, lang: str = "vi", **values: Any) -> str:
        """The template at `key`, formatted with `values` (KeyError if missing)."""
        section, _, name = key.partition(".")
        template: Any = None
        if lang == "en":
            template = self.en.get(section, {}).get(name)
        if template is None:
            template = self.data[section][name]
        return str(template).format(**values) if values else str(template)

    def words(self, name: str) -> set[str]:
        """A word list from [words], folded for matching."""
        return {fold(w) for w in self.data.get("words", {}).get(name, [])}
