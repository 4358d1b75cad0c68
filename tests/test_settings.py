"""Settings: every field is documented in config/example.env, and the file parses."""

from __future__ import annotations

from pathlib import Path

from gateway.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "example.env"


def _keys() -> dict[str, str]:
    keys = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            keys[name.strip()] = value.strip()
    return keys


def test_example_env_lists_every_setting() -> None:
    expected = {f"PAHT_{name.upper()}" for name in Settings.model_fields}
    assert set(_keys()) == expected


def test_example_env_values_are_valid_defaults(monkeypatch) -> None:
    for key, value in _keys().items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.review_policy == "low_confidence"
    assert settings.api_tokens == []


def test_csv_settings_are_split(monkeypatch) -> None:
    monkeypatch.setenv("PAHT_API_TOKENS", "a, b,,c")
    assert Settings(_env_file=None).api_tokens == ["a", "b", "c"]
