"""Every text a citizen can see speaks in the centre's polite voice: never "bạn"."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from typing import Any


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in _strings(v, f"{path}[{i}]")]
    return []


def test_no_citizen_text_says_ban() -> None:
    data = tomllib.loads(files("config").joinpath("messages.vi.toml").read_text("utf-8"))
    # [words] are what citizens type (greetings such as "chào bạn" are matched, not said).
    said = [(k, v) for k, v in _strings(data) if not k.startswith(".words")]
    assert len(said) > 100
    bad = [(k, v) for k, v in said if re.search(r"\bbạn\b", v, re.IGNORECASE)]
    assert bad == []
