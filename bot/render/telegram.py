"""Telegram rendering with aiogram.utils.formatting (entities, never hand-escaped markup)."""

from __future__ import annotations

import datetime as dt

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

from bot.answer import Answer, Quote
from bot.briefing import SourceInfo
from bot.render import NOT_ANSWERED_TEXT, answer_line, citation, passages_label

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
    "source_error": "A source could not be read, so nothing changed: I keep answering from the last good index.",
    "briefbot_error": "That did not work:",
    "apology": "Sorry, something went wrong on my side. Please try again in a moment.",
    "reloading": "Reloading every source…",
    "addsource_usage": "Send the file (.txt, .md or .html) as a document with the caption /addsource "
    "[title], or reply /addsource to a document.",
    "removesource_usage": "Usage: /removesource ID (the ids are listed by /sources).",
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
    line = answer_line(answer)
    if line is not None:
        header: FText = FText(Bold("Answer: "), line)
    else:
        header = FText(Bold("From the sources"), f" ({passages_label(answer)}):")
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
