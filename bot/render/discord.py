"""Discord rendering: embeds as plain JSON objects (discord.py is not imported here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.answer import Answer, Quote
from bot.briefing import SourceInfo
from bot.render import NOT_ANSWERED_TEXT, answer_line, citation, passages_label

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
    line = answer_line(answer)
    if line is not None:
        header = f"**Answer:** {discord_escape(line)}"
    else:
        header = f"**From the sources** ({passages_label(answer)}):"
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
