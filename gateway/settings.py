"""Settings: one pydantic-settings object read from `PAHT_*` variables (and an optional .env).

Every key is listed with a comment in `config/example.env`. The object is passed into
`create_app(settings)`; nothing reads the environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """All gateway settings. Secrets come only from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="PAHT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Core
    database_url: str = "sqlite:///var/paht.db"
    public_base_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = 8080
    var_dir: Path = Path("var")
    media_dir: Path | None = None
    config_dir: Path | None = None
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1_000_000
    max_media_bytes: int = 20_000_000
    timezone: str = "Asia/Ho_Chi_Minh"
    tracking_prefix: str = "PA"
    default_region: str = "VN"

    # APIs
    api_tokens: CsvList = Field(default_factory=list)
    open311_api_keys: CsvList = Field(default_factory=list)
    open311_jurisdiction_id: str = "paht.local"

    # Pipeline, classifier and review
    review_policy: Literal["low_confidence", "all", "none"] = "low_confidence"
    review_min_score: float = 0.55
    review_min_margin: float = 0.15
    worker_concurrency: int = 4  # media downloads and transcriptions in parallel per batch
    worker_batch_size: int = 32  # events claimed and committed together (per-event fallback)
    worker_poll_seconds: float = 1.0
    worker_max_attempts: int = 5
    worker_lease_seconds: float = 30.0
    run_workers: bool = True  # background worker, outbox and scheduler in this process
    auto_migrate: bool = True  # apply migrations at start on SQLite
    conversation_window_minutes: int = 10

    # Operator console
    session_secret: str = ""
    console_sla_minutes: int = 15
    login_max_failures: int = 5
    login_lockout_minutes: int = 15
    duplicate_radius_m: float = 200.0
    duplicate_window_hours: int = 72

    # Rate limits (requests per minute; 0 disables)
    rate_limit_per_ip: int = 0
    rate_limit_per_sender: int = 0
    # Comma-separated IPs/CIDRs not limited per IP (providers' egress ranges: they carry every
    # citizen's traffic); still counted in paht_ratelimit_allowlisted_total.
    rate_limit_ip_allowlist: str = ""
    # Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For names the client.
    rate_limit_trusted_proxies: str = ""

    # Web chat demo channel
    web_enabled: bool = True

    # Facebook Messenger
    facebook_app_secret: str = ""
    facebook_verify_token: str = ""
    facebook_page_token: str = ""
    graph_api_base: str = "https://graph.facebook.com/v21.0"

    # Zalo OA
    zalo_app_id: str = ""
    zalo_app_secret: str = ""
    zalo_oa_secret: str = ""
    zalo_access_token: str = ""
    zalo_refresh_token: str = ""
    zalo_api_base: str = "https://openapi.zalo.me"
    zalo_oauth_base: str = "https://oauth.zaloapp.com"

    # Telegram
    telegram_token: str = ""
    telegram_secret: str = ""
    telegram_api_base: str = "https://api.telegram.org"

    # Twilio (SMS and voice)
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_number: str = ""
    twilio_api_base: str = "https://api.twilio.com"
    sms_ascii_fallback: bool = False
    voice_mode: Literal["record", "stream"] = "record"
    voice_max_seconds: int = 120

    # Speech
    stt_engine: str = "vosk"  # engine for both flows, or "stream=vosk,recording=whisper"
    vosk_model: Path | None = None
    whisper_model: Path | None = None
    stt_workers: int = 1

    # Forwarding
    forward_sink: Literal["database", "open311", "webhook"] = "database"
    forward_url: str = ""
    forward_api_key: str = ""
    forward_secret: str = ""
    forward_max_attempts: int = 8
    outbox_max_attempts: int = 8  # a message to a citizen: sends before it is given up
    forward_database_url: str = ""
    central_callback_secret: str = ""
    forward_timeout_seconds: float = 10.0  # per HTTP delivery to the central system
    central_poll_seconds: int = 300  # Open311 sink: how often to poll requests/{id}.json

    @field_validator("api_tokens", "open311_api_keys", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    def resolved_media_dir(self) -> Path:
        """Where downloaded media are stored."""
        return self.media_dir or (self.var_dir / "media")
