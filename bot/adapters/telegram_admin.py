"""Admin commands on Telegram: /reload, /addsource, /removesource, /stats.

Only the user ids in TELEGRAM_ADMIN_IDS may use them; anyone else gets a clear refusal. Every
admin action, and every refusal, is logged with the user id. Source errors are not handled here:
they propagate to the adapter's error handler, which tells the admin that nothing changed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import BaseFilter, Command, CommandObject
from aiogram.types import Document, Message, User
from aiogram.utils.formatting import Text
from aiohttp import ClientError

from bot.briefing import Briefing
from bot.config import Settings
from bot.errors import SourceError
from bot.render import telegram as render

if TYPE_CHECKING:
    from bot.adapters.telegram import BotStats, SubscriberCount
    from bot.adapters.telegram_send import TelegramSender

log = logging.getLogger(__name__)

ADMIN_COMMANDS = [
    ("reload", "Re-read every source (admins)"),
    ("addsource", "Add a source: send a .txt/.md/.html file with this caption (admins)"),
    ("removesource", "Remove a source by its id (admins)"),
    ("stats", "Questions, subscribers and index size (admins)"),
]
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # the Bot API serves files up to 20 MB


def is_admin(user: User | None, settings: Settings) -> bool:
    """True for the users listed in TELEGRAM_ADMIN_IDS."""
    return user is not None and user.id in settings.telegram_admin_ids


class IsAdmin(BaseFilter):
    """Passes messages from an admin."""

    async def __call__(self, message: Message, settings: Settings) -> bool:
        return is_admin(message.from_user, settings)


def _who(message: Message) -> int | None:
    return message.from_user.id if message.from_user else None


def admin_router() -> Router:
    """The admin commands, and the refusal everyone else gets."""
    router = Router(name="admin")

    @router.message(Command(*(name for name, _ in ADMIN_COMMANDS)), ~IsAdmin())
    async def refuse(message: Message, command: CommandObject, bot: Bot, sender: TelegramSender) -> None:
        log.warning("refused /%s to user %s in chat %s", command.command, _who(message), message.chat.id)
        await sender.send(bot, message.chat.id, [Text(render.TELEGRAM_TEXT["refused"])])

    @router.message(Command("reload"), IsAdmin())
    async def reload(message: Message, bot: Bot, sender: TelegramSender, briefing: Briefing) -> None:
        log.info("admin %s: /reload", _who(message))
        await sender.send(bot, message.chat.id, [Text(render.TELEGRAM_TEXT["reloading"])])
        index = await asyncio.to_thread(briefing.reload)
        log.info("admin %s: reloaded %d sources, %d sentences", _who(message), len(index.documents), len(index))
        await sender.send(bot, message.chat.id, render.telegram_reloaded(len(index.documents), len(index)))

    @router.message(Command("addsource"), IsAdmin())
    async def addsource(
        message: Message, command: CommandObject, bot: Bot, sender: TelegramSender, briefing: Briefing
    ) -> None:
        replied = message.reply_to_message
        document = message.document or (replied.document if replied is not None else None)
        if document is None:
            await sender.send(bot, message.chat.id, [Text(render.TELEGRAM_TEXT["addsource_usage"])])
            return
        name = document.file_name or "upload.txt"
        log.info("admin %s: /addsource %s (%s bytes)", _who(message), name, document.file_size)
        briefing.check_upload(name, document.file_size)  # before downloading anything
        data = await download(bot, document)
        added = await asyncio.to_thread(briefing.add_source, name, data, (command.args or "").strip() or None)
        log.info("admin %s: added source %s (%d sentences)", _who(message), added.id, added.sentences)
        await sender.send(bot, message.chat.id, render.telegram_source_added(added.title, added.id, added.sentences))

    @router.message(Command("removesource"), IsAdmin())
    async def removesource(
        message: Message, command: CommandObject, bot: Bot, sender: TelegramSender, briefing: Briefing
    ) -> None:
        source_id = (command.args or "").strip()
        if not source_id or " " in source_id:
            await sender.send(bot, message.chat.id, [Text(render.TELEGRAM_TEXT["removesource_usage"])])
            return
        log.info("admin %s: /removesource %s", _who(message), source_id)
        sentences = await asyncio.to_thread(briefing.remove_source, source_id)
        log.info("admin %s: removed source %s", _who(message), source_id)
        await sender.send(bot, message.chat.id, render.telegram_source_removed(source_id, sentences))

    @router.message(Command("stats"), IsAdmin())
    async def show_stats(
        message: Message, bot: Bot, sender: TelegramSender, briefing: Briefing, stats: BotStats,
        subscribers: SubscriberCount | None = None,
    ) -> None:
        log.info("admin %s: /stats", _who(message))
        index = await asyncio.to_thread(lambda: briefing.index)  # loads it on first use
        subscribed = str(await subscribers.count()) if subscribers is not None else "not configured"
        rows = [
            ("questions", str(stats.questions)),
            ("answered", str(stats.answered)),
            ("subscribers", subscribed),
            ("sources", str(len(index.documents))),
            ("sentences indexed", str(len(index))),
            ("chats gone (blocked the bot)", str(len(stats.gone))),
            ("up since", dt.datetime.fromtimestamp(stats.started, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
            ("uptime", f"{(time.time() - stats.started) / 3600:.1f} h"),
        ]
        await sender.send(bot, message.chat.id, render.telegram_stats(rows))

    @router.message(F.document, F.chat.type == ChatType.PRIVATE, IsAdmin())
    async def document_hint(message: Message, bot: Bot, sender: TelegramSender) -> None:
        await sender.send(bot, message.chat.id, [Text(render.TELEGRAM_TEXT["addsource_usage"])])

    return router


async def download(bot: Bot, document: Document) -> bytes:
    """The bytes of an uploaded document; SourceError when the Bot API will not serve it or it cannot be fetched."""
    limit = TELEGRAM_DOWNLOAD_LIMIT
    name = document.file_name or "the file"
    if document.file_size is not None and document.file_size > limit:
        raise SourceError(f"{name} is too big ({document.file_size} bytes; at most {limit})")
    try:
        buffer: Any = await bot.download(document)
    except (TelegramAPIError, ClientError, TimeoutError) as exc:
        # the exception text may hold the file URL, which contains the bot token: keep it out
        raise SourceError(f"could not download {name} from Telegram ({type(exc).__name__})") from exc
    return bytes(buffer.getvalue())
