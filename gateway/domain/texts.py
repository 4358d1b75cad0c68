"""Citizen-facing texts from `config/messages.vi.toml`, and where the config directory is."""

from __future__ import annotations

import tomllib
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any


def config_dir(override: Path | None = None) -> Path:
    """The province's config directory (PAHT_CONFIG_DIR) or the packaged default."""
    if override is not None:
        return Path(override)
    return Path(str(resources.files("config")))


def fold(text: str) -> str:
    """Lower-case, NFC, diacritic-free, single-spaced: for matching commands and keywords."""
    text = unicodedata.normalize("NFD", text.strip().lower()).replace("đ", "d")
    text = text.replace("\u0111", "d")
    stripped = "".join(c for c in text if unicodedata.category(c) != "Mn")
    return " ".join(unicodedata.normalize("NFC", stripped).split())


class Texts:
    """Lookup of message templates by dotted key, e.g. `texts.get("dialog.summary", text=...)`."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def load(cls, directory: Path | None = None) -> Texts:
        """Read messages.vi.toml from the config directory."""
        path = config_dir(directory) / "messages.vi.toml"
        with path.open("rb") as fh:
            return cls(tomllib.load(fh))

    def get(self, key: str, **values: Any) -> str:
        """The template at `key`, formatted with `values` (KeyError if missing)."""
        section, _, name = key.partition(".")
        template = self.data[section][name]
        return str(template).format(**values) if values else str(template)

    def words(self, name: str) -> set[str]:
        """A word list from [words], folded for matching."""
        return {fold(w) for w in self.data.get("words", {}).get(name, [])}
