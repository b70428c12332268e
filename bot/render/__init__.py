"""Rendering: one neutral Answer (or list of sources) -> what a user reads, once per platform.

The core returns data; the words are chosen here. One module per platform, so that importing the
terminal renderer does not import aiogram (seconds of start-up for every `briefbot ask`):
`bot.render.terminal`, `bot.render.telegram`, `bot.render.discord`.
"""

from __future__ import annotations

from bot.answer import Answer, Quote

NOT_ANSWERED_TEXT = "I could not find an answer to that in the sources."


def citation(quote: Quote) -> str:
    """'Title, ¶3': where a quote comes from."""
    return f"{quote.title}, ¶{quote.paragraph}"


def answer_line(answer: Answer) -> str | None:
    """The answer's own words (a model's summary), or None when the answer is just its quotes."""
    if answer.text and all(answer.text != q.text for q in answer.quotes):
        return answer.text
    return None


def passages_label(answer: Answer) -> str:
    """'1 passage' or 'N passages'."""
    return f"{len(answer.quotes)} passages" if len(answer.quotes) != 1 else "1 passage"
