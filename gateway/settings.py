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
    review_min_score: float = 0.9
    review_min_margin: float = 0.15
    # The second opinion (nlp/second_opinion.py) also learns, at start-up, the reports operators
    # confirmed or re-sectored (at most this many, newest first; 0: the shipped examples only).
    learn_from_operators: int = 20000
    relearn_hours: float = 24.0  # and again every this many hours in worker processes (0: never)
    worker_concurrency: int = 4  # media downloads and transcriptions in parallel per batch
    worker_batch_size: int = 32  # events claimed and committed together (per-event fallback)
    # How long a batch waits for media and speech before it goes on without the slow events.
    worker_prepare_wait_seconds: float = 0.25
    worker_poll_seconds: float = 1.0
    worker_max_attempts: int = 5
    worker_lease_seconds: float = 30.0
    run_workers: bool = True  # background worker, outbox and scheduler in this process
    auto_migrate: bool = True  # apply migrations at start on SQLite
    conversation_window_minutes: int = 10

    # Operator console
    session_secret: str = ""
    console_sla_minutes: int = 15
    login_max_failures: int = 5  # failures per (account, IP) before each try waits longer
    login_lockout_minutes: int = 15  # the longest wait; failures older than this are forgotten
    login_max_concurrent_hashes: int = 2  # argon2 checks at once (64 MiB each), off the loop
    duplicate_radius_m: float = 200.0
    duplicate_window_hours: int = 72
    # Duty alerts and reminders pushed outside the console (gateway/workers/alerts.py):
    # a Telegram group through the bot of PAHT_TELEGRAM_TOKEN, and/or e-mail over SMTP.
    alert_telegram_chat_id: str = ""
    alert_smtp_host: str = ""
    alert_smtp_port: int = 25
    alert_smtp_user: str = ""
    alert_smtp_password: str = ""
    alert_smtp_starttls: bool = False
    alert_email_from: str = ""
    alert_email_to: str = ""  # comma-separated
    alert_push_max_attempts: int = 5

    # Rate limits (requests per minute; 0 disables)
    rate_limit_per_ip: int = 0
    rate_limit_per_sender: int = 0
    # Comma-separated IPs/CIDRs not limited per IP (providers' egress ranges: they carry every
    # citizen's traffic); still counted in paht_ratelimit_allowlisted_total.
    rate_limit_ip_allowlist: str = ""
    # Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For names the client.
    rate_limit_trusted_proxies: str = ""
    # Surfaces citizens and browsers reach directly (per client IP and minute; 0 disables).
    rate_limit_chat_per_ip: int = 120  # /chat/* and the web chat webhook
    rate_limit_chat_per_session: int = 60  # /chat/* per web chat session
    rate_limit_login_per_ip: int = 20  # POST /console/login, before any password is hashed
    rate_limit_login_global: int = 300  # POST /console/login from everyone together
    rate_limit_open311_per_ip: int = 60  # POST /open311/v2/requests

    # Server limits against slow or many clients
    http_header_timeout_seconds: float = 10.0  # a connection must send its request headers
    http_body_timeout_seconds: float = 30.0  # a request body must arrive within this
    http_keepalive_seconds: float = 15.0
    http_max_connections: int = 800  # keep below the process's open-file limit (LimitNOFILE)

    # Media
    media_url_ttl_hours: int = 72  # signed /media/ links in Open311 and forwarded reports
    upload_max_per_session: int = 10  # web chat photos per session and hour
    upload_max_bytes_per_ip: int = 50_000_000  # web chat photo bytes per client IP and hour
    upload_orphan_hours: int = 6  # uploads no message references are deleted after this

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
    voice_max_streams: int = 20  # concurrent Media Streams calls
    # The in-call read-back (issue 15): how long the call holds for the transcript, and the
    # duty operator's number (overrides config/voice.toml; empty there too: call-backs only).
    voice_readback: bool = True
    voice_hold_seconds: float = 45.0
    voice_operator_number: str = ""

    # Speech
    stt_engine: str = "vosk"  # engine for both flows, or "stream=vosk,recording=whisper"
    vosk_model: Path | None = None
    whisper_model: Path | None = None
    stt_workers: int = 1
    stt_timeout_seconds: float = 300.0  # one transcription; beyond it the report goes to review
    # Domain words (sector phrases, config/voice.toml places) given to the engines as a prompt.
    stt_vocabulary: bool = False  # off until measured to help (issue 15 §4)

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
