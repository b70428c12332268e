"""The Discord adapter: discord.py slash commands and mentions turned into core calls and embeds.

`build_bot(briefing)` assembles a `commands.Bot` with one cog per feature: `Basics` (/help,
/sources), `Questions` (/ask, and messages that mention the bot or are sent to it directly) and
`Admin` (/reload, /addsource, /removesource, for the user ids in DISCORD_ADMIN_IDS only). Each cog
gets the services it needs in its constructor; nothing is imported as a global. The core is
synchronous and CPU-bound: questions run on an `AskPool` (bot.adapters.pool, as on Telegram), other
core calls in a worker thread. A slash command is deferred first (Discord wants an acknowledgement
within 3 seconds; a cold index takes longer) and answered with followups.

Errors become messages in one place, `error_messages()`: the command tree's `on_error` uses it for
slash commands and the bot's `on_error` for mentions. Briefbot's own errors tell the user what went
wrong; anything else is a bug: the user gets an apology and the traceback is logged.

`serve(bot)` logs in and stays connected until the bot is closed. With DISCORD_API_BASE set it talks
to another Discord API (a local fake in the tests): discord.py reads its REST base and gateway URL
from class attributes, so they are set for the time the bot runs and restored afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.adapters.pool import AskPool
from bot.briefing import Briefing
from bot.config import Settings
from bot.errors import BriefbotError, ConfigError, InputError, SourceError
from bot.logs import redact_in_logs
from bot.render import discord as render
from bot.render.discord import DiscordMessage

log = logging.getLogger(__name__)

COMMANDS = [
    ("ask", "Ask a question about the sources"),
    ("sources", "The sources, their languages and when they were indexed"),
    ("help", "How to ask, and the commands"),
]
ADMIN_COMMANDS = [
    ("reload", "Re-read every source (admins)"),
    ("addsource", "Add a source from a .txt, .md or .html file (admins)"),
    ("removesource", "Remove a source by its id (admins)"),
]
DESCRIPTIONS = dict(COMMANDS + ADMIN_COMMANDS)
_MENTION = re.compile(r"<@!?(\d+)>")


class NotAdmin(app_commands.CheckFailure):
    """Someone not in DISCORD_ADMIN_IDS used an admin command."""


def is_admin(user: discord.abc.User, settings: Settings) -> bool:
    """True for the users listed in DISCORD_ADMIN_IDS."""
    return user.id in settings.discord_admin_ids


# ---- sending --------------------------------------------------------------------------------------
def _message_kwargs(message: DiscordMessage) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if message.content is not None:
        kwargs["content"] = message.content
    if message.embeds:
        kwargs["embeds"] = [discord.Embed.from_dict(embed) for embed in message.embeds]
    return kwargs


async def send(interaction: discord.Interaction, messages: list[DiscordMessage], *, ephemeral: bool = False) -> None:
    """Rendered messages as the interaction's response, or as followups once it is deferred."""
    for message in messages:
        if interaction.response.is_done():
            await interaction.followup.send(**_message_kwargs(message), ephemeral=ephemeral)
        else:
            await interaction.response.send_message(**_message_kwargs(message), ephemeral=ephemeral)


async def reply(message: discord.Message, messages: list[DiscordMessage]) -> None:
    """Rendered messages in the channel of `message`, the first one as a reply to it."""
    for number, part in enumerate(messages):
        if number == 0:
            await message.reply(**_message_kwargs(part), mention_author=False)
        else:
            await message.channel.send(**_message_kwargs(part))


def mention_question(message: discord.Message, me: discord.abc.User) -> str | None:
    """The question in a message meant for the bot (it mentions us, or is a DM), else None."""
    if message.author.bot or message.author.id == me.id:
        return None
    direct = isinstance(message.channel, discord.DMChannel)
    if not direct and not any(user.id == me.id for user in message.mentions):
        return None
    return " ".join(_MENTION.sub(lambda m: "" if int(m[1]) == me.id else m[0], message.content).split())


# ---- cogs -----------------------------------------------------------------------------------------
class Basics(commands.Cog):
    """/help and /sources."""

    def __init__(self, briefing: Briefing, settings: Settings) -> None:
        self.briefing = briefing
        self.settings = settings

    @app_commands.command(name="help", description=DESCRIPTIONS["help"])
    async def help_(self, interaction: discord.Interaction) -> None:
        admin = ADMIN_COMMANDS if is_admin(interaction.user, self.settings) else []
        await send(interaction, render.discord_help(COMMANDS, admin), ephemeral=True)

    @app_commands.command(name="sources", description=DESCRIPTIONS["sources"])
    async def sources(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        infos = await asyncio.to_thread(self.briefing.sources)
        await send(interaction, render.discord_sources(infos))


class Questions(commands.Cog):
    """/ask, and messages that mention the bot (or DMs) unless BRIEFBOT_DISCORD_MENTIONS is off."""

    def __init__(self, bot: commands.Bot, briefing: Briefing, settings: Settings, ask_pool: AskPool) -> None:
        self.bot = bot
        self.briefing = briefing
        self.settings = settings
        self.ask_pool = ask_pool

    @app_commands.command(name="ask", description=DESCRIPTIONS["ask"])
    @app_commands.describe(question="Your question, in any language of the sources")
    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer()
        answer = await self.ask_pool.ask(self.briefing, question)
        await send(interaction, render.discord_answer(answer))

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if not self.settings.discord_mentions or me is None:
            return
        question = mention_question(message, me)
        if question is None:
            return
        if not question:
            await reply(message, [DiscordMessage(content=render.DISCORD_TEXT["mention_usage"])])
            return
        async with message.channel.typing():
            answer = await self.ask_pool.ask(self.briefing, question)
        await reply(message, render.discord_answer(answer))


class Admin(commands.Cog):
    """/reload, /addsource and /removesource; anyone not in DISCORD_ADMIN_IDS is refused.

    Every admin action, and every refusal, is logged with the user id. Source errors propagate to
    the tree's error handler, which tells the admin that nothing changed.
    """

    def __init__(self, briefing: Briefing, settings: Settings) -> None:
        self.briefing = briefing
        self.settings = settings

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Only admins pass; the refusal is raised as NotAdmin and answered by the error handler."""
        if is_admin(interaction.user, self.settings):
            return True
        name = interaction.command.name if interaction.command else "?"
        log.warning("refused /%s to user %s in guild %s", name, interaction.user.id, interaction.guild_id)
        raise NotAdmin(name)

    @app_commands.command(name="reload", description=DESCRIPTIONS["reload"])
    async def reload(self, interaction: discord.Interaction) -> None:
        log.info("admin %s: /reload", interaction.user.id)
        await interaction.response.defer()
        index = await asyncio.to_thread(self.briefing.reload)
        log.info("admin %s: reloaded %d sources, %d sentences", interaction.user.id, len(index.documents), len(index))
        await send(interaction, render.discord_reloaded(len(index.documents), len(index)))

    @app_commands.command(name="addsource", description=DESCRIPTIONS["addsource"])
    @app_commands.describe(file="The document (.txt, .md or .html)", title="Its title (default: from the file)")
    async def addsource(
        self, interaction: discord.Interaction, file: discord.Attachment, title: str | None = None
    ) -> None:
        log.info("admin %s: /addsource %s (%s bytes)", interaction.user.id, file.filename, file.size)
        await interaction.response.defer()
        self.briefing.check_upload(file.filename, file.size)  # before downloading anything
        data = await download(file)
        added = await asyncio.to_thread(self.briefing.add_source, file.filename, data, (title or "").strip() or None)
        log.info("admin %s: added source %s (%d sentences)", interaction.user.id, added.id, added.sentences)
        await send(interaction, render.discord_source_added(added.title, added.id, added.sentences))

    @app_commands.command(name="removesource", description=DESCRIPTIONS["removesource"])
    @app_commands.describe(source_id="The id, as /sources lists it")
    @app_commands.rename(source_id="id")
    async def removesource(self, interaction: discord.Interaction, source_id: str) -> None:
        log.info("admin %s: /removesource %s", interaction.user.id, source_id)
        await interaction.response.defer()
        sentences = await asyncio.to_thread(self.briefing.remove_source, source_id.strip())
        log.info("admin %s: removed source %s", interaction.user.id, source_id)
        await send(interaction, render.discord_source_removed(source_id.strip(), sentences))


async def download(file: discord.Attachment) -> bytes:
    """The bytes of an uploaded file (checked with Briefing.check_upload first); SourceError when unreachable."""
    try:
        return await file.read()
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
        raise SourceError(f"could not download {file.filename} from Discord ({type(exc).__name__})") from exc


# ---- errors: mapped to messages here, and only here ------------------------------------------------
def error_messages(exc: BaseException) -> list[DiscordMessage] | None:
    """What the user is told about an error; None when it is a bug (they get an apology)."""
    if isinstance(exc, NotAdmin):
        return [DiscordMessage(content=render.DISCORD_TEXT["refused"])]
    if isinstance(exc, InputError):
        return render.discord_notice(str(exc))
    if isinstance(exc, SourceError):
        return render.discord_notice(render.DISCORD_TEXT["source_error"], str(exc))
    if isinstance(exc, BriefbotError):
        return render.discord_notice(render.DISCORD_TEXT["briefbot_error"], str(exc))
    return None


class BriefbotTree(app_commands.CommandTree):
    """The command tree, with the slash commands' error handler."""

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError, /) -> None:
        exc = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        messages = error_messages(exc)
        if messages is None:
            await super().on_error(interaction, error)  # logs the traceback
            messages = [DiscordMessage(content=render.DISCORD_TEXT["apology"])]
        elif not isinstance(exc, NotAdmin):
            log.warning("user %s, /%s: %s: %s", interaction.user.id,
                        interaction.command.name if interaction.command else "?", type(exc).__name__, exc)
        try:
            await send(interaction, messages, ephemeral=isinstance(exc, NotAdmin))
        except discord.HTTPException as send_error:
            log.warning("could not tell user %s about %s: %s", interaction.user.id, type(exc).__name__, send_error)


class DiscordBot(commands.Bot):
    """Briefbot on Discord: the cogs, the command sync at start and the mentions' error handler."""

    def __init__(
        self, briefing: Briefing, settings: Settings, *, ask_pool: AskPool | None = None, **options: Any
    ) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice: no warnings about it
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = intents.dm_messages = settings.discord_mentions
        intents.message_content = settings.discord_message_content
        super().__init__(
            command_prefix=commands.when_mentioned,  # unused: there are no prefix commands
            help_command=None,
            intents=intents,
            tree_cls=BriefbotTree,
            allowed_mentions=discord.AllowedMentions.none(),  # quotes may say @everyone
            **options,
        )
        self.briefing = briefing
        self.settings = settings
        self.ask_pool = ask_pool or AskPool()

    async def setup_hook(self) -> None:
        """Add the cogs and register the slash commands with Discord (after login, before connecting)."""
        await self.add_cog(Basics(self.briefing, self.settings))
        await self.add_cog(Questions(self, self.briefing, self.settings, self.ask_pool))
        await self.add_cog(Admin(self.briefing, self.settings))
        synced = await self.tree.sync()
        log.info("registered %d slash commands", len(synced))

    async def close(self) -> None:
        """Disconnect, then stop the question workers."""
        await super().close()
        await self.ask_pool.close()

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: messages for the bot are handled by the Questions cog's listener."""

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """A mention's error: tell the user; a bug is also logged with its traceback."""
        exc = sys.exc_info()[1]
        message = args[0] if event_method == "on_message" and args else None
        if not isinstance(message, discord.Message) or exc is None:
            await super().on_error(event_method, *args, **kwargs)
            return
        messages = error_messages(exc)
        if messages is None:
            await super().on_error(event_method, *args, **kwargs)
            messages = [DiscordMessage(content=render.DISCORD_TEXT["apology"])]
        else:
            log.warning("user %s, mention: %s: %s", message.author.id, type(exc).__name__, exc)
        try:
            await reply(message, messages)
        except discord.HTTPException as send_error:
            log.warning("could not tell user %s about %s: %s", message.author.id, type(exc).__name__, send_error)


def build_bot(
    briefing: Briefing, settings: Settings | None = None, *, ask_pool: AskPool | None = None, **options: Any
) -> DiscordBot:
    """The bot over `briefing`; `settings` default to the briefing's, `options` go to discord.Client."""
    return DiscordBot(briefing, settings or briefing.settings, ask_pool=ask_pool, **options)


# ---- running ----------------------------------------------------------------------------------------
def check_config(settings: Settings) -> str:
    """The bot token, or ConfigError when none is configured."""
    token = settings.discord_bot_token.get_secret_value().strip() if settings.discord_bot_token else ""
    if not token:
        raise ConfigError("DISCORD_BOT_TOKEN is not set: create a bot in the Developer Portal (docs/discord.md)")
    return token


@contextlib.contextmanager
def _api_base(base: str | None) -> Iterator[None]:
    """Point discord.py's REST calls at `base` while the bot runs (the gateway follows in serve)."""
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    if base:
        Route.BASE = base.rstrip("/")
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


async def serve(bot: DiscordBot) -> None:
    """Log in, register the commands and stay connected until the bot is closed."""
    token = check_config(bot.settings)

    redact_in_logs(token)
    async with bot:
        with _api_base(bot.settings.discord_api_base):
            try:
                await bot.login(token)
            except discord.LoginFailure as exc:
                raise ConfigError("Discord refused DISCORD_BOT_TOKEN: reset it in the Developer Portal") from exc
            if bot.settings.discord_api_base:
                _, url, _ = await bot.http.get_bot_gateway()
                DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
            try:
                await bot.connect()
            except discord.PrivilegedIntentsRequired as exc:
                raise ConfigError(
                    "Discord refused the Message Content intent: enable it for the bot in the Developer "
                    "Portal, or unset BRIEFBOT_DISCORD_MESSAGE_CONTENT"
                ) from exc


async def main(briefing: Briefing) -> None:
    """Build the bot and serve until interrupted."""
    await serve(build_bot(briefing))


def run(briefing: Briefing) -> None:
    """Blocking entry point for `briefbot run discord`."""
    asyncio.run(main(briefing))
