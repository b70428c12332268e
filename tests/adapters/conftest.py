"""The Telegram bot running for real: aiogram's Dispatcher long-polling the fake Bot API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession

from bot.adapters.telegram import BotStats, build_dispatcher
from bot.adapters.telegram_run import serve_polling
from bot.briefing import Briefing
from tests.fakes.telegram_server import DEFAULT_TOKEN, FakeTelegramServer, SentMessage

USER = 1001
ADMIN = 4242


@dataclass
class RunningBot:
    """A bot polling a fake server, with shortcuts for talking to it as a user."""

    server: FakeTelegramServer
    bot: Bot
    dp: Dispatcher

    @property
    def stats(self) -> BotStats:
        """The dispatcher's BotStats service."""
        stats: BotStats = self.dp["stats"]
        return stats

    async def say(
        self, text: str, *, user_id: int = USER, chat_id: int | None = None, count: int = 1, **kwargs: Any
    ) -> list[SentMessage]:
        """Send a text as a user and wait for `count` messages back in that chat."""
        mark = self.server.mark()
        self.server.push_message(text, user_id=user_id, chat_id=chat_id, **kwargs)
        return await self.server.wait_sent(count, chat_id=user_id if chat_id is None else chat_id, since=mark)

    async def press(
        self, message: SentMessage, button_text: str, *, user_id: int = USER, count: int = 1
    ) -> list[SentMessage]:
        """Press the inline button whose label contains button_text; wait for `count` new messages."""
        button = next(b for b in message.buttons() if button_text in b["text"])
        mark = self.server.mark()
        self.server.push_callback(message, button["callback_data"], user_id=user_id)
        return await self.server.wait_sent(count, chat_id=message.chat_id, since=mark)


@asynccontextmanager
async def running_bot(
    briefing: Briefing, *, rate_limit: float | None = None, **services: Any
) -> AsyncIterator[RunningBot]:
    """Start the fake server and the real dispatcher polling it; stop both afterwards."""
    async with FakeTelegramServer(rate_limit=rate_limit) as server:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=server.api))
        dp = build_dispatcher(briefing, **services)
        task = asyncio.create_task(serve_polling(dp, bot, handle_signals=False, polling_timeout=1))
        try:
            await server.wait_for(lambda: server.request_counts["getupdates"] > 0 or task.done())
            if task.done():
                task.result()
            yield RunningBot(server, bot, dp)
        finally:
            if not task.done():
                await dp.stop_polling()
            await task
            await bot.session.close()


@pytest.fixture
async def tg(seed_briefing: Briefing) -> AsyncIterator[RunningBot]:
    """The bot over the shared seed briefing (no admins)."""
    async with running_bot(seed_briefing) as running:
        yield running
