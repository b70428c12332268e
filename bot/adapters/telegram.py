"""The Telegram adapter: aiogram routers that turn updates into core calls and rendered replies.

`build_dispatcher(briefing, ...)` assembles one Router per feature: `basics` (/start, /help,
/sources), `admin` (bot.adapters.telegram_admin), any extra routers (subscriptions), and last
`questions`, which takes every remaining question. Services are injected as workflow data, so a
handler names what it needs (`briefing`, `settings`, `sender`, `answers`, `stats`, ...).

A chat's updates are handled one after another (a per-chat lock), different chats concurrently;
the core is synchronous, so it runs in a worker thread. Briefbot's own errors become user messages
in one error handler; anything else gets a short apology and is logged with its traceback by
aiogram, and the bot carries on with the next update.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiogram import BaseMiddleware, Bot, Dispatcher, F, Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.enums import ChatType, MessageEntityType
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import BaseFilter, Command, CommandObject, CommandStart, ExceptionTypeFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SetMyCommands
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    CallbackQuery,
    ErrorEvent,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
)
from aiogram.utils.formatting import Text
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot import render
from bot.adapters.telegram_admin import ADMIN_COMMANDS, admin_router, is_admin
from bot.adapters.telegram_send import TelegramSender
from bot.answer import Answer, Quote
from bot.briefing import Briefing
from bot.config import Settings
from bot.errors import BriefbotError, InputError, SourceError
from bot.index import Index
from bot.segment import Paragraph

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


class AskPool:
    """Runs the core's CPU-bound `ask` on a few worker threads, so the event loop stays free.

    About one worker per two CPUs: each question is embedded with two BLAS threads, and more
    concurrent questions only contend for the cores (measured: 1-2 workers answer about twice as
    many questions per second as 6 on a 2-CPU machine). Admin reloads do not queue behind them.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, (os.cpu_count() or 2) // 2)
        self._executor: ThreadPoolExecutor | None = None

    async def ask(self, briefing: Briefing, question: str) -> Answer:
        """briefing.ask(question) on a worker thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="briefbot-ask")
        return await asyncio.get_running_loop().run_in_executor(self._executor, briefing.ask, question)

    async def close(self) -> None:
        """Stop the workers (at shutdown)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class AnswerCache:
    """Recent answers by a short key, so inline buttons (64 bytes of data) can refer to them."""

    def __init__(self, size: int = 2000) -> None:
        self._size = size
        self._answers: OrderedDict[int, Answer] = OrderedDict()
        self._expanded: set[int] = set()
        self._next = 1

    def put(self, answer: Answer) -> int:
        """Keep an answer; returns its key. The oldest answers are forgotten."""
        key, self._next = self._next, self._next + 1
        self._answers[key] = answer
        while len(self._answers) > self._size:
            self._expanded.discard(self._answers.popitem(last=False)[0])
        return key

    def get(self, key: int) -> Answer | None:
        """The answer under key, or None when it was forgotten (or the bot restarted)."""
        return self._answers.get(key)

    def expand(self, key: int) -> bool:
        """True the first time an answer's further quotes are asked for, False after that."""
        if key in self._expanded:
            return False
        self._expanded.add(key)
        return True


class AnswerAction(CallbackData, prefix="a"):
    """An inline button under an answer: 'more' quotes, or a quote's paragraph in 'ctx'."""

    action: str
    key: int
    quote: int = 0


# ---- middleware ---------------------------------------------------------------------------------
class ChatOrder(BaseMiddleware):
    """One update at a time per chat, in arrival order (asyncio.Lock is FIFO); chats run concurrently."""

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
            if chat is None:
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


# ---- filters ------------------------------------------------------------------------------------
class Addressed(BaseFilter):
    """A text meant as a question: any text in a private chat; in groups a mention or a reply to us."""

    async def __call__(self, message: Message, bot: Bot) -> bool | dict[str, Any]:
        text = message.text or ""
        if text.startswith("/"):
            return False
        if message.chat.type == ChatType.PRIVATE:
            return {"question": text}
        me = await bot.me()
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
            return {"question": text}
        mention = f"@{me.username}".lower()
        for entity in message.entities or []:
            if entity.type == MessageEntityType.MENTION and entity.extract_from(text).lower() == mention:
                question = text.replace(entity.extract_from(text), " ").strip()
                return {"question": question}
        return False


# ---- routers ------------------------------------------------------------------------------------
def basics_router() -> Router:
    """/start, /help and /sources."""
    router = Router(name="basics")

    @router.message(CommandStart())
    async def start(message: Message, bot: Bot, sender: TelegramSender) -> None:
        await sender.send(bot, message.chat.id, render.telegram_start())

    @router.message(Command("help"))
    async def help_(message: Message, bot: Bot, sender: TelegramSender, settings: Settings) -> None:
        admin = ADMIN_COMMANDS if is_admin(message.from_user, settings) else []
        await sender.send(bot, message.chat.id, render.telegram_help(COMMANDS, admin))

    @router.message(Command("sources"))
    async def sources(message: Message, bot: Bot, sender: TelegramSender, briefing: Briefing) -> None:
        infos = await asyncio.to_thread(briefing.sources)
        await sender.send(bot, message.chat.id, render.telegram_sources(infos))

    return router


def questions_router() -> Router:
    """Questions (/ask, private text, mentions and replies in groups) and the buttons under answers."""
    router = Router(name="questions")

    @router.message(Command("ask"))
    async def ask(
        message: Message, command: CommandObject, bot: Bot, briefing: Briefing, sender: TelegramSender,
        answers: AnswerCache, stats: BotStats, settings: Settings, ask_pool: AskPool,
    ) -> None:
        if not (command.args or "").strip():
            await sender.send(bot, message.chat.id, [Text(render.TELEGRAM_TEXT["ask_usage"])])
            return
        await reply_answer(message, command.args or "", bot, briefing, sender, answers, stats, settings, ask_pool)

    @router.message(F.text, Addressed())
    async def question(
        message: Message, question: str, bot: Bot, briefing: Briefing, sender: TelegramSender,
        answers: AnswerCache, stats: BotStats, settings: Settings, ask_pool: AskPool,
    ) -> None:
        await reply_answer(message, question, bot, briefing, sender, answers, stats, settings, ask_pool)

    @router.callback_query(AnswerAction.filter(F.action == "more"))
    async def more(
        query: CallbackQuery, callback_data: AnswerAction, bot: Bot, sender: TelegramSender,
        answers: AnswerCache, settings: Settings,
    ) -> None:
        answer = answers.get(callback_data.key)
        if answer is None or not isinstance(query.message, Message):
            await sender.call(bot, query.answer(render.TELEGRAM_TEXT["expired"], show_alert=True))
            return
        await sender.call(bot, query.answer())
        if not answers.expand(callback_data.key):
            return  # a second tap before the button disappeared
        shown = settings.telegram_quotes_shown
        await sender.send(
            bot, query.message.chat.id, render.telegram_more_quotes(answer, shown),
            reply_markup=answer_keyboard(callback_data.key, answer, range(shown, len(answer.quotes))),
            reply_to=query.message.message_id,
        )
        first = answer_keyboard(callback_data.key, answer, range(min(shown, len(answer.quotes))))
        await sender.call(bot, query.message.edit_reply_markup(reply_markup=first))

    @router.callback_query(AnswerAction.filter(F.action == "ctx"))
    async def context(
        query: CallbackQuery, callback_data: AnswerAction, bot: Bot, sender: TelegramSender,
        answers: AnswerCache, briefing: Briefing,
    ) -> None:
        answer = answers.get(callback_data.key)
        if answer is None or not isinstance(query.message, Message) or callback_data.quote >= len(answer.quotes):
            await sender.call(bot, query.answer(render.TELEGRAM_TEXT["expired"], show_alert=True))
            return
        await sender.call(bot, query.answer())
        quote = answer.quotes[callback_data.quote]
        paragraph = await asyncio.to_thread(lambda: paragraph_of(briefing.index, quote))
        parts = (
            render.telegram_context(quote, paragraph.text, paragraph.start)
            if paragraph is not None
            else render.telegram_context_missing()
        )
        await sender.send(bot, query.message.chat.id, parts, reply_to=query.message.message_id)

    @router.message(F.chat.type == ChatType.PRIVATE, F.text.startswith("/"))
    async def unknown_command(message: Message, bot: Bot, sender: TelegramSender) -> None:
        await sender.send(bot, message.chat.id, [Text(render.TELEGRAM_TEXT["unknown_command"])])

    @router.message(F.chat.type == ChatType.PRIVATE)
    async def not_text(message: Message, bot: Bot, sender: TelegramSender) -> None:
        await sender.send(bot, message.chat.id, [Text(render.TELEGRAM_TEXT["text_only"])])

    return router


async def reply_answer(
    message: Message, question: str, bot: Bot, briefing: Briefing, sender: TelegramSender,
    answers: AnswerCache, stats: BotStats, settings: Settings, ask_pool: AskPool,
) -> None:
    """Ask the core, render the answer and send it (in groups as a reply to the question)."""
    answer = await ask_pool.ask(briefing, question)
    stats.count(answer)
    shown = settings.telegram_quotes_shown
    key = answers.put(answer)
    buttons = range(min(shown, len(answer.quotes)))
    more = len(answer.quotes) - shown
    await sender.send(
        bot, message.chat.id, render.telegram_answer(answer, shown),
        reply_markup=answer_keyboard(key, answer, buttons, more=more),
        reply_to=None if message.chat.type == ChatType.PRIVATE else message.message_id,
    )


def answer_keyboard(key: int, answer: Answer, quotes: Iterable[int], more: int = 0) -> InlineKeyboardMarkup | None:
    """Buttons under an answer: each shown quote's paragraph in context, and 'More quotes' if any."""
    if not answer.answered:
        return None
    builder = InlineKeyboardBuilder()
    numbered = len(answer.quotes) > 1
    for i in quotes:
        label = f"¶{answer.quotes[i].paragraph} in context"
        label = f"{i + 1} · {label}" if numbered else label
        builder.button(text=label, callback_data=AnswerAction(action="ctx", key=key, quote=i))
    builder.adjust(3)
    if more > 0:
        builder.row()
        builder.button(text=f"More quotes ({more})", callback_data=AnswerAction(action="more", key=key))
    return builder.as_markup() if builder.buttons else None


def paragraph_of(index: Index, quote: Quote) -> Paragraph | None:
    """The paragraph a quote was taken from, if its source still holds exactly that text."""
    for number, document in enumerate(index.documents):
        if document.id != quote.source:
            continue
        paragraphs = index.paragraphs_of[number]
        if not 0 < quote.paragraph <= len(paragraphs):
            return None
        paragraph = paragraphs[quote.paragraph - 1]
        inside = paragraph.start <= quote.start and quote.end <= paragraph.end
        return paragraph if inside and document.text[quote.start : quote.end] == quote.text else None
    return None


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
