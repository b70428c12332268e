"""The terminal chat: questions in, rendered answers out, over the same core as the bots.

Reads lines from any text stream, so it works at a TTY and with piped stdin alike.
"""

from __future__ import annotations

import datetime as dt
from typing import TextIO

from rich.console import Console

from bot.briefing import Briefing
from bot.errors import BriefbotError, InputError
from bot.render.terminal import answer_terminal, sources_table

HELP = """Ask any question about the sources, in English, German or Russian.
Commands: /sources  list the indexed sources
          /help     this text
          /quit     leave (Ctrl-D works too)"""


def sources_rows(briefing: Briefing) -> list[tuple[str, str, str, int, str]]:
    """The sources as table rows."""
    rows = []
    for info in briefing.sources():
        stamp = dt.datetime.fromtimestamp(info.indexed_at) if info.indexed_at else None
        when = stamp.strftime("%Y-%m-%d %H:%M") if stamp else "-"
        rows.append((info.id, info.title, info.lang, info.sentences, when))
    return rows


def run_chat(briefing: Briefing, stdin: TextIO, console: Console) -> int:
    """Serve one chat session until /quit or end of input; returns the exit code."""
    interactive = stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        console.print("[bold]Briefbot[/bold] — ask about the sources. /help for commands.")
    while True:
        try:
            line = console.input("[bold cyan]?[/bold cyan] ") + "\n" if interactive else stdin.readline()
        except EOFError:
            return 0
        if not line:
            return 0
        text = line.strip()
        if not text:
            continue
        command = text.split()[0].lower()
        if command in {"/quit", "/exit", "/q"}:
            return 0
        if command == "/help":
            console.print(HELP, markup=False, highlight=False)
        elif command == "/sources":
            console.print(sources_table(sources_rows(briefing)))
        elif text.startswith("/"):
            console.print(f"Unknown command {command!r}. /help lists the commands.", markup=False)
        else:
            try:
                console.print(answer_terminal(briefing.ask(text)))
            except InputError as exc:
                console.print(str(exc), style="yellow", markup=False)
            except BriefbotError as exc:
                console.print(f"error: {exc}", style="red", markup=False)
