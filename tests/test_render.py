"""Neutral rendering decisions shared by the terminal, Telegram and Discord renderers."""

from __future__ import annotations

from rich.console import Console

from bot.answer import Answer, Quote
from bot.render import answer_line, passages_label
from bot.render.terminal import answer_terminal

QUOTE = Quote("Daher musste Putin Tokajew beruhigen.", "putin-tokajew", "Warum Putin Tokajew umwirbt", 15, 10, 47, 0.5)


def render(answer: Answer) -> str:
    console = Console(width=100, record=True)
    console.print(answer_terminal(answer))
    return console.export_text()


def test_an_offline_answer_is_just_its_quotes() -> None:
    offline = Answer("q", True, QUOTE.text, [QUOTE])
    assert answer_line(offline) is None
    text = render(offline)
    assert "Daher musste Putin Tokajew beruhigen." in text and "¶15" in text


def test_a_model_answer_shows_its_words_above_the_quotes() -> None:
    worded = Answer("q", True, "Putin had to reassure Tokayev.", [QUOTE])
    assert answer_line(worded) == "Putin had to reassure Tokayev."
    text = render(worded)
    assert text.index("Putin had to reassure Tokayev.") < text.index("Daher musste")


def test_not_answered_says_so_plainly() -> None:
    assert "could not find" in render(Answer("q", False, "", []))


def test_passages_label() -> None:
    assert passages_label(Answer("q", True, "", [QUOTE])) == "1 passage"
    assert passages_label(Answer("q", True, "", [QUOTE, QUOTE])) == "2 passages"
