"""Settings, read from BRIEFBOT_* environment variables (and an optional .env) once in main()."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_data_dir() -> Path:
    """The user's data home (XDG) joined with 'briefbot'."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "briefbot"


class Settings(BaseSettings):
    """Everything Briefbot can be configured with; secrets are SecretStr so they never print."""

    model_config = SettingsConfigDict(
        env_prefix="BRIEFBOT_", env_file=".env", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    sources: Path | None = Field(
        default=None, description="A sources.toml manifest; the packaged seeds when unset."
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("BRIEFBOT_DATABASE_URL", "DATABASE_URL")
    )
    log_level: str = "WARNING"
    max_question_chars: int = 2000
    quotes_per_answer: int = 3

    telegram_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BRIEFBOT_TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN")
    )
    telegram_api_base: str | None = Field(
        default=None, validation_alias=AliasChoices("BRIEFBOT_TELEGRAM_API_BASE", "TELEGRAM_API_BASE")
    )
    telegram_admin_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("BRIEFBOT_TELEGRAM_ADMIN_IDS", "TELEGRAM_ADMIN_IDS"),
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret token Telegram sends with every webhook request; random per run when unset.",
        validation_alias=AliasChoices("BRIEFBOT_TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_WEBHOOK_SECRET"),
    )
    telegram_quotes_shown: int = 1  # quotes in the first reply; the rest behind "More quotes"
    discord_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BRIEFBOT_DISCORD_BOT_TOKEN", "DISCORD_BOT_TOKEN")
    )
    discord_admin_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("BRIEFBOT_DISCORD_ADMIN_IDS", "DISCORD_ADMIN_IDS"),
    )
    discord_api_base: str | None = Field(
        default=None,
        description="Another Discord API (tests, a proxy), e.g. http://127.0.0.1:8082/api/v10.",
        validation_alias=AliasChoices("BRIEFBOT_DISCORD_API_BASE", "DISCORD_API_BASE"),
    )
    discord_mentions: bool = True  # answer messages that mention the bot (the non-privileged message intents)
    discord_message_content: bool = False  # also request the privileged Message Content intent

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BRIEFBOT_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("BRIEFBOT_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    llm_model: str | None = None
    llm_timeout: float = 30.0

    default_timezone: str = "UTC"
    default_digest_time: str = "08:00"

    # digests: content, scheduling and delivery (bot/digest.py, scheduler.py, delivery.py)
    digest_quotes_per_source: int = 3
    digest_max_chars: int = 3500  # one Telegram message (4096) with room for titles
    digest_grace_hours: float = 12.0  # a digest missed while down is sent at start within this
    digest_reconcile_minutes: float = 5.0  # jobs re-read from the table, failed enqueues retried
    delivery_rate_global: float = 25.0  # messages/s for the whole bot (Telegram: ~30)
    delivery_rate_per_chat: float = 1.0  # messages/s to one private chat
    delivery_group_per_minute: int = 20  # messages/min to one group or channel
    delivery_concurrency: int = 8  # sends in flight; bounds duplicates after a crash
    delivery_retry_window: float = 6 * 3600.0  # seconds after queueing that failures are still retried
    delivery_max_attempts: int | None = None  # an optional cap on attempts besides the window
    delivery_backoff_seconds: float = 5.0  # first retry delay, doubled per attempt
    delivery_backoff_max_seconds: float = 600.0  # retries of a long outage every ~10 minutes
    delivery_lease_seconds: float = 60.0  # a claimed row is re-claimable after this

    @field_validator("telegram_admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        """Accept '1,2 3' as well as a JSON list."""
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):
            text = value.strip().strip("[]")
            return [int(part) for part in text.replace(",", " ").split() if part]
        return value

    @field_validator("discord_admin_ids", mode="before")
    @classmethod
    def _split_discord_ids(cls, value: object) -> object:
        """Accept '1,2 3' as well as a JSON list, like TELEGRAM_ADMIN_IDS."""
        return cls._split_ids(value)

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL, or the SQLite file in the data dir."""
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'briefbot.sqlite3'}"
