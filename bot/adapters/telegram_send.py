"""Sending to Telegram with every failure classified: sent, retry later, recipient gone, rejected.

Flood control (429 with `retry_after`) is waited out and the same request made again, so a message
arrives once; a recipient who blocked the bot, left or deleted the chat is GONE and never retried;
network trouble, Telegram's own errors and flood waits longer than we are willing to block are
RETRY (try again later); any other refusal is REJECTED (retrying would fail the same way: a bug).

The chat replies (bot.adapters.telegram and its feature routers) use `TelegramSender`: `send` for
rendered messages, `call` for any single Bot API call. Digest delivery does not: its outbox
reschedules instead of waiting (bot.adapters.telegram_sender), and shares only `classify`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import InlineKeyboardMarkup, Message, ReplyParameters
from aiogram.utils.formatting import Text

log = logging.getLogger(__name__)
T = TypeVar("T")

# Descriptions of 400 Bad Request answers that mean the chat itself is gone, not that we erred.
GONE_MARKERS = (
    "chat not found",
    "user not found",
    "user is deactivated",
    "peer_id_invalid",
    "group chat was deactivated",
    "bot was kicked",
    "bot was blocked",
    "not enough rights to send",
    "have no rights to send",
    "need administrator rights",
    "channel_private",
    "not a member",
)


class Outcome(StrEnum):
    """What became of a send."""

    SENT = "sent"
    RETRY = "retry"  # not delivered now; the same send may succeed later
    GONE = "gone"  # the recipient blocked the bot or the chat no longer exists: stop sending
    REJECTED = "rejected"  # Telegram refused the request itself; retrying will not help


@dataclass(frozen=True)
class SendResult:
    """The outcome of sending one rendered reply (all its parts) to one chat."""

    outcome: Outcome
    chat_id: int  # the chat written to (a group that became a supergroup has a new id)
    messages: list[Message] = field(default_factory=list)  # the parts sent, even when a later part failed
    retry_after: float | None = None  # for RETRY after flood control: seconds Telegram asked us to wait

    @property
    def ok(self) -> bool:
        """True when every part was sent."""
        return self.outcome is Outcome.SENT


def classify(exc: TelegramAPIError) -> Outcome:
    """Sort a failed Bot API call into RETRY, GONE or REJECTED."""
    if isinstance(exc, TelegramRetryAfter | TelegramNetworkError | TelegramServerError):
        return Outcome.RETRY
    if isinstance(exc, TelegramForbiddenError):
        return Outcome.GONE
    if isinstance(exc, TelegramBadRequest | TelegramNotFound) and not isinstance(exc, TelegramEntityTooLarge):
        description = exc.message.lower()
        if any(marker in description for marker in GONE_MARKERS):
            return Outcome.GONE
    return Outcome.REJECTED


async def call_with_flood_wait(
    bot: Bot,
    method: TelegramMethod[T],
    *,
    max_wait: float = 60.0,
    attempts: int = 3,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Make one Bot API call, waiting out flood control (TelegramRetryAfter) between attempts.

    The request is repeated only after Telegram refused it with 429, so it takes effect once. When
    Telegram asks for more than `max_wait` seconds, or still refuses after `attempts` tries, the
    last TelegramRetryAfter is raised for the caller to reschedule. Other errors propagate as-is.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await bot(method)
        except TelegramRetryAfter as exc:
            if attempt == attempts or exc.retry_after > max_wait:
                raise
            log.info("flood control on %s: waiting %ss", method.__api_method__, exc.retry_after)
            await sleep(exc.retry_after)
    raise AssertionError("unreachable")  # pragma: no cover


GoneHook = Callable[[int, str], Awaitable[None] | None]


class TelegramSender:
    """Sends rendered replies (lists of aiogram `Text`) to a chat, classifying every failure.

    `send` never raises for a failed delivery: it returns a SendResult. Recipients found GONE are
    passed to `on_gone(chat_id, description)` (to mark a subscriber inactive, count blocked users).
    Only a broken bot (a revoked token, a conflicting instance) raises.
    """

    def __init__(
        self,
        *,
        on_gone: GoneHook | None = None,
        max_wait: float = 60.0,
        attempts: int = 3,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.on_gone = on_gone
        self.max_wait = max_wait
        self.attempts = attempts
        self._sleep = sleep

    async def call(self, bot: Bot, method: TelegramMethod[T]) -> T:
        """One Bot API call with flood control waited out (see call_with_flood_wait)."""
        return await call_with_flood_wait(
            bot, method, max_wait=self.max_wait, attempts=self.attempts, sleep=self._sleep
        )

    async def send(
        self,
        bot: Bot,
        chat_id: int,
        parts: Sequence[Text],
        *,
        reply_markup: InlineKeyboardMarkup | None = None,
        reply_to: int | None = None,
        disable_notification: bool | None = None,
    ) -> SendResult:
        """Send the parts in order: the first replies to `reply_to`, the last carries the keyboard."""
        sent: list[Message] = []
        for number, part in enumerate(parts):
            last = number == len(parts) - 1
            method = SendMessage(
                chat_id=chat_id,
                **part.as_kwargs(),
                reply_markup=reply_markup if last else None,
                reply_parameters=(
                    ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
                    if reply_to is not None and number == 0
                    else None
                ),
                disable_notification=disable_notification,
            )
            try:
                sent.append(await self.call(bot, method))
            except (TelegramUnauthorizedError, TelegramConflictError):
                raise  # the bot itself is broken: not this recipient's problem
            except TelegramMigrateToChat as exc:  # a group became a supergroup: write there
                rest = await self.send(
                    bot, exc.migrate_to_chat_id, parts[number:], reply_markup=reply_markup,
                    disable_notification=disable_notification,
                )
                return SendResult(rest.outcome, rest.chat_id, sent + rest.messages, rest.retry_after)
            except TelegramAPIError as exc:
                return await self._failed(chat_id, sent, exc)
        return SendResult(Outcome.SENT, chat_id, sent)

    async def _failed(self, chat_id: int, sent: list[Message], exc: TelegramAPIError) -> SendResult:
        outcome = classify(exc)
        retry_after = float(exc.retry_after) if isinstance(exc, TelegramRetryAfter) else None
        if outcome is Outcome.GONE:
            log.info("chat %s is gone: %s", chat_id, exc.message)
            if self.on_gone is not None:
                pending = self.on_gone(chat_id, exc.message)
                if pending is not None:
                    await pending
        elif outcome is Outcome.RETRY:
            log.warning("could not send to chat %s now (%s): %s", chat_id, type(exc).__name__, exc.message)
        else:
            log.error("Telegram rejected a message to chat %s: %s", chat_id, exc.message)
        return SendResult(outcome, chat_id, sent, retry_after)
