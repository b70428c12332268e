"""Running the Telegram bot: long polling by default, or a webhook server behind a proxy.

Everything is built inside `serve()` (no connections or env reads at import). The bot token is part
of every Bot API URL, so it is redacted from all log output before the bot starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError
from aiogram.utils.token import TokenValidationError
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.adapters.telegram import build_dispatcher
from bot.briefing import Briefing
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import redact_in_logs

log = logging.getLogger(__name__)


def check_config(settings: Settings) -> None:
    """Raise ConfigError unless a bot token is configured."""
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        raise ConfigError("TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather (docs/telegram.md)")


def make_bot(settings: Settings) -> Bot:
    """A Bot for TELEGRAM_BOT_TOKEN, talking to TELEGRAM_API_BASE when set."""
    check_config(settings)
    assert settings.telegram_bot_token is not None
    session = (
        AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
        if settings.telegram_api_base
        else AiohttpSession()
    )
    try:
        return Bot(settings.telegram_bot_token.get_secret_value(), session=session)
    except TokenValidationError:
        raise ConfigError("TELEGRAM_BOT_TOKEN is not a valid bot token (it looks like 123456:ABC-...)") from None


async def serve(
    briefing: Briefing,
    *,
    webhook: str | None = None,
    host: str = "0.0.0.0",
    port: int = 8080,
    extra_routers: Iterable[Router] = (),
    extra_commands: Iterable[tuple[str, str]] = (),
    **services: Any,
) -> None:
    """Serve Telegram until SIGINT/SIGTERM: long polling, or a webhook at `webhook` (a public URL)."""
    settings = briefing.settings
    if settings.telegram_bot_token is not None:
        redact_in_logs(settings.telegram_bot_token.get_secret_value())
    bot = make_bot(settings)
    async with bot:
        dp = build_dispatcher(briefing, extra_routers=extra_routers, extra_commands=extra_commands, **services)
        try:
            if webhook:
                await serve_webhook(dp, bot, webhook, host=host, port=port)
            else:
                await serve_polling(dp, bot)
        except TelegramUnauthorizedError:
            raise ConfigError("Telegram refused the bot token (401 Unauthorized): check TELEGRAM_BOT_TOKEN") from None
        except TelegramNetworkError as exc:
            # exc.message may hold the request URL, and with it the token: name only the host and the kind
            where = api_host(settings.telegram_api_base)
            raise ConfigError(f"cannot reach the Telegram Bot API at {where} ({network_error_kind(exc)})") from None


def api_host(base: str | None) -> str:
    """The host (and port) of TELEGRAM_API_BASE, safe to show: no credentials, no path."""
    if not base:
        return "api.telegram.org"
    try:
        parts = urlsplit(base)
        host = parts.hostname or "an invalid address"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "an invalid address"


def network_error_kind(exc: TelegramNetworkError) -> str:
    """The name of the network error behind a TelegramNetworkError (never its text, which has the URL)."""
    cause = exc.__cause__
    return type(cause if cause is not None else exc).__name__


async def serve_polling(dp: Dispatcher, bot: Bot, **kwargs: Any) -> None:
    """Long polling (any webhook is removed first; Telegram allows only one of the two)."""
    await bot.delete_webhook(drop_pending_updates=False)
    log.info("polling for updates")
    await dp.start_polling(bot, allowed_updates=dp.resolve_used_update_types(), close_bot_session=False, **kwargs)


async def serve_webhook(
    dp: Dispatcher, bot: Bot, url: str, *, host: str, port: int, stop: asyncio.Event | None = None
) -> None:
    """An aiohttp server receiving updates at the path of `url`, checking Telegram's secret token."""
    settings: Settings = dp["settings"]
    secret = (
        settings.telegram_webhook_secret.get_secret_value()
        if settings.telegram_webhook_secret is not None
        else secrets.token_urlsafe(32)
    )
    path = urlsplit(url).path or "/"

    async def set_webhook() -> None:
        await bot.set_webhook(url, secret_token=secret, allowed_updates=dp.resolve_used_update_types())
        log.info("webhook set; listening on %s:%s%s", host, port, path)

    dp.startup.register(set_webhook)
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret).register(app, path=path)
    setup_application(app, dp, bot=bot)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await _wait_for_signal(stop)
    finally:
        await runner.cleanup()


async def _wait_for_signal(stop: asyncio.Event | None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


def run(briefing: Briefing, *, webhook: str | None = None, host: str = "0.0.0.0", port: int = 8080) -> None:
    """Blocking entry point for `briefbot run telegram` (with the digest commands and delivery)."""
    from bot.adapters.telegram_digest import DIGEST_COMMANDS, digest_router

    asyncio.run(
        serve(briefing, webhook=webhook, host=host, port=port,
              extra_routers=[digest_router()], extra_commands=DIGEST_COMMANDS)
    )
