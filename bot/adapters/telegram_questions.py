"""Questions on Telegram: private texts, /ask, mentions and replies in groups, and the buttons under answers.

The core's `ask` is CPU-bound and runs on `AskPool`'s worker threads (bot.adapters.pool). Answers
are kept for a while in `AnswerCache`, so the buttons under an answer (64 bytes of callback data)
can refer to them: 'More quotes' sends the quotes not shown yet, '¶ in context' the paragraph a quote comes from.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiogram import Bot, F, Router
from aiogram.enums import ChatType, MessageEntityType
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import BaseFilter, Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import TelegramMethod
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.formatting import Text
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.adapters.pool import AskPool
from bot.answer import Answer
from bot.briefing import Briefing
from bot.config import Settings
from bot.render import telegram as render

if TYPE_CHECKING:
    from bot.adapters.telegram import BotStats
    from bot.adapters.telegram_send import TelegramSender

log = logging.getLogger(__name__)

class AnswerCache:
    """Recent answers by a random key bound to their chat, so inline buttons (64 bytes) can refer to them.

    Keys are unguessable and never reused across restarts, and an answer is only given back to the
    chat it was sent to: a stale or forged button cannot show another chat's answer.
    """

    def __init__(self, size: int = 2000) -> None:
        self._size = size
        self._answers: OrderedDict[str, tuple[int, Answer]] = OrderedDict()
        self._expanded: set[str] = set()

    def put(self, answer: Answer, chat_id: int) -> str:
        """Keep an answer sent to chat_id; returns its key. The oldest answers are forgotten."""
        key = secrets.token_urlsafe(9)  # 12 characters: fits a button's 64 bytes of callback data
        self._answers[key] = (chat_id, answer)
        while len(self._answers) > self._size:
            self._expanded.discard(self._answers.popitem(last=False)[0])
        return key

    def get(self, key: str, chat_id: int) -> Answer | None:
        """The answer under key for this chat; None when forgotten, from a restart, or another chat's."""
        found = self._answers.get(key)
        if found is None or found[0] != chat_id:
            return None
        return found[1]

    def move(self, key: str, chat_id: int) -> None:
        """Bind an answer to the chat it was actually sent to (a group that became a supergroup)."""
        if key in self._answers:
            self._answers[key] = (chat_id, self._answers[key][1])

    def expand(self, key: str) -> bool:
        """True the first time an answer's further quotes are asked for, False after that."""
        if key in self._expanded:
            return False
        self._expanded.add(key)
        return True


class AnswerAction(CallbackData, prefix="a"):
    """An inline button under an answer: 'more' quotes, or a quote's paragraph in 'ctx'."""

    action: str
    key: str
    quote: int = 0


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
        answer = pressed_answer(query, callback_data, answers)
        if answer is None or not isinstance(query.message, Message):
            await harmless(sender, bot, query.answer(render.TELEGRAM_TEXT["expired"], show_alert=True))
            return
        await harmless(sender, bot, query.answer())
        if not answers.expand(callback_data.key):
            return  # a second tap before the button disappeared
        shown = settings.telegram_quotes_shown
        await sender.send(
            bot, query.message.chat.id, render.telegram_more_quotes(answer, shown),
            reply_markup=answer_keyboard(callback_data.key, answer, range(shown, len(answer.quotes))),
            reply_to=query.message.message_id,
        )
        first = answer_keyboard(callback_data.key, answer, range(min(shown, len(answer.quotes))))
        await harmless(sender, bot, query.message.edit_reply_markup(reply_markup=first))

    @router.callback_query(AnswerAction.filter(F.action == "ctx"))
    async def context(
        query: CallbackQuery, callback_data: AnswerAction, bot: Bot, sender: TelegramSender,
        answers: AnswerCache, briefing: Briefing,
    ) -> None:
        answer = pressed_answer(query, callback_data, answers)
        if answer is None or not isinstance(query.message, Message) or callback_data.quote >= len(answer.quotes):
            await harmless(sender, bot, query.answer(render.TELEGRAM_TEXT["expired"], show_alert=True))
            return
        await harmless(sender, bot, query.answer())
        quote = answer.quotes[callback_data.quote]
        paragraph = await asyncio.to_thread(briefing.context, quote)
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


async def harmless(sender: TelegramSender, bot: Bot, method: TelegramMethod[Any]) -> None:
    """A call whose 400 does not matter (a late button acknowledgement, an unchanged keyboard): logged at debug."""
    try:
        await sender.call(bot, method)
    except TelegramBadRequest as exc:
        log.debug("%s refused (harmless): %s", method.__api_method__, exc.message)


async def reply_answer(
    message: Message, question: str, bot: Bot, briefing: Briefing, sender: TelegramSender,
    answers: AnswerCache, stats: BotStats, settings: Settings, ask_pool: AskPool,
) -> None:
    """Ask the core, render the answer and send it (in groups as a reply to the question)."""
    answer = await ask_pool.ask(briefing, question)
    stats.count(answer)
    shown = settings.telegram_quotes_shown
    key = answers.put(answer, message.chat.id)
    buttons = range(min(shown, len(answer.quotes)))
    more = len(answer.quotes) - shown
    sent = await sender.send(
        bot, message.chat.id, render.telegram_answer(answer, shown),
        reply_markup=answer_keyboard(key, answer, buttons, more=more),
        reply_to=None if message.chat.type == ChatType.PRIVATE else message.message_id,
    )
    if sent.chat_id != message.chat.id:
        answers.move(key, sent.chat_id)


def answer_keyboard(key: str, answer: Answer, quotes: Iterable[int], more: int = 0) -> InlineKeyboardMarkup | None:
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


def pressed_answer(query: CallbackQuery, callback_data: AnswerAction, answers: AnswerCache) -> Answer | None:
    """The cached answer a button belongs to, if it was sent to the chat the button is pressed in."""
    if query.message is None:
        return None
    return answers.get(callback_data.key, query.message.chat.id)
