"""Rendering: one neutral Answer (or list of sources) -> text for a platform.

The core returns data; the words a user reads are chosen here, once per platform.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from aiogram.utils.formatting import (
    BlockQuote,
    Bold,
    Code,
    ExpandableBlockQuote,
    Italic,
    NodeType,
    sizeof,
)
from aiogram.utils.formatting import BotCommand as BotCommandNode
from aiogram.utils.formatting import Text as FText
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.answer import Answer, Quote
from bot.briefing import SourceInfo

NOT_ANSWERED_TEXT = "I could not find an answer to that in the sources."


def citation(quote: Quote) -> str:
    """'Title, ¶3': where a quote comes from."""
    return f"{quote.title}, ¶{quote.paragraph}"


def answer_terminal(answer: Answer) -> RenderableType:
    """An answer for the terminal: the quotes as panels titled with their citations."""
    if not answer.answered:
        return Text(NOT_ANSWERED_TEXT, style="yellow")
    panels: list[RenderableType] = []
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


def answer_plain(answer: Answer) -> str:
    """An answer as plain text (for logs, pipes and tests)."""
    if not answer.answered:
        return NOT_ANSWERED_TEXT
    parts = []
    for quote in answer.quotes:
        parts.append(f"„{quote.text}“\n  — {citation(quote)} [{quote.source}]")
    return "\n\n".join(parts)


def sources_table(rows: list[tuple[str, str, str, int, str]]) -> Table:
    """(id, title, lang, sentences, indexed) rows as a terminal table."""
    table = Table("id", "title", "lang", "sentences", "indexed", title="Sources")
    for source_id, title, lang, count, indexed in rows:
        table.add_row(escape(source_id), escape(title), lang, str(count), indexed)
    return table


# ---- Telegram ------------------------------------------------------------------------------------
# Messages are built as aiogram.utils.formatting nodes: text and entities come out together, so
# nothing is ever escaped by hand. Replies are split below Telegram's limit, counted in UTF-16 code
# units, and a split never cuts through an entity: an oversized entity is re-opened in each part.

TELEGRAM_MAX_UTF16 = 4096
EXPANDABLE_QUOTE_OVER = 350  # characters; longer quotes are collapsed into an expandable blockquote
TELEGRAM_HELP = (
    "Ask me anything about the sources: in a private chat just write your question; in a group use "
    "/ask, mention me or reply to one of my messages. Every answer quotes the sources word for word "
    "and says where each quote comes from."
)


TELEGRAM_TEXT = {
    "ask_usage": "Write your question after the command, for example: /ask What happened on 9 May?",
    "unknown_command": "I do not know that command. /help lists what I can do.",
    "text_only": "Send me your question as text.",
    "expired": "This answer is too old for that; please ask again.",
    "refused": "Sorry, only the bot's admins can do that.",
    "input_error": "I cannot use that:",
    "source_error": "A source could not be read, so nothing changed: I keep answering from the last good index.",
    "briefbot_error": "That did not work:",
    "apology": "Sorry, something went wrong on my side. Please try again in a moment.",
    "reloading": "Reloading every source…",
    "addsource_usage": "Send the file (.txt, .md or .html) as a document with the caption /addsource "
    "[title], or reply /addsource to a document.",
    "removesource_usage": "Usage: /removesource ID (the ids are listed by /sources).",
    "adding": "Adding the source…",
}


def telegram_reloaded(sources: int, sentences: int) -> list[FText]:
    """The outcome of a successful reload."""
    return [FText(Bold("Reloaded."), f" {sources} sources, {sentences} sentences indexed.")]


def telegram_source_added(title: str, source_id: str, sentences: int) -> list[FText]:
    """An uploaded source is now answering."""
    return [FText(Bold("Added "), Bold(title), " (", Code(source_id), f"). {sentences} sentences indexed.")]


def telegram_source_removed(source_id: str, sentences: int) -> list[FText]:
    """A removed source no longer answers."""
    return [FText(Bold("Removed "), Code(source_id), f". {sentences} sentences indexed.")]


def telegram_stats(rows: list[tuple[str, str]]) -> list[FText]:
    """/stats: label and value lines."""
    lines: list[NodeType] = [Bold("Statistics")]
    for label, value in rows:
        lines.extend(["\n", f"{label}: ", Code(value)])
    return split_message([FText(*lines)])


def telegram_answer(answer: Answer, shown: int) -> list[FText]:
    """An answer as Telegram messages: a short answer line, then the first `shown` quotes."""
    if not answer.answered or not answer.quotes:
        return [FText(NOT_ANSWERED_TEXT)]
    quotes = answer.quotes[:shown]
    if answer.text and all(answer.text != q.text for q in answer.quotes):
        header: FText = FText(Bold("Answer: "), answer.text)
    else:
        many = f"{len(answer.quotes)} passages" if len(answer.quotes) > 1 else "1 passage"
        header = FText(Bold("From the sources"), f" ({many}):")
    return split_message([header, *(_quote_block(q, n) for n, q in enumerate(quotes, 1))])


def telegram_more_quotes(answer: Answer, start: int) -> list[FText]:
    """The quotes after the first `start` ones, numbered on from there."""
    rest = answer.quotes[start:]
    if not rest:
        return [FText("There are no more quotes for this answer.")]
    return split_message([_quote_block(q, n) for n, q in enumerate(rest, start + 1)])


def _quote_block(quote: Quote, number: int) -> FText:
    box = ExpandableBlockQuote if len(quote.text) > EXPANDABLE_QUOTE_OVER else BlockQuote
    return FText(box(quote.text), "\n", f"{number}. ", Italic(citation(quote)))


def telegram_context(quote: Quote, paragraph: str, paragraph_start: int) -> list[FText]:
    """The paragraph a quote comes from, with the quoted words in bold."""
    start, end = quote.start - paragraph_start, quote.end - paragraph_start
    box = ExpandableBlockQuote if len(paragraph) > EXPANDABLE_QUOTE_OVER * 2 else BlockQuote
    body = [part for part in (paragraph[:start], Bold(paragraph[start:end]), paragraph[end:]) if part]
    return split_message([FText(Bold(quote.title), f", ¶{quote.paragraph}"), box(*body)])


def telegram_context_missing() -> list[FText]:
    """The quoted paragraph is gone: the source changed since the answer."""
    return [FText("That source has changed since this answer; ask again for fresh quotes.")]


def telegram_sources(infos: list[SourceInfo]) -> list[FText]:
    """The indexed sources: title, id, language, size and when each was last indexed."""
    if not infos:
        return [FText("No sources are indexed yet.")]
    blocks: list[FText] = [FText(Bold(f"Sources ({len(infos)})"))]
    for info in infos:
        when = (
            dt.datetime.fromtimestamp(info.indexed_at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            if info.indexed_at
            else "not yet"
        )
        blocks.append(
            FText(
                Bold(info.title), " (", Code(info.id), ")\n",
                f"{info.lang} · {info.sentences} sentences · indexed {when}",
            )
        )
    return split_message(blocks)


def telegram_help(commands: list[tuple[str, str]], admin_commands: list[tuple[str, str]]) -> list[FText]:
    """/help: how to ask, and the commands (the admin ones only for admins)."""
    blocks: list[FText] = [FText(TELEGRAM_HELP), _command_list("Commands", commands)]
    if admin_commands:
        blocks.append(_command_list("Admin commands", admin_commands))
    return split_message(blocks)


def telegram_start() -> list[FText]:
    """/start: a greeting and how to ask."""
    return [FText(Bold("Hello! I am Briefbot."), "\n", TELEGRAM_HELP, "\n", "/help lists the commands.")]


def _command_list(title: str, commands: list[tuple[str, str]]) -> FText:
    lines: list[FText | str] = [Bold(title)]
    for name, description in commands:
        lines.extend(["\n", BotCommandNode(f"/{name}"), f" — {description}"])
    return FText(*lines)


def telegram_notice(text: str, detail: str | None = None) -> list[FText]:
    """A short message, with an optional detail (an error text, a count) in code style."""
    if detail is None:
        return split_message([FText(text)])
    return split_message([FText(text), FText(Code(detail))])


def split_message(blocks: list[FText], limit: int = TELEGRAM_MAX_UTF16, sep: str = "\n\n") -> list[FText]:
    """Pack blocks, joined by `sep`, into messages of at most `limit` UTF-16 units, never cutting an entity.

    A block that fits in a message is never split. A longer one is cut between its parts, or at
    whitespace inside a text, and each entity it cuts is re-opened in every message it spans.
    """
    nodes: list[NodeType] = []
    for block in blocks:
        if nodes:
            nodes.append(sep)
        nodes.append(block)
    messages = [FText(*_trimmed(chunk)) for chunk in _fit(FText(*nodes), limit)]
    return [m for m in messages if len(m)] or [FText(NOT_ANSWERED_TEXT)]


def _size(node: NodeType) -> int:
    return len(node) if isinstance(node, FText) else sizeof(str(node))


def _fit(node: NodeType, limit: int, first: int | None = None) -> list[list[NodeType]]:
    """Chunks of node: lists of nodes adding up to at most `first` (the first) or `limit` units."""
    budget = limit if first is None else first
    if _size(node) <= budget:
        return [[node]]
    if not isinstance(node, FText):
        return [[piece] for piece in _split_text(str(node), limit, first=budget)]
    chunks: list[list[NodeType]] = []
    current: list[NodeType] = []
    size = 0
    for child in node:
        room = (limit if chunks else budget) - size
        child_size = _size(child)
        if child_size <= room:
            current.append(child)
            size += child_size
            continue
        if child_size > limit and room > limit // 4:  # must be cut anyway: fill this message first
            head, *rest = _fit(child, limit, first=room)
            current.extend(head)
        else:
            rest = [[child]] if child_size <= limit else _fit(child, limit)
        if current or not chunks:  # an empty first chunk: nothing fits in the first budget
            chunks.append(current)
        chunks.extend(rest[:-1])
        current = list(rest[-1]) if rest else []
        size = sum(_size(n) for n in current)
    if current:
        chunks.append(current)
    wrapped = [_trimmed(chunk) for chunk in chunks]
    return [[node.replace(*chunk)] if chunk else [] for i, chunk in enumerate(wrapped) if chunk or i == 0]


def _trimmed(nodes: list[NodeType]) -> list[NodeType]:
    """Drop whitespace at the edges of a chunk (Telegram strips it and would shift the entities)."""
    nodes = list(nodes)
    while nodes and isinstance(nodes[0], str) and not nodes[0].strip():
        nodes.pop(0)
    while nodes and isinstance(nodes[-1], str) and not nodes[-1].strip():
        nodes.pop()
    if nodes and isinstance(nodes[0], str):
        nodes[0] = nodes[0].lstrip()
    if nodes and isinstance(nodes[-1], str):
        nodes[-1] = nodes[-1].rstrip()
    return nodes


def _split_text(text: str, limit: int, first: int | None = None) -> list[str]:
    """Cut text into pieces of at most limit UTF-16 units (the first: `first`), at a space if possible.

    The whitespace at each cut is dropped: every cut is the end or the start of a message.
    """
    pieces: list[str] = []
    budget = limit if first is None else first
    while text:
        if sizeof(text) <= budget:
            pieces.append(text)
            break
        cut, used = len(text), 0
        for i, char in enumerate(text):
            used += 2 if ord(char) > 0xFFFF else 1
            if used > budget:
                cut = max(i, 1)
                break
        window = text[:cut]
        space = max(window.rfind("\n"), window.rfind(" "))
        if space > cut // 2:
            cut = space
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
        budget = limit
    return [p for p in pieces if p]


# ---- Discord -------------------------------------------------------------------------------------
# Replies are embeds, as Discord's JSON embed objects (so discord.py is not imported here), built from
# the same neutral objects. Each quote is a field: its citation as the name, the verbatim text in a
# blockquote as the value, markdown escaped so that it displays exactly as in the source. A quote too
# long for one field is cut at whitespace into numbered parts ("part 1 of 2"), never shortened.
# Fields are packed into embeds (25 fields, 6000 characters each) and embeds into messages (10 embeds
# and 6000 characters together). Sizes are counted in UTF-16 units, never fewer than the characters
# Discord counts, so a reply built here is within every limit.

DISCORD_CONTENT_MAX = 2000
DISCORD_DESCRIPTION_MAX = 4096
DISCORD_FIELD_NAME_MAX = 256
DISCORD_FIELD_VALUE_MAX = 1024
DISCORD_FIELDS_MAX = 25
DISCORD_EMBEDS_MAX = 10
DISCORD_EMBEDS_TOTAL_MAX = 6000  # title, description, field names and values, footer: per message
DISCORD_COLOUR = 0x5865F2
DISCORD_QUOTE_PREFIX = ">>> "  # a blockquote to the end of the field value
DISCORD_HELP = (
    "Ask me anything about the sources with /ask, or mention me with your question. Every answer "
    "quotes the sources word for word and says where each quote comes from."
)
DISCORD_TEXT = {
    "refused": "Sorry, only the bot's admins can do that.",
    "source_error": "A source could not be read, so nothing changed: I keep answering from the last good index.",
    "briefbot_error": "That did not work:",
    "apology": "Sorry, something went wrong on my side. Please try again in a moment.",
    "mention_usage": "Mention me together with your question, for example: @Briefbot What happened on 9 May?",
}


@dataclass(frozen=True)
class DiscordMessage:
    """One Discord message: plain content (at most 2000 characters) and/or up to 10 embeds (as JSON)."""

    content: str | None = None
    embeds: list[dict[str, Any]] = field(default_factory=list)


def discord_answer(answer: Answer) -> list[DiscordMessage]:
    """An answer as Discord messages: the answer line, then every quote with its citation."""
    if not answer.answered or not answer.quotes:
        return [DiscordMessage(content=NOT_ANSWERED_TEXT)]
    if answer.text and all(answer.text != q.text for q in answer.quotes):
        header = f"**Answer:** {discord_escape(answer.text)}"
    else:
        many = f"{len(answer.quotes)} passages" if len(answer.quotes) > 1 else "1 passage"
        header = f"**From the sources** ({many}):"
    fields = [f for number, quote in enumerate(answer.quotes, 1) for f in _discord_quote_fields(quote, number)]
    return _discord_pack(header, fields)


def _discord_quote_fields(quote: Quote, number: int) -> list[tuple[str, str]]:
    room = DISCORD_FIELD_VALUE_MAX - len(DISCORD_QUOTE_PREFIX)
    pieces = _discord_split(quote.text, room, escape=True)
    name = f"{number}. {discord_escape(citation(quote))}"
    if len(pieces) == 1:
        return [(_discord_clip(name, DISCORD_FIELD_NAME_MAX), DISCORD_QUOTE_PREFIX + pieces[0])]
    parts = len(pieces)
    return [
        (_discord_clip(name, DISCORD_FIELD_NAME_MAX - 20) + f" — part {i} of {parts}", DISCORD_QUOTE_PREFIX + piece)
        for i, piece in enumerate(pieces, 1)
    ]


def discord_sources(infos: list[SourceInfo]) -> list[DiscordMessage]:
    """The indexed sources: title, id, language, size and when each was last indexed (in local time)."""
    if not infos:
        return [DiscordMessage(content="No sources are indexed yet.")]
    fields = []
    for info in infos:
        when = f"<t:{int(info.indexed_at)}:f>" if info.indexed_at else "not yet"
        value = f"`{info.id}` · {info.lang} · {info.sentences} sentences · indexed {when}"
        fields.append((_discord_clip(discord_escape(info.title), DISCORD_FIELD_NAME_MAX), value))
    return _discord_pack(f"**Sources** ({len(infos)})", fields)


def discord_help(commands: list[tuple[str, str]], admin_commands: list[tuple[str, str]]) -> list[DiscordMessage]:
    """/help: how to ask, and the commands (the admin ones only for admins)."""
    fields = [("Commands", "\n".join(f"`/{name}` — {text}" for name, text in commands))]
    if admin_commands:
        fields.append(("Admin commands", "\n".join(f"`/{name}` — {text}" for name, text in admin_commands)))
    return _discord_pack(DISCORD_HELP, fields)


def discord_reloaded(sources: int, sentences: int) -> list[DiscordMessage]:
    """The outcome of a successful reload."""
    return [DiscordMessage(content=f"**Reloaded.** {sources} sources, {sentences} sentences indexed.")]


def discord_source_added(title: str, source_id: str, sentences: int) -> list[DiscordMessage]:
    """An uploaded source is now answering."""
    name = _discord_clip(discord_escape(title), 300)
    return [DiscordMessage(content=f"**Added {name}** (`{source_id}`). {sentences} sentences indexed.")]


def discord_source_removed(source_id: str, sentences: int) -> list[DiscordMessage]:
    """A removed source no longer answers."""
    return [DiscordMessage(content=f"**Removed** `{source_id}`. {sentences} sentences indexed.")]


def discord_notice(text: str, detail: str | None = None) -> list[DiscordMessage]:
    """A short message, with an optional detail (an error text) quoted below it; split if long."""
    body = text if detail is None else f"{text}\n{DISCORD_QUOTE_PREFIX}{discord_escape(detail)}"
    if _dlen(body) <= DISCORD_CONTENT_MAX:
        return [DiscordMessage(content=body)]
    messages = [DiscordMessage(content=piece) for piece in _discord_split(text, DISCORD_CONTENT_MAX)]
    room = DISCORD_CONTENT_MAX - len(DISCORD_QUOTE_PREFIX)
    for piece in _discord_split(detail or "", room, escape=True):
        messages.append(DiscordMessage(content=DISCORD_QUOTE_PREFIX + piece))
    return messages


def _discord_pack(description: str, fields: list[tuple[str, str]]) -> list[DiscordMessage]:
    """Embeds holding a description and fields, grouped into messages, all within Discord's limits."""
    embeds: list[dict[str, Any]] = [
        {"description": piece, "color": DISCORD_COLOUR, "fields": []}
        for piece in _discord_split(description, DISCORD_DESCRIPTION_MAX)
    ]
    sizes = [_dlen(e["description"]) for e in embeds]
    for name, value in fields:
        size = _dlen(name) + _dlen(value)
        if not embeds or len(embeds[-1]["fields"]) >= DISCORD_FIELDS_MAX or sizes[-1] + size > DISCORD_EMBEDS_TOTAL_MAX:
            embeds.append({"color": DISCORD_COLOUR, "fields": []})
            sizes.append(0)
        embeds[-1]["fields"].append({"name": name, "value": value, "inline": False})
        sizes[-1] += size
    messages: list[DiscordMessage] = []
    batch: list[dict[str, Any]] = []
    total = 0
    for embed, size in zip(embeds, sizes, strict=True):
        if batch and (len(batch) >= DISCORD_EMBEDS_MAX or total + size > DISCORD_EMBEDS_TOTAL_MAX):
            messages.append(DiscordMessage(embeds=batch))
            batch, total = [], 0
        batch.append(embed)
        total += size
    if batch:
        messages.append(DiscordMessage(embeds=batch))
    return messages


_DISCORD_MARKUP = re.compile(r"[\\*_~|`\[\]]|^(?:\s*[->#+]|\s*\d+(?=[.)]\s))", re.MULTILINE)


def discord_escape(text: str) -> str:
    """Text that Discord displays exactly as written: its markdown characters escaped with a backslash."""
    return _DISCORD_MARKUP.sub(_escape_match, text)


def _escape_match(match: re.Match[str]) -> str:
    found = match[0]
    if found[-1].isdigit():  # "9. Mai" at a line start: not a numbered list
        return found + "\\"
    return found[:-1] + "\\" + found[-1]


def _dlen(text: str) -> int:
    """Length in UTF-16 units: never less than the characters Discord counts."""
    return len(text.encode("utf-16-le")) // 2


def _discord_clip(text: str, limit: int) -> str:
    """A label (a title, never a quote) shortened to `limit` with an ellipsis."""
    if _dlen(text) <= limit:
        return text
    while _dlen(text) > limit - 1:
        text = text[:-1]
    return text.rstrip().rstrip("\\") + "…"


def _discord_split(text: str, limit: int, *, escape: bool = False) -> list[str]:
    """Cut text at whitespace into pieces of at most `limit` units (after escaping markdown if asked).

    Only whitespace is dropped at the cuts; a word longer than a whole piece is cut inside it.
    """
    show = discord_escape if escape else (lambda s: s)
    pieces: list[str] = []
    current = ""
    for token in re.split(r"(\s+)", text.strip()):
        if not token:
            continue
        candidate = current + token
        if _dlen(show(candidate.rstrip())) <= limit:
            current = candidate
            continue
        if current.strip():
            pieces.append(current.rstrip())
        current = "" if token.isspace() else token
        while _dlen(show(current)) > limit:  # one word longer than a piece
            cut = len(current)
            while cut > 1 and _dlen(show(current[:cut])) > limit:
                cut -= 1
            pieces.append(current[:cut])
            current = current[cut:]
    if current.strip():
        pieces.append(current.rstrip())
    return [show(piece) for piece in pieces]
