"""The Telegram bot end to end: the real aiogram Dispatcher polling the fake Bot API server over HTTP."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.formatting import BlockQuote, Bold, ExpandableBlockQuote, Italic
from aiogram.utils.formatting import Text as FText
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.adapters.telegram import build_dispatcher
from bot.adapters.telegram_questions import AnswerCache
from bot.adapters.telegram_run import serve, serve_webhook
from bot.adapters.telegram_send import Outcome, TelegramSender
from bot.briefing import Briefing
from bot.config import Settings
from bot.errors import ConfigError
from bot.logs import RedactSecret
from bot.render.telegram import NOT_ANSWERED_TEXT, TELEGRAM_TEXT, split_message, telegram_context
from tests.adapters.conftest import ADMIN, USER, RunningBot, running_bot
from tests.conftest import SEED_MANIFEST, SEED_TEXT
from tests.fakes.telegram_server import DEFAULT_TOKEN, FakeTelegramServer, SentMessage, check_text, utf16_len

QUESTION = "Wer überbrachte Tokajew die Botschaft von Putin?"  # three quotes in the seed article
UNANSWERABLE = "What is the capital of Peru and how tall is Mount Everest?"
GROUP = -100500
QUOTE_TYPES = {"blockquote", "expandable_blockquote"}
T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def quotes_of(message: SentMessage) -> list[str]:
    """The texts of a message's (expandable) blockquotes."""
    return [text for kind in QUOTE_TYPES for text in message.entity_texts(kind)]


def assert_well_formed(message: SentMessage) -> None:
    """What Telegram itself would check, plus: no whitespace at the edges (Telegram strips it)."""
    assert check_text(message.text, message.entities) is None
    assert message.text == message.text.strip()
    assert utf16_len(message.text) <= 4096


# ---- questions ----------------------------------------------------------------------------------
async def test_a_question_is_answered_with_verbatim_blockquotes_and_citations(tg: RunningBot) -> None:
    [reply] = await tg.say(QUESTION)
    assert_well_formed(reply)
    quotes = quotes_of(reply)
    assert quotes and all(quote in SEED_TEXT for quote in quotes)
    assert "Warum Putin Tokajew umwirbt, ¶1" in reply.entity_texts("italic")
    labels = [b["text"] for b in reply.buttons()]
    assert labels == ["1 · ¶1 in context", "More quotes (2)"]
    assert {c["command"] for c in tg.server.my_commands} >= {"start", "help", "ask", "sources"}


async def test_more_quotes_button_sends_the_rest_and_retires_itself(tg: RunningBot) -> None:
    [reply] = await tg.say(QUESTION)
    more_data = next(b["callback_data"] for b in reply.buttons() if b["text"].startswith("More"))
    [more] = await tg.press(reply, "More quotes")
    assert_well_formed(more)
    assert more.reply_to_message_id == reply.message_id
    rest = quotes_of(more)
    assert len(rest) == 2 and all(quote in SEED_TEXT for quote in rest)
    assert not set(rest) & set(quotes_of(reply))
    await tg.server.wait_for(lambda: reply.edits == 1)
    assert not any(b["text"].startswith("More") for b in reply.buttons())
    again = tg.server.push_callback(reply, more_data, user_id=USER)  # a second tap, button already gone
    await tg.server.wait_for(lambda: again in [a["callback_query_id"] for a in tg.server.callback_answers])
    assert len(tg.server.sent_to(USER)) == 2 and reply.edits == 1


async def test_context_button_shows_the_paragraph_with_the_quote_in_bold(tg: RunningBot) -> None:
    [reply] = await tg.say(QUESTION)
    [context] = await tg.press(reply, "¶")
    assert_well_formed(context)
    [paragraph] = quotes_of(context)
    assert paragraph in SEED_TEXT
    bold = context.entity_texts("bold")
    assert quotes_of(reply)[0] in bold and quotes_of(reply)[0] in paragraph


async def test_an_unanswerable_question_is_said_plainly(tg: RunningBot) -> None:
    [reply] = await tg.say(UNANSWERABLE)
    assert reply.text == NOT_ANSWERED_TEXT and not reply.entities and not reply.buttons()


async def test_bad_questions_get_the_core_message(tg: RunningBot) -> None:
    [empty] = await tg.say("?!")
    [long] = await tg.say("x " * 1500)
    assert "empty" in empty.text
    assert "too long" in long.text


async def test_commands_and_unknown_input_in_private(tg: RunningBot) -> None:
    [start] = await tg.say("/start")
    [help_] = await tg.say("/help")
    [sources] = await tg.say("/sources")
    [unknown] = await tg.say("/frobnicate")
    assert "Briefbot" in start.text
    assert "/ask" in help_.entity_texts("bot_command") and "/reload" not in help_.text
    assert "Warum Putin Tokajew umwirbt" in sources.entity_texts("bold")
    assert "putin-tokajew" in sources.entity_texts("code")
    assert unknown.text == TELEGRAM_TEXT["unknown_command"]


async def test_in_groups_only_ask_mentions_and_replies_are_answered(tg: RunningBot) -> None:
    server = tg.server
    group = {"chat_id": GROUP, "chat_type": "supergroup"}
    mark = server.mark()
    server.push_message(QUESTION, user_id=USER, **group)  # chatter: not for the bot
    server.push_message(f"/ask@someotherbot {QUESTION}", user_id=USER, **group)
    asked = server.push_message(f"/ask {QUESTION}", user_id=USER, **group)["message"]
    mentioned = server.push_message(f"@briefbot_test_bot {QUESTION}", user_id=USER, **group)["message"]
    first, second = await server.wait_sent(2, chat_id=GROUP, since=mark)
    assert first.reply_to_message_id == asked["message_id"]
    assert second.reply_to_message_id == mentioned["message_id"]
    [third] = await tg.say(UNANSWERABLE, reply_to=first, **group)
    assert third.text == NOT_ANSWERED_TEXT
    [usage] = await tg.say("/ask", **group)
    assert usage.text == TELEGRAM_TEXT["ask_usage"]
    assert len(server.sent_to(GROUP, since=mark)) == 4  # the chatter and the other bot's command: silence


async def test_one_chats_questions_are_answered_in_order(tg: RunningBot, seed_briefing: Briefing) -> None:
    questions = [QUESTION, UNANSWERABLE, "Was sagte Lawrow im Interview mit Kommersant?",
                 "Was geschah mit Lukaschenko nach 2020?", UNANSWERABLE]
    expected = [seed_briefing.ask(q) for q in questions]
    mark = tg.server.mark()
    for question in questions:
        tg.server.push_message(question, user_id=USER)
    replies = await tg.server.wait_sent(len(questions), chat_id=USER, since=mark)
    for reply, answer in zip(replies, expected, strict=True):
        if answer.answered:
            assert quotes_of(reply)[0] == answer.quotes[0].text
        else:
            assert reply.text == NOT_ANSWERED_TEXT


async def test_a_hundred_users_asking_at_once_are_all_answered(tg: RunningBot) -> None:
    users = range(50_000, 50_100)
    mark = tg.server.mark()
    for user in users:
        tg.server.push_message(QUESTION if user % 2 else UNANSWERABLE, user_id=user)
    replies = await tg.server.wait_sent(100, since=mark, timeout=30)
    assert sorted(r.chat_id for r in replies) == list(users)
    for reply in replies:
        assert_well_formed(reply)
        assert bool(quotes_of(reply)) == bool(reply.chat_id % 2)
    assert tg.stats.questions >= 100


# ---- failures -----------------------------------------------------------------------------------
async def test_flood_control_is_waited_out_and_the_reply_sent_once(tg: RunningBot) -> None:
    tg.server.fail_next("sendMessage", chat_id=USER, error_code=429, retry_after=1)
    started = time.monotonic()
    [reply] = await tg.say(QUESTION)
    assert time.monotonic() - started >= 1.0
    assert quotes_of(reply)
    [flood] = tg.server.failures
    assert (flood.error_code, flood.chat_id) == (429, USER)
    await asyncio.sleep(0.2)
    assert len(tg.server.sent_to(USER)) == 1


async def test_a_user_who_blocked_the_bot_is_recorded_and_others_still_served(tg: RunningBot) -> None:
    blocked = 777
    tg.server.block(blocked)
    tg.server.push_message(QUESTION, user_id=blocked)
    await tg.server.wait_for(lambda: blocked in tg.stats.gone)
    [reply] = await tg.say(QUESTION)
    assert quotes_of(reply)
    attempts = [f for f in tg.server.failures if f.chat_id == blocked]
    assert [(f.method, f.error_code) for f in attempts] == [("sendmessage", 403)]
    assert tg.server.sent_to(blocked) == []


async def test_an_unexpected_error_gets_an_apology_and_a_logged_traceback(
    seed_briefing: Briefing, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding:
        """The seed briefing, except that one question hits a bug."""

        settings = seed_briefing.settings

        def ask(self, question: str):  # type: ignore[no-untyped-def]
            if question == "explode":
                raise ZeroDivisionError("a bug")
            return seed_briefing.ask(question)

    async with running_bot(Exploding()) as tg:  # type: ignore[arg-type]
        [apology] = await tg.say("explode")
        [reply] = await tg.say(QUESTION)
    assert apology.text == TELEGRAM_TEXT["apology"]
    assert quotes_of(reply)
    [record] = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert record.levelno == logging.ERROR


# ---- admin --------------------------------------------------------------------------------------
def admin_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"telegram_admin_ids": [ADMIN]})


async def test_admin_commands_are_refused_to_others_and_logged(
    briefing: Briefing, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.adapters")
    async with running_bot(briefing, settings=admin_settings(briefing.settings)) as tg:
        for command in ("/reload", "/removesource putin-tokajew", "/stats", "/addsource"):
            [refusal] = await tg.say(command)
            assert refusal.text == TELEGRAM_TEXT["refused"]
        mark = tg.server.mark()
        tg.server.push_document(b"Kiwis legen Eier.", "kiwi.txt", user_id=USER, caption="/addsource")
        [refusal] = await tg.server.wait_sent(1, chat_id=USER, since=mark)
        assert refusal.text == TELEGRAM_TEXT["refused"]
        [reloading, reloaded] = await tg.say("/reload", user_id=ADMIN, count=2)
        [stats] = await tg.say("/stats", user_id=ADMIN)
        [help_] = await tg.say("/help", user_id=ADMIN)
    assert reloading.text == TELEGRAM_TEXT["reloading"]
    assert reloaded.text.startswith("Reloaded.") and "1 sources" in reloaded.text
    assert "questions" in stats.text and "subscribers: not configured" in stats.text
    assert "/reload" in help_.entity_texts("bot_command")
    assert [s.id for s in briefing.sources()] == ["putin-tokajew"]
    log = caplog.text
    assert f"refused /reload to user {USER}" in log and f"admin {ADMIN}: /reload" in log


async def test_stats_counts_subscribers_from_a_feature_router(seed_briefing: Briefing) -> None:
    class Subscribers:
        async def count(self) -> int:
            return 7

    feature = Router(name="feature")

    @feature.startup()
    async def open_service(dispatcher: Dispatcher) -> None:
        dispatcher["subscribers"] = Subscribers()  # set at startup, as the digest feature does

    @feature.message(Command("ping"))
    async def ping(message: Message) -> None:
        await message.answer("pong")

    settings = admin_settings(seed_briefing.settings)
    async with running_bot(
        seed_briefing, settings=settings, extra_routers=[feature], extra_commands=[("ping", "Ping")]
    ) as tg:
        [stats] = await tg.say("/stats", user_id=ADMIN)
        [pong] = await tg.say("/ping")
    assert "subscribers: 7" in stats.text and pong.text == "pong"
    assert "ping" in [c["command"] for c in tg.server.my_commands]


async def test_admin_adds_and_removes_a_source_from_the_chat(briefing: Briefing) -> None:
    kiwi = (
        "Der Kiwi ist ein flugunfähiger Vogel aus Neuseeland. Ein Kiwi-Weibchen legt ein Ei, "
        "das ein Fünftel seines Körpergewichts wiegt.\n\nKiwis sind nachtaktiv."
    )
    async with running_bot(briefing, settings=admin_settings(briefing.settings)) as tg:
        mark = tg.server.mark()
        tg.server.push_document(kiwi.encode(), "kiwi.txt", user_id=ADMIN, caption="/addsource Der Kiwi")
        [added] = await tg.server.wait_sent(1, chat_id=ADMIN, since=mark)
        assert added.text.startswith("Added Der Kiwi (kiwi)")
        [answer] = await tg.say("Welcher Vogel aus Neuseeland kann nicht fliegen?")
        assert quotes_of(answer)[0] in kiwi
        [bad] = await tg.say("/removesource nope", user_id=ADMIN)
        assert TELEGRAM_TEXT["source_error"] in bad.text and "nope" in bad.text
        [removed] = await tg.say("/removesource kiwi", user_id=ADMIN)
        assert removed.text.startswith("Removed kiwi")
        [hint] = await tg.say("/addsource", user_id=ADMIN)
        assert hint.text == TELEGRAM_TEXT["addsource_usage"]
        mark = tg.server.mark()
        tg.server.push_document(b"MZ\x90\x00", "setup.exe", user_id=ADMIN, caption="/addsource")
        [wrong] = await tg.server.wait_sent(1, chat_id=ADMIN, since=mark)
        assert TELEGRAM_TEXT["source_error"] in wrong.text and "unsupported file type" in wrong.text
        assert tg.server.request_counts["getfile"] == 1, "the wrong kind of file is refused before downloading"
    assert [s.id for s in briefing.sources()] == ["putin-tokajew"]


async def test_a_broken_source_on_reload_keeps_the_last_good_index(
    embedder: object, tmp_path: Path
) -> None:
    extra = tmp_path / "extra.txt"
    extra.write_text("Der Kiwi ist ein flugunfähiger Vogel aus Neuseeland.", encoding="utf-8")
    manifest = tmp_path / "sources.toml"
    manifest.write_text(
        SEED_MANIFEST.read_text(encoding="utf-8").replace('path = "', f'path = "{SEED_MANIFEST.parent}/')
        + '\n[[source]]\nid = "extra"\ntitle = "Extra"\nlang = "de"\npath = "extra.txt"\n',
        encoding="utf-8",
    )
    settings = Settings(data_dir=tmp_path / "data", sources=manifest, telegram_admin_ids=[ADMIN])
    briefing = Briefing(settings, embedder)  # type: ignore[arg-type]
    briefing.reload()
    extra.unlink()
    async with running_bot(briefing) as tg:
        [_, failed] = await tg.say("/reload", user_id=ADMIN, count=2)
        assert TELEGRAM_TEXT["source_error"] in failed.text and "extra" in failed.text
        [answer] = await tg.say(QUESTION)
        assert quotes_of(answer) and quotes_of(answer)[0] in SEED_TEXT
        [kiwi] = await tg.say("Welcher Vogel aus Neuseeland kann nicht fliegen?")
        assert quotes_of(kiwi) == ["Der Kiwi ist ein flugunfähiger Vogel aus Neuseeland."]


async def test_a_reply_longer_than_4096_is_split_without_cutting_entities(
    embedder: object, tmp_path: Path
) -> None:
    filler = " ".join(
        f"Im Jahr {1700 + i} wuchs in der Stadt Nummer {i} ein Baum mit {i % 7 + 2} Ästen und vielen Blättern."
        for i in range(45)
    )
    key = "Der Leuchtturm von Kap Arkona wurde nach Plänen von Karl Friedrich Schinkel gebaut."
    text = f"{filler} {key} {filler}"
    (tmp_path / "long.txt").write_text(text, encoding="utf-8")
    manifest = tmp_path / "sources.toml"
    manifest.write_text('[[source]]\nid = "long"\ntitle = "Long"\nlang = "de"\npath = "long.txt"\n')
    briefing = Briefing(Settings(data_dir=tmp_path / "data", sources=manifest), embedder)  # type: ignore[arg-type]
    briefing.reload()
    question = "Wer plante den Leuchtturm von Kap Arkona?"
    expected = len(telegram_context(briefing.ask(question).quotes[0], text, 0))
    async with running_bot(briefing) as tg:
        [answer] = await tg.say(question)
        assert quotes_of(answer) == [key]
        parts = await tg.press(answer, "¶", count=expected)
    assert utf16_len(text) > 4096 and expected >= 2
    for part in parts:
        assert_well_formed(part)
        assert part.entity_types()[0] in QUOTE_TYPES | {"bold"}
    assert key in [t for part in parts for t in part.entity_texts("bold")]
    joined = " ".join(t for part in parts for t in quotes_of(part))
    assert joined.split() == text.split()


# ---- hostile input: the bot keeps running and every reply stays well-formed --------------------
class BotThread:
    """The bot and its fake server on an event loop in a thread of their own, for hypothesis."""

    def __init__(self, briefing: Briefing) -> None:
        self.briefing = briefing
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the bot's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> RunningBot:
        self.thread.start()
        self._running = running_bot(self.briefing)
        return self.run(self._running.__aenter__())

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._running.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def threaded_bot(seed_briefing: Briefing) -> Iterator[tuple[BotThread, RunningBot]]:
    """One bot for every hypothesis example: it must survive them all."""
    runner = BotThread(seed_briefing)
    with runner as running:
        yield runner, running


HOSTILE = st.one_of(
    st.text(min_size=1, max_size=200),
    st.sampled_from(
        [
            "<b>Tokajew</b> & <i>Putin</i>", "*Putin* _Tokajew_ `code` [link](http://x) ~~s~~ ||spoiler||",
            "</blockquote><blockquote expandable>Lawrow", "&lt;b&gt; &amp; &#x27;", "\u202eTokajew Putin\u202c",
            "مرحبا، لماذا يتودد بوتين إلى توكاييف؟", "למה פוטין מחזר אחרי טוקאייב?", "😀" * 2048, "x" * 4096,
            "@briefbot_test_bot", "/ask", "/ask <b>", "Tokajew\x00\x01\x1f Putin", "a\u200d\u200bb", "𝕿𝖔𝖐𝖆𝖏𝖊𝖜 🇰🇿",
            "\\", "'; DROP TABLE sources; --", "Putin " * 680,
        ]
    ),
    st.builds(lambda a, b: a + QUESTION + b, st.text(max_size=40), st.text(max_size=40)),
).filter(lambda text: text.strip() and utf16_len(text) <= 4096)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HOSTILE)
def test_hostile_input_gets_well_formed_replies(
    threaded_bot: tuple[BotThread, RunningBot], text: str
) -> None:
    runner, tg = threaded_bot
    replies = runner.run(tg.say(text, user_id=31337))
    for reply in [*replies, *tg.server.sent_to(31337)]:
        assert_well_formed(reply)
        assert all(quote in SEED_TEXT for quote in quotes_of(reply))
    assert not [f for f in tg.server.failures if f.error_code == 400], "Telegram would have refused a reply"


def test_the_bot_survived_the_hostile_input(threaded_bot: tuple[BotThread, RunningBot]) -> None:
    runner, tg = threaded_bot
    [reply] = runner.run(tg.say(QUESTION, user_id=31338))
    assert quotes_of(reply)


# ---- rendering: splitting below the limit, never through an entity -------------------------------
NODES = st.recursive(
    st.text(min_size=1, max_size=300),
    lambda children: st.builds(
        lambda kind, body: kind(*body),
        st.sampled_from([FText, Bold, Italic, BlockQuote, ExpandableBlockQuote]),
        st.lists(children, min_size=1, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(blocks=st.lists(NODES, min_size=1, max_size=6), limit=st.integers(20, 400))
def test_split_message_respects_the_limit_and_the_entities(blocks: list[Any], limit: int) -> None:
    blocks = [b if isinstance(b, FText) else FText(b) for b in blocks]
    original = "".join(FText(*blocks).render()[0].split())
    parts = split_message(blocks, limit=limit)
    rendered = []
    for part in parts:
        text, entities = part.render()
        rendered.append(text)
        if text.strip():
            assert utf16_len(text) <= limit
            assert check_text(text, [e.model_dump(exclude_none=True) for e in entities]) is None
    assert "".join("".join(rendered).split()) == original  # nothing lost but whitespace at the cuts


# ---- the send helper ----------------------------------------------------------------------------
async def test_sender_classifies_failures() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    gone: list[int] = []
    sender = TelegramSender(on_gone=lambda chat, _: gone.append(chat), sleep=sleep, max_wait=60)
    async with FakeTelegramServer() as server, Bot(DEFAULT_TOKEN, session=AiohttpSession(api=server.api)) as bot:
        hello = [FText(Bold("hello"))]
        server.fail_next("sendMessage", chat_id=1, error_code=429, retry_after=5)
        assert (await sender.send(bot, 1, hello)).ok and waits == [5]
        server.fail_next("sendMessage", chat_id=2, error_code=429, retry_after=3600)
        late = await sender.send(bot, 2, hello)
        assert (late.outcome, late.retry_after) == (Outcome.RETRY, 3600)
        server.block(3)
        server.fail_next("sendMessage", chat_id=4, error_code=400, description="Bad Request: chat not found")
        assert (await sender.send(bot, 3, hello)).outcome is Outcome.GONE
        assert (await sender.send(bot, 4, hello)).outcome is Outcome.GONE and gone == [3, 4]
        server.fail_next("sendMessage", chat_id=5, error_code=400, description="Bad Request: can't parse entities")
        assert (await sender.send(bot, 5, hello)).outcome is Outcome.REJECTED
        server.fail_next("sendMessage", chat_id=6, error_code=500)
        assert (await sender.send(bot, 6, hello)).outcome is Outcome.RETRY
        server.fail_next("sendMessage", chat_id=-7, error_code=400, migrate_to_chat_id=-1007,
                         description="Bad Request: group chat was upgraded to a supergroup chat")
        moved = await sender.send(bot, -7, [FText("one"), FText("two")])
        assert moved.ok and moved.chat_id == -1007 and len(moved.messages) == 2
        assert [m.chat_id for m in server.sent] == [1, -1007, -1007]


# ---- webhook mode -------------------------------------------------------------------------------
async def test_webhook_mode_receives_updates_with_the_secret_token(seed_briefing: Briefing) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/telegram/hook"
    settings = seed_briefing.settings.model_copy(update={"telegram_webhook_secret": SecretStr("s3cr3t-token")})
    stop = asyncio.Event()
    async with FakeTelegramServer() as server, Bot(DEFAULT_TOKEN, session=AiohttpSession(api=server.api)) as bot:
        dp = build_dispatcher(seed_briefing, settings=settings)
        task = asyncio.create_task(serve_webhook(dp, bot, url, host="127.0.0.1", port=port, stop=stop))
        try:
            await server.wait_for(lambda: bool(server.webhook) or task.done())
            assert server.webhook == {"url": url, "secret_token": "s3cr3t-token"}
            server.push_message(QUESTION, user_id=USER)
            [reply] = await server.wait_sent(1, chat_id=USER)
            assert quotes_of(reply)
            async with aiohttp.ClientSession() as http:
                async with http.post(url, json={"update_id": 999}) as forged:
                    assert forged.status == 401
        finally:
            stop.set()
            await task


# ---- the fake server out of process, and secrets in logs ------------------------------------------
async def test_fake_server_runs_standalone_with_a_rate_limit() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.telegram_server", "--port", "0", "--rate-limit", "5",
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert line.startswith("READY http://127.0.0.1:")
        base = line.split()[1]
        async with aiohttp.ClientSession() as http:
            codes = []
            send = f"{base}/bot{DEFAULT_TOKEN}/sendMessage"
            for n in range(8):
                async with http.post(send, data={"chat_id": 9, "text": f"m{n}"}) as r:
                    body = await r.json()
                    codes.append(r.status)
            assert codes.count(200) == 5 and codes.count(429) == 3
            assert body["parameters"]["retry_after"] >= 1
            async with http.get(f"{base}/_test/sent", params={"since": 2}) as r:
                sent = await r.json()
            assert [m["text"] for m in sent["messages"]] == ["m2", "m3", "m4"] and sent["last_seq"] == 5
            async with http.get(f"{base}/_test/stats") as r:
                assert (await r.json())["rate_limited"] == 3
    finally:
        process.terminate()
        await process.wait()


def test_the_bot_token_never_reaches_the_logs() -> None:
    token = "123456:SECRET-token-value"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecret(token))
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    try:
        logger.warning("GET https://api.telegram.org/file/bot%s/documents/x", token)
        try:
            raise RuntimeError(f"404 for url=https://api.telegram.org/bot{token}/getFile")
        except RuntimeError:
            logger.exception("download failed")
    finally:
        logger.removeHandler(handler)
    assert token not in stream.getvalue() and stream.getvalue().count("<redacted>") == 2


async def test_buttons_of_a_forgotten_answer_say_it_expired(seed_briefing: Briefing) -> None:
    async with running_bot(seed_briefing, answers=AnswerCache(size=1)) as tg:
        [old] = await tg.say(QUESTION)
        await tg.say(QUESTION)  # the cache keeps one answer: the first is forgotten, as after a restart
        query = tg.server.push_callback(old, old.buttons()[0]["callback_data"], user_id=USER)
        await tg.server.wait_for(lambda: query in [a["callback_query_id"] for a in tg.server.callback_answers])
    [answer] = [a for a in tg.server.callback_answers if a["callback_query_id"] == query]
    assert answer["text"] == TELEGRAM_TEXT["expired"] and answer["show_alert"] in (True, "true")


# ---- the runtime's edges: configuration errors become Briefbot errors -----------------------------
async def test_serve_reports_a_refused_token_and_an_unreachable_server(seed_briefing: Briefing) -> None:
    async with FakeTelegramServer(token="123:right-token") as server:
        wrong = seed_briefing.settings.model_copy(
            update={"telegram_bot_token": SecretStr("123:wrong-token"), "telegram_api_base": server.base_url}
        )
        with pytest.raises(ConfigError, match="401 Unauthorized"):
            await serve(Briefing(wrong, seed_briefing.embedder))
        unreachable = wrong.model_copy(update={"telegram_api_base": "http://127.0.0.1:9"})
    with pytest.raises(ConfigError, match=r"Bot API at 127\.0\.0\.1:9 \(ClientConnectorError\)"):
        await serve(Briefing(unreachable, seed_briefing.embedder))
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN is not set"):
        await serve(Briefing(Settings(), seed_briefing.embedder))


async def test_a_button_forged_in_another_chat_says_expired_not_the_quotes(tg: RunningBot) -> None:
    [theirs] = await tg.say(QUESTION)  # USER's answer, with its buttons
    other = 2002
    [mine] = await tg.say(UNANSWERABLE, user_id=other)
    mark = tg.server.mark()
    queries = [
        tg.server.push_callback(mine, button["callback_data"], user_id=other)  # another chat's button data
        for button in theirs.buttons()
    ]
    queries.append(tg.server.push_callback(mine, "a:more:1:0", user_id=other))  # a guessed key
    await tg.server.wait_for(
        lambda: set(queries) <= {a["callback_query_id"] for a in tg.server.callback_answers}
    )
    answers = [a for a in tg.server.callback_answers if a["callback_query_id"] in queries]
    assert [a["text"] for a in answers] == [TELEGRAM_TEXT["expired"]] * len(queries)
    assert tg.server.sent_to(other, since=mark) == []


async def test_a_mistyped_api_base_is_reported_without_the_token(seed_briefing: Briefing) -> None:
    token = "123456:SECRET-token-value"
    for base in ("ftp://api.example.org/tg", "http://user:pw@127.0.0.1:9/some/path"):
        settings = seed_briefing.settings.model_copy(
            update={"telegram_bot_token": SecretStr(token), "telegram_api_base": base}
        )
        with pytest.raises(ConfigError) as raised:
            await serve(Briefing(settings, seed_briefing.embedder))
        text = str(raised.value)
        assert text.startswith("cannot reach the Telegram Bot API at ")
        assert "SECRET" not in text and "123456" not in text and "/" not in text and "pw" not in text


async def test_a_network_failure_in_the_outbox_holds_no_token() -> None:
    from aiogram.client.telegram import TelegramAPIServer

    from bot.adapters.telegram_sender import TelegramDigestSender
    from bot.delivery import Target, TransientSendError
    from bot.digest import Digest

    token = "123456:SECRET-token-value"
    session = AiohttpSession(api=TelegramAPIServer.from_base("ftp://api.example.org"))
    async with Bot(token, session=session) as bot:
        with pytest.raises(TransientSendError) as raised:
            await TelegramDigestSender(bot).send(Target("telegram", "42"), Digest(sections=(), new=True))
    assert "SECRET" not in str(raised.value) and "NonHttpUrlClientError" in str(raised.value)


async def test_a_refused_button_acknowledgement_is_harmless(
    tg: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    [reply] = await tg.say(QUESTION)
    too_old = "Bad Request: query is too old and response timeout expired or query ID is invalid"
    tg.server.fail_next("answerCallbackQuery", error_code=400, description=too_old)
    tg.server.fail_next("editMessageReplyMarkup", error_code=400, description="Bad Request: message is not modified")
    [more] = await tg.press(reply, "More quotes")
    assert len(quotes_of(more)) == 2
    await tg.server.wait_for(lambda: len(tg.server.failures) == 2)
    [context] = await tg.press(reply, "¶")  # and the bot carries on
    assert quotes_of(context)
    assert all(m.text != TELEGRAM_TEXT["apology"] for m in tg.server.sent_to(USER))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_button_is_answered_while_its_chat_waits_for_an_answer(seed_briefing: Briefing) -> None:
    started, release = threading.Event(), threading.Event()

    class Slow:
        """The seed briefing, except that one question takes until the test releases it."""

        settings = seed_briefing.settings

        def ask(self, question: str):  # type: ignore[no-untyped-def]
            if question == "slow":
                started.set()
                release.wait(20)
            return seed_briefing.ask(question)

    async with running_bot(Slow()) as tg:  # type: ignore[arg-type]
        [reply] = await tg.say(QUESTION)
        tg.server.push_message("slow", user_id=USER)
        try:
            assert await asyncio.to_thread(started.wait, 10)
            [more] = await tg.press(reply, "More quotes")  # same chat, while "slow" holds its turn
            assert len(quotes_of(more)) == 2 and not release.is_set()
        finally:
            release.set()
        await tg.server.wait_sent(3, chat_id=USER)


async def test_buttons_work_in_a_group_that_became_a_supergroup(tg: RunningBot) -> None:
    tg.server.fail_next("sendMessage", chat_id=-7, error_code=400, migrate_to_chat_id=-1007,
                        description="Bad Request: group chat was upgraded to a supergroup chat")
    mark = tg.server.mark()
    tg.server.push_message(f"/ask {QUESTION}", user_id=USER, chat_id=-7, chat_type="group")
    [reply] = await tg.server.wait_sent(1, chat_id=-1007, since=mark)
    [context] = await tg.press(reply, "¶")
    assert quotes_of(context)
