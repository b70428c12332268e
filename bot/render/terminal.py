"""Terminal rendering with rich: answers as panels, sources as a table."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.answer import Answer
from bot.render import NOT_ANSWERED_TEXT, answer_line, citation


def answer_terminal(answer: Answer) -> RenderableType:
    """An answer for the terminal: its own words if any, then the quotes as panels with citations."""
    if not answer.answered:
        return Text(NOT_ANSWERED_TEXT, style="yellow")
    panels: list[RenderableType] = []
    line = answer_line(answer)
    if line is not None:
        panels.append(Text(line, style="bold"))
    for number, quote in enumerate(answer.quotes, 1):
        panels.append(
            Panel(
                Text(quote.text),
                title=f"[bold]{number}[/bold]",
                title_align="left",
                subtitle=escape(f"{citation(quote)} · {quote.source}"),
                subtitle_align="right",
                border_style="cyan",
            )
        )
    return Group(*panels)


def sources_table(rows: list[tuple[str, str, str, int, str]]) -> Table:
    """(id, title, lang, sentences, indexed) rows as a terminal table."""
    table = Table("id", "title", "lang", "sentences", "indexed", title="Sources")
    for source_id, title, lang, count, indexed in rows:
        table.add_row(escape(source_id), escape(title), lang, str(count), indexed)
    return table
