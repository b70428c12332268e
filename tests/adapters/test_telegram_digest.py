"""The digest commands through the real dispatcher polling the fake Bot API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.telegram_digest import DIGEST_COMMANDS, digest_router
from bot.briefing import Briefing
from bot.config import Settings
from tests.adapters.conftest import ADMIN, USER, RunningBot, running_bot
from tests.conftest import SEED_TEXT


@pytest.fixture
async def tg(seed_briefing: Briefing, tmp_path: Path) -> AsyncIterator[RunningBot]:
    settings = Settings(data_dir=tmp_path / "digest-data", telegram_admin_ids=[ADMIN])
    async with running_bot(
        seed_briefing, settings=settings, extra_routers=[digest_router()], extra_commands=DIGEST_COMMANDS
    ) as running:
        yield running


async def test_subscribe_show_and_unsubscribe(tg: RunningBot) -> None:
    (bad,) = await tg.say("/subscribe 25:00")
    assert "Invalid time" in bad.text and "/subscribe 07:30 Europe/Berlin" in bad.text
    (zone,) = await tg.say("/subscribe 08:00 Mars/Olympus")
    assert "Unknown time zone" in zone.text
    (done,) = await tg.say("/subscribe 07:30 Europe/Berlin")
    assert "Daily at 07:30 (Europe/Berlin)" in done.text and "Next:" in done.text
    (weekly,) = await tg.say("/subscribe weekly mon,thu 18:00 Asia/Tokyo")
    assert "Mondays, Thursdays at 18:00 (Asia/Tokyo)" in weekly.text
    (shown,) = await tg.say("/subscription")
    assert "Mondays, Thursdays at 18:00" in shown.text
    assert await tg.dp["subscribers"].count() == 1
    (stopped,) = await tg.say("/unsubscribe")
    assert stopped.text == "Digests stopped."
    (none,) = await tg.say("/subscription")
    assert "No digest subscription" in none.text


async def test_digest_now_sends_verbatim_quotes(tg: RunningBot) -> None:
    (digest,) = await tg.say("/digest")
    quotes = digest.entity_texts("blockquote")
    assert quotes and "bold" in digest.entity_types()
    for quote in quotes:
        text = quote.rsplit(" (¶", 1)[0]
        assert text in SEED_TEXT


async def test_channels_are_subscribed_by_admins_only(tg: RunningBot) -> None:
    (refused,) = await tg.say("/subscribe @somechannel 09:00", user_id=USER)
    assert "administrator" in refused.text
    (ok,) = await tg.say("/subscribe -1001234567 09:00 Europe/Vienna", user_id=ADMIN)
    assert ok.text.startswith("-1001234567: ") and "Daily at 09:00 (Europe/Vienna)" in ok.text
    sub = await tg.dp["digests"].store.subscription("telegram", "-1001234567")
    assert sub is not None and sub.chat_kind == "channel" and sub.created_by == str(ADMIN)


async def test_the_telegram_sender_maps_429_403_and_server_errors(tmp_path: Path) -> None:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession

    from bot.adapters.telegram_sender import TelegramDigestSender
    from bot.delivery import Drainer, Limits
    from bot.store import GONE, SENT, Store
    from tests.fakes.telegram_server import DEFAULT_TOKEN, FakeTelegramServer

    payload = {"sections": [{"source": "s", "title": "News", "summary": "It rained.",
                             "quotes": [{"text": "It rained.", "paragraph": 1, "start": 0, "end": 10}]}]}
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        for chat in ("11", "12", "13", "14"):
            sub = await store.subscribe("telegram", chat, schedule_kind="daily", schedule_expr="08:00",
                                        timezone="UTC")

            async def build(seen: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
                return payload, {}

            await store.create_digest(sub.id, "p", build)
        async with FakeTelegramServer() as server:
            server.fail_next("sendMessage", chat_id=11, error_code=429, retry_after=1)
            server.block(12)  # 403 blocked by the user
            server.fail_next("sendMessage", chat_id=13, error_code=500)
            server.block(14, error_code=400)  # chat not found
            async with Bot(DEFAULT_TOKEN, session=AiohttpSession(api=server.api)) as bot:
                drainer = Drainer(store, TelegramDigestSender(bot), limits=Limits(global_rate=100.0),
                                  backoff=0.1, poll=0.05)
                report = await drainer.run(until_idle=True)
            delivered = sorted(m.chat_id for m in server.sent)
        assert delivered == [11, 13]  # once each: after the retry-after, and after a retry
        assert (report.deferred, report.retried, report.gone) == (1, 1, 2)
        assert await store.outbox_counts() == {SENT: 2, GONE: 2}
        assert [s.chat_id for s in await store.active_subscriptions()] == ["11", "13"]
    finally:
        await store.close()


async def test_a_forced_digest_in_a_group_is_for_admins_only(tg: RunningBot) -> None:
    group = {"chat_id": -100777, "chat_type": "supergroup"}
    (refused,) = await tg.say("/digest", user_id=USER, **group)  # a member (the fake knows no chat admins)
    assert "administrator" in refused.text and not refused.entity_texts("blockquote")
    (digest,) = await tg.say("/digest", user_id=ADMIN, **group)
    assert digest.entity_texts("blockquote")


async def test_digest_command_replies_wait_out_flood_control(tg: RunningBot) -> None:
    tg.server.fail_next("sendMessage", chat_id=USER, error_code=429, retry_after=1)
    (none,) = await tg.say("/subscription")
    assert "No digest subscription" in none.text


async def test_help_lists_the_digest_commands(tg: RunningBot) -> None:
    (help_,) = await tg.say("/help")
    listed = help_.entity_texts("bot_command")
    assert {"/ask", "/sources", "/subscribe", "/unsubscribe", "/digest", "/subscription"} <= set(listed)
