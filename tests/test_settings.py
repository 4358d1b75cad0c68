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


def _channel_configs() -> list[type]:
    from channels.base import ChannelConfig
    from channels.registry import CHANNEL_NAMES, channel_class

    configs = {channel_class(name).config_model for name in CHANNEL_NAMES}
    assert ChannelConfig not in configs  # every channel declares its own typed config
    return sorted(configs, key=lambda c: c.__name__)


def test_every_channel_config_alias_is_a_settings_field() -> None:
    """A renamed setting must break here, not silently disable a channel in production."""
    fields = set(Settings.model_fields)
    for config in _channel_configs():
        for name, info in config.model_fields.items():
            assert isinstance(info.validation_alias, str), (config.__name__, name)
            assert info.validation_alias in fields, (config.__name__, info.validation_alias)
            assert info.is_required(), (config.__name__, name)  # no fallback default


def test_a_missing_setting_fails_at_start_up() -> None:
    import pytest
    from pydantic import ValidationError

    from channels.facebook import FacebookConfig

    dumped = Settings(_env_file=None).model_dump()  # type: ignore[call-arg]
    del dumped["facebook_page_token"]
    with pytest.raises(ValidationError, match="facebook_page_token"):
        FacebookConfig.model_validate(dumped)
