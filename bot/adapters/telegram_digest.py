"""Telegram commands for digests: /subscribe, /unsubscribe, /digest, /subscription.

`digest_router()` is self-contained: included in the dispatcher (`build_dispatcher(...,
extra_routers=[digest_router()], extra_commands=DIGEST_COMMANDS)`), its startup hook opens the
`DigestService` (store, scheduler, outbox drainer sending through this bot) and puts it in the
workflow data as `digests` (and `subscribers`, for /stats); its shutdown hook closes it. Handlers
only translate: chat -> target, words -> service call, result -> reply. A bad time or zone raises
InputError, which the main adapter's error handler turns into the message (with an example).

Who may subscribe what (and force a /digest): anyone their private chat; in a group or for a channel
(by @name or id) the bot's admins (TELEGRAM_ADMIN_IDS) or the chat's own administrators. Replies go
through the injected TelegramSender (flood control, gone chats).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher, Router
from aiogram.enums import ChatMemberStatus, ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, User
from aiogram.utils.formatting import Bold, Code, Text

from bot.adapters.telegram_sender import TelegramDigestSender
from bot.briefing import Briefing
from bot.config import Settings
from bot.subscriptions import DigestService, SubscriptionInfo

if TYPE_CHECKING:
    from bot.adapters.telegram_send import TelegramSender

log = logging.getLogger(__name__)

DIGEST_COMMANDS = [
    ("subscribe", "Daily digest: /subscribe [HH:MM] [Area/City]"),
    ("unsubscribe", "Stop the digests"),
    ("digest", "Send a digest now"),
    ("subscription", "Show this chat's digest settings"),
]
MANAGERS = {ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR}
WEEKDAYS = {"mon": "Mondays", "tue": "Tuesdays", "wed": "Wednesdays", "thu": "Thursdays", "fri": "Fridays",
            "sat": "Saturdays", "sun": "Sundays"}


def chat_kind(chat_type: str) -> str:
    """private | group | channel, as the delivery limits distinguish them."""
    if chat_type == ChatType.PRIVATE:
        return "private"
    return "channel" if chat_type == ChatType.CHANNEL else "group"


def is_chat_ref(word: str) -> bool:
    """'@channelname' or a numeric chat id such as -1001234567890."""
    return (word.startswith("@") and len(word) > 1) or (word.lstrip("-").isdigit() and word.startswith("-"))


async def may_manage(bot: Bot, user: User | None, chat: str | int, settings: Settings) -> bool:
    """Bot admins may manage any chat; otherwise the user must administer that chat."""
    if user is None:
        return False
    if user.id in settings.telegram_admin_ids:
        return True
    try:
        member = await bot.get_chat_member(chat_id=chat, user_id=user.id)
    except TelegramAPIError as exc:
        log.info("cannot check %s's rights in %s: %s", user.id, chat, exc)
        return False
    return member.status in MANAGERS


def describe(info: SubscriptionInfo) -> Text:
    """A subscription in words: when, where, next and last digest."""
    schedule = info.schedule
    if schedule.kind == "daily":
        when = f"Daily at {schedule.expr}"
    elif schedule.kind == "weekly":
        days, _, at = schedule.expr.rpartition(" ")
        names = ", ".join(WEEKDAYS.get(d, d) for d in days.split(","))
        when = f"{names} at {at}"
    else:
        when = f"On the cron schedule {schedule.expr}"
    lines: list[Any] = [Bold("Digest: "), f"{when} ({schedule.timezone})."]
    if info.next_digest is not None:
        lines += ["\nNext: ", f"{info.next_digest:%a %d %b %Y, %H:%M}"]
    if info.last is not None:
        lines += ["\nLast: ", f"{info.last.created_at:%d %b %Y %H:%M} UTC, {info.last.status}"]
    lines += ["\n\nChange it with ", Code("/subscribe 07:30 Europe/Berlin"), ", stop with ", Code("/unsubscribe"), "."]
    return Text(*lines)


def digest_router() -> Router:
    """The digest commands, and the startup/shutdown of the digest service."""
    router = Router(name="digests")
    stack = AsyncExitStack()

    @router.startup()
    async def start_digests(bot: Bot, dispatcher: Dispatcher, settings: Settings, briefing: Briefing) -> None:
        service = await stack.enter_async_context(
            DigestService.running(settings, lambda: briefing.index, TelegramDigestSender(bot))
        )
        dispatcher["digests"] = service
        dispatcher["subscribers"] = service

    @router.shutdown()
    async def stop_digests() -> None:
        await stack.aclose()

    async def target(message: Message, words: list[str], bot: Bot, settings: Settings) -> tuple[str, str] | None:
        """The chat a command is about: this one, or the channel/group named first (then consumed)."""
        if words and is_chat_ref(words[0]):
            chat = words.pop(0)
            ref: str | int = int(chat) if chat.lstrip("-").isdigit() else chat
            if not await may_manage(bot, message.from_user, ref, settings):
                return None
            return chat, "channel" if chat.startswith("@") or chat.startswith("-100") else "group"
        kind = chat_kind(message.chat.type)
        if kind != "private" and not await may_manage(bot, message.from_user, message.chat.id, settings):
            return None
        return str(message.chat.id), kind

    async def reply(sender: TelegramSender, bot: Bot, message: Message, *parts: Any) -> None:
        await sender.send(bot, message.chat.id, [Text(*parts)])

    @router.message(Command("subscribe"))
    async def subscribe(
        message: Message, command: CommandObject, bot: Bot, digests: DigestService, settings: Settings,
        sender: TelegramSender,
    ) -> None:
        words = (command.args or "").split()
        where = await target(message, words, bot, settings)
        if where is None:
            await reply(sender, bot, message, "Only an administrator of that chat (or of this bot) can do that.")
            return
        user = str(message.from_user.id) if message.from_user else None
        info = await digests.subscribe(where[0], words, chat_kind=where[1], created_by=user)
        prefix = f"{where[0]}: " if where[0] != str(message.chat.id) else ""
        await reply(sender, bot, message, prefix, describe(info))

    @router.message(Command("unsubscribe"))
    async def unsubscribe(
        message: Message, command: CommandObject, bot: Bot, digests: DigestService, settings: Settings,
        sender: TelegramSender,
    ) -> None:
        where = await target(message, (command.args or "").split(), bot, settings)
        if where is None:
            await reply(sender, bot, message, "Only an administrator of that chat (or of this bot) can do that.")
            return
        done = await digests.unsubscribe(where[0])
        await reply(sender, bot, message, "Digests stopped." if done else "There was no subscription to stop.")

    @router.message(Command("subscription"))
    async def subscription(
        message: Message, command: CommandObject, bot: Bot, digests: DigestService, settings: Settings,
        sender: TelegramSender,
    ) -> None:
        where = await target(message, (command.args or "").split(), bot, settings)
        info = await digests.info(where[0]) if where is not None else None
        if info is None:
            await reply(sender, bot, message, "No digest subscription here. Start one with ", Code("/subscribe 08:00"),
                        " (time and IANA zone, e.g. ", Code("/subscribe 07:30 Europe/Berlin"), ").")
            return
        await reply(sender, bot, message, describe(info))

    @router.message(Command("digest"))
    async def digest(
        message: Message, digests: DigestService, bot: Bot, settings: Settings, sender: TelegramSender
    ) -> None:
        where = await target(message, [], bot, settings)  # as /subscribe: in groups, admins only
        if where is None:
            await reply(sender, bot, message, "Only an administrator of this chat (or of this bot) can do that.")
            return
        queued = await digests.digest_now(where[0], chat_kind=where[1])
        if not queued:
            await reply(sender, bot, message, "There are no sources to make a digest from.")

    return router
