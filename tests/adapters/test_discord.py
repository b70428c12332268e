"""The Discord bot end to end: the real discord.py client connected to a fake Discord over HTTP and a websocket.

Each test starts `serve()` (the entry point of `briefbot run discord`) against FakeDiscordServer on
127.0.0.1: the bot logs in, registers its slash commands, connects to the gateway, and the test then
uses commands and writes messages as a user would, reading what the bot sent back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route
from pydantic import SecretStr

from bot.adapters.discord import DiscordBot, build_bot, serve
from bot.answer import Answer, Quote
from bot.briefing import Briefing
from bot.errors import ConfigError
from bot.render import discord as render
from tests.conftest import SEED_MANIFEST, SEED_TEXT
from tests.fakes.discord_server import (
    APP_ID,
    DEFAULT_TOKEN,
    DM_CHANNEL_ID,
    Exchange,
    FakeDiscordServer,
    SentMessage,
    check_message,
    unescape_markdown,
)

QUESTION = "Wer überbrachte Tokajew die Botschaft von Putin?"  # three quotes in the seed article
UNANSWERABLE = "What is the capital of Peru and how tall is Mount Everest?"
CITATION = "Warum Putin Tokajew umwirbt, ¶1"
USER = 1001
ADMIN = 4242
PREFIX = render.DISCORD_QUOTE_PREFIX


@dataclass
class RunningBot:
    """The bot connected to a fake Discord, with shortcuts for using it as a user."""

    server: FakeDiscordServer
    bot: DiscordBot

    async def use(self, name: str, count: int = 1, *, user_id: int = USER, **options: Any) -> list[SentMessage]:
        """Use a slash command and wait for `count` replies."""
        exchange = await self.server.slash(name, user_id=user_id, **options)
        return await self.server.wait_replies(exchange, count)

    async def exchange(self, name: str, *, user_id: int = USER, **options: Any) -> Exchange:
        """Use a slash command and wait until the bot is done answering it (nothing new for a moment)."""
        exchange = await self.server.slash(name, user_id=user_id, **options)
        await self.server.wait_replies(exchange, 1)
        while True:
            seen = len(exchange.replies)
            await asyncio.sleep(0.3)
            if len(exchange.replies) == seen:
                return exchange


@asynccontextmanager
async def running_bot(briefing: Briefing, **settings: Any) -> AsyncIterator[RunningBot]:
    """Start the fake Discord and `serve()` the bot against it; close both afterwards."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscordServer() as server:
        config = briefing.settings.model_copy(update={
            "discord_bot_token": SecretStr(DEFAULT_TOKEN),
            "discord_api_base": server.api_base,
            "discord_admin_ids": [ADMIN],
            **settings,
        })
        bot = build_bot(briefing, config)
        task = asyncio.create_task(serve(bot))
        try:
            started = asyncio.create_task(server.wait_for(lambda: server.ready.is_set() and bool(server.commands)))
            await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                started.cancel()
                task.result()
            yield RunningBot(server, bot)
        finally:
            await bot.close()
            await task
        assert not server.rejected, server.rejected
        assert not server.unknown, server.unknown
    assert (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY) == saved, "discord.py's URLs are restored"


@pytest.fixture
async def dc(seed_briefing: Briefing) -> AsyncIterator[RunningBot]:
    """The bot over the shared seed briefing, with ADMIN as its admin."""
    async with running_bot(seed_briefing) as running:
        yield running


def quote_fields(message: SentMessage) -> list[tuple[str, str]]:
    """(name, quote as displayed) of every field holding a quote."""
    return [
        (unescape_markdown(f["name"]), unescape_markdown(f["value"][len(PREFIX):]))
        for f in message.fields()
        if f["value"].startswith(PREFIX)
    ]


# ---- questions ----------------------------------------------------------------------------------
async def test_ask_is_deferred_then_answered_with_embeds_quoting_the_source_verbatim(dc: RunningBot) -> None:
    exchange = await dc.exchange("ask", question=QUESTION)
    assert [c["type"] for c in exchange.callbacks] == [5], "deferred first: a cold index may take > 3 s"
    [reply] = exchange.replies
    assert not reply.ephemeral and reply.embeds
    quotes = quote_fields(reply)
    assert len(quotes) == 3
    assert all(text in SEED_TEXT for _, text in quotes)
    assert quotes[0][0] == f"1. {CITATION}"
    assert reply.embeds[0]["description"].startswith("**From the sources** (3 passages)")
    names = {c["name"] for c in dc.server.commands}
    assert names == {"ask", "sources", "help", "reload", "addsource", "removesource"}


async def test_an_unanswerable_question_is_said_plainly(dc: RunningBot) -> None:
    [reply] = await dc.use("ask", question=UNANSWERABLE)
    assert reply.content == render.NOT_ANSWERED_TEXT
    assert reply.embeds == []


async def test_a_bad_question_gets_the_core_message(dc: RunningBot) -> None:
    [empty] = await dc.use("ask", question="?!")
    [long] = await dc.use("ask", question="x " * 1500)
    assert "empty" in empty.content
    assert "too long" in long.content


async def test_a_mention_is_answered_in_the_channel_as_a_reply(dc: RunningBot) -> None:
    mark = dc.server.mark()
    chatter = await dc.server.push_message("just chatting, not for the bot", user_id=USER, mention_bot=False)
    question = await dc.server.push_message(QUESTION, user_id=USER)
    [reply] = await dc.server.wait_sent(1, since=mark)
    assert reply.reply_to == int(question["id"]) != int(chatter["id"])
    quotes = quote_fields(reply)
    assert quotes and all(text in SEED_TEXT for _, text in quotes)
    assert dc.server.typing, "the bot shows it is typing while it looks for the answer"
    identify = dc.server.identify or {}
    assert identify["intents"] & (1 << 9), "GUILD_MESSAGES is requested for mentions"
    assert not identify["intents"] & (1 << 15), "the privileged MESSAGE_CONTENT is not requested by default"


async def test_a_mention_without_a_question_gets_the_usage(dc: RunningBot) -> None:
    mark = dc.server.mark()
    await dc.server.push_message("", user_id=USER)
    [reply] = await dc.server.wait_sent(1, since=mark)
    assert reply.content == render.DISCORD_TEXT["mention_usage"]


async def test_a_direct_message_is_answered_without_a_mention(dc: RunningBot) -> None:
    mark = dc.server.mark()
    await dc.server.push_message(QUESTION, user_id=USER, mention_bot=False, dm=True)
    [reply] = await dc.server.wait_sent(1, since=mark)
    assert reply.channel_id == DM_CHANNEL_ID
    assert quote_fields(reply)


async def test_a_bad_mention_gets_the_core_message_and_the_bot_carries_on(dc: RunningBot) -> None:
    mark = dc.server.mark()
    await dc.server.push_message("x " * 1500, user_id=USER)
    [error] = await dc.server.wait_sent(1, since=mark)
    assert "too long" in error.content
    await dc.server.push_message(UNANSWERABLE, user_id=USER)
    [_, answer] = await dc.server.wait_sent(2, since=mark)
    assert answer.content == render.NOT_ANSWERED_TEXT


class BrokenBriefing(Briefing):
    """A Briefing with a bug: every question fails unexpectedly."""

    def ask(self, question: str) -> Answer:
        """Fails."""
        raise RuntimeError("a bug in the core")


async def test_a_bug_gets_an_apology_and_its_traceback_is_logged(
    seed_briefing: Briefing, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenBriefing(seed_briefing.settings, seed_briefing.embedder)
    async with running_bot(broken) as running:
        [slash] = await running.use("ask", question=QUESTION)
        mark = running.server.mark()
        await running.server.push_message(QUESTION, user_id=USER)
        [mention] = await running.server.wait_sent(1, since=mark)
    assert slash.content == mention.content == render.DISCORD_TEXT["apology"]
    tracebacks = [r for r in caplog.records if r.exc_info and "a bug in the core" in str(r.exc_info[1])]
    assert len(tracebacks) == 2, "one for the command, one for the mention"


async def test_mentions_can_be_switched_off(seed_briefing: Briefing) -> None:
    async with running_bot(seed_briefing, discord_mentions=False) as running:
        await running.server.push_message(QUESTION, user_id=USER)
        [reply] = await running.use("ask", question=UNANSWERABLE)  # the bot is alive and answers commands
        assert reply.content == render.NOT_ANSWERED_TEXT
        assert [m for m in running.server.sent if m.interaction_token is None] == []
        assert not (running.server.identify or {})["intents"] & (1 << 9)


# ---- long answers -------------------------------------------------------------------------------
class FixedBriefing(Briefing):
    """A Briefing that answers every question with one given Answer."""

    def __init__(self, briefing: Briefing, answer: Answer) -> None:
        super().__init__(briefing.settings, briefing.embedder)
        self.answer = answer

    def ask(self, question: str) -> Answer:
        """The given answer, whatever the question."""
        return self.answer


def span_quote(start: int, end: int) -> Quote:
    """A quote of the seed text from start to end."""
    return Quote(SEED_TEXT[start:end], "putin-tokajew", "Warum Putin Tokajew umwirbt", 1, start, end, 1.0)


async def test_a_very_long_answer_is_split_within_discords_limits_without_losing_a_word(
    seed_briefing: Briefing,
) -> None:
    paragraphs = [m.span() for m in re.finditer(r"[^\n]+", SEED_TEXT)]
    quotes = [span_quote(0, len(SEED_TEXT)), *(span_quote(a, b) for a, b in paragraphs)]
    answer = Answer("?", True, "Alles über Tokajew.", quotes)
    async with running_bot(FixedBriefing(seed_briefing, answer)) as running:
        exchange = await running.exchange("ask", question="Erzähl mir alles.")
    messages = exchange.replies
    assert len(messages) > 1, "more than one message's worth of embeds"
    for message in messages:  # the fake server accepted each: within every limit; check again here
        assert check_message({"content": message.content, "embeds": message.embeds}) is None
    fields = [f for message in messages for f in quote_fields(message)]
    first, *rest = [text for name, text in fields if name.startswith("1. ")]
    parts = [name for name, _ in fields if name.startswith("1. ")]
    assert len(parts) > 6 and parts[0].endswith(f"part 1 of {len(parts)}"), "the long quote says it is split"
    assert re.sub(r"\s+", "", "".join([first, *rest])) == re.sub(r"\s+", "", SEED_TEXT), "nothing is lost"
    assert all(text in SEED_TEXT for _, text in fields)
    numbered = [name.split(".")[0] for name, _ in fields]
    assert sorted(set(numbered), key=int) == [str(n) for n in range(1, len(quotes) + 1)], "every quote, in order"


def test_markdown_in_quotes_is_shown_verbatim_and_long_words_are_cut_within_limits() -> None:
    tricky = "> *not bold* and __not underlined__ `code` ~~x~~ ||spoiler|| [link](https://x.y) @everyone 😀 \\o/\n# no"
    long_word = "ß" * 1500
    answer = Answer("?", True, "", [
        Quote(tricky, "s", "A *starred* title", 2, 0, len(tricky), 1.0),
        Quote(long_word, "s", "T" * 400, 3, 0, 1500, 1.0),
    ])
    [message] = render.discord_answer(answer)
    assert check_message({"embeds": message.embeds}) is None
    sent = SentMessage(1, 1, 1, "", message.embeds)
    fields = quote_fields(sent)
    assert fields[0] == ("1. A *starred* title, ¶2", tricky)
    assert "".join(text for name, text in fields if name.startswith("2. ")) == long_word
    assert fields[1][0].endswith("part 1 of 2") and "…" in fields[1][0]


# ---- sources and help ---------------------------------------------------------------------------
async def test_sources_and_help(dc: RunningBot) -> None:
    [sources] = await dc.use("sources")
    [field] = sources.fields()
    assert field["name"] == "Warum Putin Tokajew umwirbt"
    assert "`putin-tokajew`" in field["value"] and "de" in field["value"]
    [help_user] = await dc.use("help")
    [help_admin] = await dc.use("help", user_id=ADMIN)
    assert help_user.ephemeral and "/ask" in help_user.text() and "/reload" not in help_user.text()
    assert "/reload" in help_admin.text()


# ---- admin commands -----------------------------------------------------------------------------
async def test_reload_works_for_an_admin_and_is_logged_with_the_user_id(
    dc: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    [reply] = await dc.use("reload", user_id=ADMIN)
    assert reply.content.startswith("**Reloaded.** 1 sources")
    assert f"admin {ADMIN}: /reload" in caplog.text


async def test_admin_commands_are_refused_to_everyone_else(dc: RunningBot, caplog: pytest.LogCaptureFixture) -> None:
    exchanges = [
        await dc.server.slash("reload", user_id=USER),
        await dc.server.slash("removesource", user_id=USER, id="putin-tokajew"),
        await dc.server.slash("addsource", user_id=USER, file=dc.server.add_attachment("x.txt", b"Hallo Welt.")),
    ]
    for exchange in exchanges:
        [refusal] = await dc.server.wait_replies(exchange, 1)
        assert refusal.content == render.DISCORD_TEXT["refused"]
        assert refusal.ephemeral
        assert exchange.callbacks[0]["type"] == 4, "answered at once, nothing deferred"
    assert f"refused /reload to user {USER}" in caplog.text
    assert [s.id for s in dc.bot.briefing.sources()] == ["putin-tokajew"]


async def test_an_admin_adds_and_removes_a_source(briefing: Briefing, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters.discord")
    text = "Der Leuchtturm von Borkum wurde im Jahr 1879 gebaut. Er ist sechzig Meter hoch.\n"
    async with running_bot(briefing) as running:
        upload = running.server.add_attachment("leuchtturm.txt", text.encode())
        [added] = await running.use("addsource", user_id=ADMIN, file=upload, title="Leuchtturm")
        assert added.content.startswith("**Added Leuchtturm** (`leuchtturm`)")
        [answer] = await running.use("ask", question="Wann wurde der Leuchtturm von Borkum gebaut?")
        assert any("1879" in quote for _, quote in quote_fields(answer))
        [bad] = await running.use("addsource", user_id=ADMIN, file=running.server.add_attachment("x.pdf", b"%PDF"))
        assert bad.content.startswith(render.DISCORD_TEXT["source_error"]) and "unsupported" in bad.content
        [removed] = await running.use("removesource", user_id=ADMIN, id="leuchtturm")
        assert removed.content.startswith("**Removed** `leuchtturm`")
        [missing] = await running.use("removesource", user_id=ADMIN, id="leuchtturm")
        assert "no source with id" in missing.content
    assert f"admin {ADMIN}: added source leuchtturm" in caplog.text
    assert f"admin {ADMIN}: /removesource leuchtturm" in caplog.text


# ---- running ------------------------------------------------------------------------------------
async def test_the_token_never_appears_in_the_logs(seed_briefing: Briefing, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(seed_briefing) as running:
        await running.use("ask", question=QUESTION)
        await running.server.wait_for(lambda: running.server.heartbeats > 0)
    assert caplog.records and DEFAULT_TOKEN not in caplog.text
    assert any(r.name.startswith("discord") for r in caplog.records), "discord.py did log at DEBUG"


async def test_a_refused_token_is_a_config_error(seed_briefing: Briefing) -> None:
    async with FakeDiscordServer(token="another-token") as server:
        config = seed_briefing.settings.model_copy(
            update={"discord_bot_token": SecretStr(DEFAULT_TOKEN), "discord_api_base": server.api_base}
        )
        with pytest.raises(ConfigError, match="refused"):
            await serve(build_bot(seed_briefing, config))
        assert server.identify is None


async def test_a_missing_token_is_a_config_error(seed_briefing: Briefing) -> None:
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN"):
        await serve(build_bot(seed_briefing))


def test_settings_parse_admin_ids(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bot.config import Settings

    monkeypatch.setenv("DISCORD_ADMIN_IDS", "12, 34 56")
    assert Settings(sources=SEED_MANIFEST).discord_admin_ids == [12, 34, 56]
    assert APP_ID not in Settings().discord_admin_ids


async def test_questions_run_on_the_ask_pool(seed_briefing: Briefing) -> None:
    threads: list[str] = []

    class Recording:
        """The seed briefing, noting the thread each question is answered on."""

        settings = seed_briefing.settings

        def ask(self, question: str) -> Answer:
            threads.append(threading.current_thread().name)
            return seed_briefing.ask(question)

    async with running_bot(Recording()) as running:  # type: ignore[arg-type]
        await running.use("ask", question=QUESTION)
        mark = running.server.mark()
        await running.server.push_message(QUESTION, user_id=USER)
        await running.server.wait_sent(1, since=mark)
    assert len(threads) == 2 and all(name.startswith("briefbot-ask") for name in threads)
