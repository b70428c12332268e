"""The Telegram adapter: aiogram routers that turn updates into core calls and rendered replies.

`build_dispatcher(briefing, ...)` assembles one Router per feature: `basics` (/start, /help,
/sources), `admin` (bot.adapters.telegram_admin), any extra routers (subscriptions), and last
`questions` (bot.adapters.telegram_questions), which takes every remaining question. Services
are injected as workflow data, so a handler names what it needs (`briefing`, `settings`,
`sender`, `answers`, `stats`, ...).

A chat's messages are handled one after another (a per-chat lock), different chats concurrently;
button presses skip the queue, since Telegram wants them acknowledged within seconds;
the core is synchronous, so it runs in a worker thread. Briefbot's own errors become user messages
in one error handler; anything else gets a short apology and is logged with its traceback by
aiogram, and the bot carries on with the next update.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiogram import BaseMiddleware, Bot, Dispatcher, Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandStart, ExceptionTypeFilter
from aiogram.methods import SetMyCommands
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    ErrorEvent,
    Message,
    TelegramObject,
    Update,
)
from aiogram.utils.formatting import Text

from bot.adapters.pool import AskPool
from bot.adapters.telegram_admin import ADMIN_COMMANDS, admin_router, is_admin
from bot.adapters.telegram_questions import AnswerCache, questions_router
from bot.adapters.telegram_send import TelegramSender
from bot.answer import Answer
from bot.briefing import Briefing
from bot.config import Settings
from bot.errors import BriefbotError, InputError, SourceError
from bot.render import telegram as render

log = logging.getLogger(__name__)

COMMANDS = [
    ("start", "Say hello"),
    ("help", "How to ask, and the commands"),
    ("ask", "Ask a question about the sources"),
    ("sources", "The sources, their languages and when they were indexed"),
]


# ---- services -----------------------------------------------------------------------------------
class SubscriberCount(Protocol):
    """How many chats are subscribed to digests (the subscriptions feature provides it)."""

    async def count(self) -> int:
        """The number of active subscribers."""
        ...


@dataclass
class BotStats:
    """Counters for /stats; the chats found gone (blocked the bot, deleted) are recorded here."""

    started: float = field(default_factory=time.time)
    questions: int = 0
    answered: int = 0
    gone: set[int] = field(default_factory=set)

    def count(self, answer: Answer) -> None:
        """Count a question and whether the sources answered it."""
        self.questions += 1
        self.answered += answer.answered

    def record_gone(self, chat_id: int, description: str) -> None:
        """Remember a chat we can no longer write to (see TelegramSender.on_gone)."""
        self.gone.add(chat_id)


# ---- middleware ---------------------------------------------------------------------------------
class ChatOrder(BaseMiddleware):
    """One update at a time per chat, in arrival order (asyncio.Lock is FIFO); chats run concurrently.

    Button presses (callback queries) are exempt: they must be acknowledged within a few seconds,
    which a question being answered in the same chat could otherwise delay, and they need no order.

    aiogram's error middleware sits outside this one, so an error notice is sent just after the
    chat's lock is released: before the next answer in practice (that one needs the core first),
    though not strictly guaranteed.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            chat = data.get("event_chat")
            if chat is None or (isinstance(event, Update) and event.callback_query is not None):
                return await handler(event, data)
            lock = self._locks.get(chat.id)
            if lock is None:
                lock = self._locks[chat.id] = asyncio.Lock()
            async with lock:
                return await handler(event, data)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def drain(self) -> None:
        """At shutdown: let the updates being handled finish (for up to 10 s)."""
        pending = {t for t in self._in_flight if t is not asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=10)


# ---- routers ------------------------------------------------------------------------------------
def basics_router() -> Router:
    """/start, /help and /sources."""
    router = Router(name="basics")

    @router.message(CommandStart())
    async def start(message: Message, bot: Bot, sender: TelegramSender) -> None:
        await sender.send(bot, message.chat.id, render.telegram_start())

    @router.message(Command("help"))
    async def help_(
        message: Message, bot: Bot, sender: TelegramSender, settings: Settings, commands: list[tuple[str, str]]
    ) -> None:
        admin = ADMIN_COMMANDS if is_admin(message.from_user, settings) else []
        await sender.send(bot, message.chat.id, render.telegram_help(commands, admin))  # with the features' ones

    @router.message(Command("sources"))
    async def sources(message: Message, bot: Bot, sender: TelegramSender, briefing: Briefing) -> None:
        infos = await asyncio.to_thread(briefing.sources)
        await sender.send(bot, message.chat.id, render.telegram_sources(infos))

    return router


# ---- errors: Briefbot's errors become messages here, and only here ---------------------------------
async def on_briefbot_error(event: ErrorEvent, bot: Bot, sender: TelegramSender) -> None:
    """InputError, SourceError and other BriefbotErrors: tell the user what went wrong."""
    exc = event.exception
    if isinstance(exc, InputError):
        parts = [Text(str(exc))]
    elif isinstance(exc, SourceError):
        parts = render.telegram_notice(render.TELEGRAM_TEXT["source_error"], str(exc))
    else:
        parts = render.telegram_notice(render.TELEGRAM_TEXT["briefbot_error"], str(exc))
    user, chat = _origin(event)
    log.warning("user %s in chat %s: %s: %s", user, chat, type(exc).__name__, exc)
    await _tell(event, bot, sender, parts)


async def on_unexpected_error(event: ErrorEvent, bot: Bot, sender: TelegramSender) -> Any:
    """Anything else is a bug: apologise, then leave it unhandled so aiogram logs the traceback."""
    await _tell(event, bot, sender, [Text(render.TELEGRAM_TEXT["apology"])])
    return UNHANDLED


def _origin(event: ErrorEvent) -> tuple[int | None, int | None]:
    update = event.update
    source = update.message or update.callback_query
    user = source.from_user.id if source is not None and source.from_user is not None else None
    message = update.message or (
        update.callback_query.message if update.callback_query is not None else None
    )
    return user, message.chat.id if message is not None else None


async def _tell(event: ErrorEvent, bot: Bot, sender: TelegramSender, parts: list[Text]) -> None:
    """Write to the chat the update came from (a button's query is answered before any work)."""
    _, chat = _origin(event)
    if chat is not None:
        await sender.send(bot, chat, parts)


# ---- assembly -----------------------------------------------------------------------------------
def build_dispatcher(
    briefing: Briefing,
    *,
    extra_routers: Iterable[Router] = (),
    extra_commands: Iterable[tuple[str, str]] = (),
    **services: Any,
) -> Dispatcher:
    """A Dispatcher with every feature's router and the services handlers need.

    `extra_routers` (e.g. subscriptions) go before the question catch-all, and `extra_commands`
    ((name, description) pairs) are registered with setMyCommands at start next to the built-in
    ones. `services` are added to the workflow data, and may replace the defaults: `settings`,
    `sender` (TelegramSender), `answers` (AnswerCache), `stats` (BotStats), `ask_pool` (AskPool),
    `subscribers` (SubscriberCount).
    """
    stats = services.pop("stats", None) or BotStats()
    defaults: dict[str, Any] = {
        "settings": briefing.settings,
        "stats": stats,
        "sender": TelegramSender(on_gone=stats.record_gone),
        "answers": AnswerCache(),
        "ask_pool": AskPool(),
    }  # no `subscribers` default: a feature may set it at startup, and polling snapshots these
    dp = Dispatcher(
        briefing=briefing,
        **{**defaults, **services},
        commands=[*COMMANDS, *extra_commands],
    )
    order = ChatOrder()
    dp.update.outer_middleware(order)
    dp.shutdown.register(order.drain)
    dp.shutdown.register(dp["ask_pool"].close)
    dp.errors.register(on_briefbot_error, ExceptionTypeFilter(BriefbotError))
    dp.errors.register(on_unexpected_error)
    dp.include_routers(basics_router(), admin_router(), *extra_routers, questions_router())
    dp.startup.register(register_commands)
    return dp


async def register_commands(
    bot: Bot, settings: Settings, commands: list[tuple[str, str]], sender: TelegramSender
) -> None:
    """setMyCommands: everyone's commands, and for each admin's private chat the admin ones too."""
    public = [BotCommand(command=name, description=text) for name, text in commands]
    await sender.call(bot, SetMyCommands(commands=public, scope=BotCommandScopeDefault()))
    admin = public + [BotCommand(command=name, description=text) for name, text in ADMIN_COMMANDS]
    for admin_id in settings.telegram_admin_ids:
        try:
            await sender.call(bot, SetMyCommands(commands=admin, scope=BotCommandScopeChat(chat_id=admin_id)))
        except TelegramBadRequest as exc:  # the admin has not opened a chat with the bot yet
            log.warning("admin commands not registered for %s: %s", admin_id, exc.message)
