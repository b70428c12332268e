"""Logging set-up, once in main(): one format, and secrets (tokens, API keys) never printed."""

from __future__ import annotations

import logging
import sys

from bot.config import Settings

QUIET_LOGGERS = ("httpx", "httpcore", "bm25s", "aiogram.event", "discord.gateway", "openai")


def setup_logging(settings: Settings, verbose: bool = False) -> None:
    """Log to stderr at the configured level, with every configured secret redacted."""
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    for secret in (settings.telegram_bot_token, settings.discord_bot_token, settings.openai_api_key):
        if secret is not None and secret.get_secret_value():
            redact_in_logs(secret.get_secret_value())


class RedactSecret(logging.Filter):
    """Replaces a secret (the bot token) in log messages and tracebacks with '<redacted>'."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "<redacted>"), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self.secret in record.exc_text:
            record.exc_text = record.exc_text.replace(self.secret, "<redacted>")
        return True


def redact_in_logs(secret: str) -> None:
    """Install RedactSecret on every handler of the root logger (records of all loggers pass there)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecret) and f.secret == secret for f in handler.filters):
            handler.addFilter(RedactSecret(secret))
