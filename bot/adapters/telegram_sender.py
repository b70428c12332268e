"""The Telegram `Sender`: one digest -> one message with entities, aiogram errors -> SendError kinds."""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
)
from aiogram.utils.formatting import BlockQuote, Bold, Italic, Text, sizeof

from bot.adapters.telegram_send import Outcome, classify
from bot.delivery import PermanentSendError, RecipientGone, RetryAfter, Target, TransientSendError
from bot.digest import Digest

TELEGRAM_LIMIT = 4096


def digest_message(digest: Digest, limit: int = TELEGRAM_LIMIT) -> Text:
    """A digest as Telegram text with entities: per source a bold title and its quotes as block quotes."""
    parts: list[Text | str] = []
    if not digest.new:
        parts += [Italic("Nothing new since your last digest; here is the current state."), "\n\n"]
    for section in digest.sections:
        block: list[Text | str] = [Bold(section.title), "\n"]
        for quote in section.quotes:
            block += [BlockQuote(quote.text, " ", Italic(f"(¶{quote.paragraph})")), "\n"]
        block.append("\n")
        if parts and sizeof(Text(*parts, *block).as_kwargs()["text"]) > limit:
            break  # the digest is built to fit; this only guards against a misconfigured budget
        parts += block
    return Text(*parts)


def chat_ref(chat_id: str) -> int | str:
    """A numeric chat id as int; '@channel' names as they are."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


def error_text(exc: TelegramAPIError) -> str:
    """A failure as stored in the outbox: Telegram's own description, never a network error's text.

    A network error's text can hold the request URL, which contains the bot token.
    """
    if isinstance(exc, TelegramNetworkError):
        cause = exc.__cause__
        return f"{type(exc).__name__} ({type(cause).__name__})" if cause is not None else type(exc).__name__
    return f"{type(exc).__name__}: {exc.message}"


class TelegramDigestSender:
    """Sends digests through an aiogram Bot (whose session may point at any Bot API server)."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, target: Target, message: Digest) -> None:
        """Send one digest; raise RetryAfter, RecipientGone, TransientSendError or PermanentSendError."""
        content = digest_message(message)
        try:
            await self.bot.send_message(
                chat_id=chat_ref(target.chat_id), **content.as_kwargs()
            )
        except TelegramRetryAfter as exc:
            raise RetryAfter(exc.retry_after, str(exc)) from exc
        except TelegramMigrateToChat as exc:
            raise RecipientGone(f"migrated to {exc.migrate_to_chat_id}") from exc
        except TelegramAPIError as exc:
            outcome = classify(exc)  # one classification for answers and digests alike
            if outcome is Outcome.GONE:
                raise RecipientGone(exc.message) from exc
            if outcome is Outcome.RETRY:
                raise TransientSendError(error_text(exc)) from exc
            raise PermanentSendError(exc.message) from exc
