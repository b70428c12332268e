"""The optional LLM: the real openai client against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bot.briefing import Briefing
from bot.config import Settings
from bot.embed import UseEmbedder
from bot.errors import ConfigError
from bot.llm import OpenAIChat, from_settings, render_prompt
from tests.conftest import SEED_MANIFEST, SEED_TEXT
from tests.fakes.openai_server import FakeOpenAIServer

HEADLINE = "why did Putin call Tokayev?"
REAL_QUOTE = "Daher musste Putin Tokajew beruhigen"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def llm_briefing(server: FakeOpenAIServer, seed_briefing: Briefing, embedder: UseEmbedder) -> Briefing:
    """A Briefing sharing the seed index, with the fake model configured."""
    settings = Settings(data_dir=seed_briefing.settings.data_dir, sources=SEED_MANIFEST)
    llm = OpenAIChat("fake-model", api_key=server.api_key, base_url=server.base_url, timeout=2.0)
    briefing = Briefing(settings, embedder, llm)
    briefing._index = seed_briefing.index
    return briefing


def test_prompt_renders_with_question_and_passages() -> None:
    text = render_prompt("answer", question="Q?", passages="[1] P", max_quotes=3)
    assert "Q?" in text and "[1] P" in text and "$" not in text


def test_model_answer_with_exact_quotes_is_used(server: FakeOpenAIServer, llm_briefing: Briefing) -> None:
    server.reply_json({
        "answered": True,
        "answer": "Putin had to reassure Tokayev after Lavrov's attack.",
        "quotes": [{"passage": 1, "text": REAL_QUOTE}],
    })
    answer = llm_briefing.ask(HEADLINE)
    assert answer.answered
    assert answer.text == "Putin had to reassure Tokayev after Lavrov's attack."
    [quote] = answer.quotes
    assert quote.text == REAL_QUOTE == SEED_TEXT[quote.start : quote.end]
    assert quote.paragraph == 15
    prompt = server.requests[0]["body"]["messages"][0]["content"]
    assert HEADLINE in prompt and "Kommersant" in prompt  # retrieved passages were shown


def test_invented_quotes_are_dropped(server: FakeOpenAIServer, llm_briefing: Briefing) -> None:
    server.reply_json({
        "answered": True,
        "answer": "Because of the interview.",
        "quotes": [
            {"passage": 1, "text": "Putin rief Tokajew an, weil er Angst hatte"},  # not in the source
            {"passage": 2, "text": REAL_QUOTE},
        ],
    })
    answer = llm_briefing.ask(HEADLINE)
    assert [q.text for q in answer.quotes] == [REAL_QUOTE]


@pytest.mark.parametrize(
    "setup",
    [
        lambda s: s.reply_json({"answered": True, "answer": "x", "quotes": [{"passage": 1, "text": "invented words"}]}),
        lambda s: s.reply("I think it was about gas."),
        lambda s: s.reply('{"answered": true, "answer": '),
        lambda s: s.fail(500),
        lambda s: s.fail(429),
        lambda s: s.stall(5),
    ],
    ids=["no-exact-quote", "not-json", "broken-json", "server-error", "rate-limited", "timeout"],
)
def test_any_failure_falls_back_to_the_offline_answer(
    setup, server: FakeOpenAIServer, llm_briefing: Briefing, seed_briefing: Briefing
) -> None:
    setup(server)
    answer = llm_briefing.ask(HEADLINE)
    assert answer == seed_briefing.ask(HEADLINE)


def test_model_may_decline(server: FakeOpenAIServer, llm_briefing: Briefing) -> None:
    server.reply_json({"answered": False, "answer": "", "quotes": []})
    answer = llm_briefing.ask("What is the capital of France?")
    assert not answer.answered and answer.quotes == []


def test_wrong_key_falls_back_and_never_logs_the_key(
    server: FakeOpenAIServer, seed_briefing: Briefing, embedder: UseEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-wrong-secret-123456"
    settings = Settings(data_dir=seed_briefing.settings.data_dir, sources=SEED_MANIFEST)
    llm = OpenAIChat("fake-model", api_key=secret, base_url=server.base_url, timeout=2.0)
    briefing = Briefing(settings, embedder, llm)
    briefing._index = seed_briefing.index
    with caplog.at_level(logging.DEBUG):
        answer = briefing.ask(HEADLINE)
    assert answer == seed_briefing.ask(HEADLINE)
    assert server.requests[-1]["authorization"] == f"Bearer {secret}"  # it was really sent
    assert "401" in caplog.text
    assert secret not in caplog.text


def test_unreachable_server_falls_back(seed_briefing: Briefing, embedder: UseEmbedder) -> None:
    llm = OpenAIChat("fake-model", api_key="k", base_url="http://127.0.0.1:9/v1", timeout=1.0)
    briefing = Briefing(seed_briefing.settings, embedder, llm)
    briefing._index = seed_briefing.index
    assert briefing.ask(HEADLINE) == seed_briefing.ask(HEADLINE)


def test_settings_choose_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    assert from_settings(Settings()) is None
    monkeypatch.setenv("BRIEFBOT_LLM_MODEL", "some-model")
    with pytest.raises(ConfigError):
        from_settings(Settings())
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    assert isinstance(from_settings(Settings()), OpenAIChat)
