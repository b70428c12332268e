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
