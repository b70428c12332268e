"""A fake Discord that the real discord.py client talks to on 127.0.0.1: REST API and gateway.

One aiohttp app serves:

- the REST API under ``/api/v10``: ``GET /users/@me``, ``GET /oauth2/applications/@me``,
  ``GET /gateway/bot``, ``PUT /applications/{app}/commands`` (command sync), the interaction callback
  ``POST /interactions/{id}/{token}/callback``, followups ``POST /webhooks/{app}/{token}``, and
  ``POST /channels/{id}/messages`` and ``/typing``. Bot routes check ``Authorization: Bot <token>``;
- the gateway websocket at ``/gateway``: HELLO, IDENTIFY -> READY (the bot user and application)
  and GUILD_CREATE (one guild with one text channel), heartbeat ACKs, and the INTERACTION_CREATE and
  MESSAGE_CREATE events a test pushes with ``slash()`` and ``push_message()``;
- uploaded files under ``/attachments/`` (the URLs of the attachments a test creates).

It checks what Discord checks, so a reply accepted here is one Discord would accept: an interaction
is acknowledged once and within 3 seconds, followups only after that; a message has content or
embeds, content of at most 2000 characters, at most 10 embeds, and the embed limits (title 256,
description 4096, 25 fields, field name 256, value 1024, 6000 characters over all embeds). Requests
that fail a check are answered 400 (as Discord does) and recorded in ``rejected``; requests for
routes it does not know are answered 404 and recorded in ``unknown``.

    async with FakeDiscordServer() as server:
        discord.http.Route.BASE = server.api_base    # the gateway URL comes from GET /gateway/bot
        ...                                          # start the bot, then:
        exchange = await server.slash("ask", question="Who?", user_id=1)
        [reply] = await server.wait_replies(exchange, 1)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import WSMsgType, web

DEFAULT_TOKEN = "ODk5.fake-discord.token_for_tests"
APP_ID = 899000000000000001  # a bot's user id is its application's id
GUILD_ID = 899000000000000100
CHANNEL_ID = 899000000000000200
DM_CHANNEL_ID = 899000000000000300
BOT_NAME = "Briefbot"
ACK_WITHIN = 3.0  # seconds Discord gives to acknowledge an interaction
HEARTBEAT_MS = 1000
CONTENT_MAX, EMBEDS_MAX, EMBEDS_TOTAL_MAX = 2000, 10, 6000
TITLE_MAX, DESCRIPTION_MAX, FIELDS_MAX, FIELD_NAME_MAX, FIELD_VALUE_MAX, FOOTER_MAX = 256, 4096, 25, 256, 1024, 2048
EPHEMERAL = 64
_NAME = re.compile(r"^[-_\w]{1,32}$")
_UNESCAPE = re.compile(r"\\([^0-9A-Za-z\s])")  # simple-markdown's escape rule, as Discord uses it


def unescape_markdown(text: str) -> str:
    """Text as Discord displays it: a backslash before a punctuation character is not shown."""
    return _UNESCAPE.sub(r"\1", text)


def check_message(payload: dict[str, Any]) -> str | None:
    """Discord's complaint about a message body, or None when it would be accepted."""
    content = payload.get("content") or ""
    embeds = payload.get("embeds") or []
    if not content and not embeds and not payload.get("attachments"):
        return "Cannot send an empty message"
    if len(content) > CONTENT_MAX:
        return f"content: Must be {CONTENT_MAX} or fewer in length."
    if len(embeds) > EMBEDS_MAX:
        return f"embeds: Must be {EMBEDS_MAX} or fewer in length."
    total = 0
    for number, embed in enumerate(embeds):
        where = f"embeds.{number}"
        texts = {
            "title": (embed.get("title") or "", TITLE_MAX),
            "description": (embed.get("description") or "", DESCRIPTION_MAX),
            "footer.text": ((embed.get("footer") or {}).get("text") or "", FOOTER_MAX),
            "author.name": ((embed.get("author") or {}).get("name") or "", TITLE_MAX),
        }
        fields = embed.get("fields") or []
        if len(fields) > FIELDS_MAX:
            return f"{where}.fields: Must be {FIELDS_MAX} or fewer in length."
        for i, item in enumerate(fields):
            texts[f"fields.{i}.name"] = (item.get("name") or "", FIELD_NAME_MAX)
            texts[f"fields.{i}.value"] = (item.get("value") or "", FIELD_VALUE_MAX)
            if not item.get("name") or not item.get("value"):
                return f"{where}.fields.{i}: This field is required"
        for key, (text, limit) in texts.items():
            if len(text) > limit:
                return f"{where}.{key}: Must be {limit} or fewer in length."
            total += len(text)
        if not any(text for text, _ in texts.values()):
            return f"{where}: an empty embed (Discord shows an empty box: a rendering bug)"
    if total > EMBEDS_TOTAL_MAX:
        return f"embeds: Embed size exceeds maximum size of {EMBEDS_TOTAL_MAX}"
    return None


# ---- what the server records --------------------------------------------------------------------
@dataclass
class SentMessage:
    """A message the bot sent: to a channel, as an interaction response or as a followup."""

    seq: int
    message_id: int
    channel_id: int
    content: str
    embeds: list[dict[str, Any]]
    flags: int = 0
    reply_to: int | None = None
    interaction_token: str | None = None

    @property
    def ephemeral(self) -> bool:
        """Whether only the user who used the command sees it."""
        return bool(self.flags & EPHEMERAL)

    def fields(self) -> list[dict[str, Any]]:
        """The fields of all embeds, in order."""
        return [f for embed in self.embeds for f in embed.get("fields") or []]

    def text(self) -> str:
        """Everything a user reads, as displayed: content, descriptions, field names and values."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            parts += [f"{f['name']}\n{f['value']}" for f in embed.get("fields") or []]
        return unescape_markdown("\n".join(p for p in parts if p))


@dataclass
class Exchange:
    """One slash command a user used: the interaction pushed and what the bot answered."""

    interaction_id: int
    token: str
    name: str
    user_id: int
    created: float
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    replies: list[SentMessage] = field(default_factory=list)  # callback messages and followups, in order


@dataclass(frozen=True)
class Rejection:
    """A request the server refused (a limit exceeded, a late or repeated acknowledgement, ...)."""

    route: str
    status: int
    message: str


class _Refused(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ---- the server ---------------------------------------------------------------------------------
class FakeDiscordServer:
    """Discord's REST API and gateway for one bot, one guild and one text channel."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, heartbeat_ms: int = HEARTBEAT_MS) -> None:
        self.token = token
        self.heartbeat_ms = heartbeat_ms
        self.commands: list[dict[str, Any]] = []  # as registered by the last sync
        self.identify: dict[str, Any] | None = None
        self.ready = asyncio.Event()
        self.heartbeats = 0
        self.exchanges: dict[str, Exchange] = {}
        self.sent: list[SentMessage] = []
        self.rejected: list[Rejection] = []
        self.unknown: list[str] = []
        self.typing: list[int] = []
        self._files: dict[str, bytes] = {}
        self._ids = itertools.count(APP_ID + 10_000)
        self._seq = itertools.count(1)
        self._event_seq = itertools.count(1)
        self._ws: web.WebSocketResponse | None = None
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{name}", self._attachment)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The REST base URL to give discord.py (``Route.BASE``)."""
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The gateway URL that GET /gateway/bot returns."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot's user object."""
        return _user(APP_ID, BOT_NAME, bot=True)

    # ---- the test's side --------------------------------------------------------------------------
    def add_attachment(self, filename: str, data: bytes, content_type: str = "text/plain") -> dict[str, Any]:
        """An uploaded file served by this server, as the attachment object of an interaction."""
        attachment_id = next(self._ids)
        name = f"{attachment_id}-{filename}"
        self._files[name] = data
        url = f"{self.base}/attachments/{name}"
        return {
            "id": str(attachment_id), "filename": filename, "size": len(data), "url": url, "proxy_url": url,
            "content_type": content_type,
        }

    async def slash(self, name: str, *, user_id: int, **options: Any) -> Exchange:
        """A user uses a registered slash command; options by name (an attachment as add_attachment gives it)."""
        command = next((c for c in self.commands if c["name"] == name), None)
        if command is None:
            raise AssertionError(f"/{name} was not registered; registered: {[c['name'] for c in self.commands]}")
        known = {o["name"]: o for o in command.get("options", [])}
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1, "options": []}
        for key, value in options.items():
            if key not in known:
                raise AssertionError(f"/{name} has no option {key!r}; it has {sorted(known)}")
            kind = known[key]["type"]
            if kind == 11:  # an attachment: its id, with the object under resolved
                data.setdefault("resolved", {}).setdefault("attachments", {})[value["id"]] = value
                value = value["id"]
            data["options"].append({"name": key, "type": kind, "value": value})
        for required in (o["name"] for o in known.values() if o.get("required")):
            if required not in options:
                raise AssertionError(f"/{name} needs the option {required!r}")
        interaction_id, token = next(self._ids), f"itoken-{next(self._ids)}"
        exchange = Exchange(interaction_id, token, name, user_id, asyncio.get_running_loop().time())
        self.exchanges[token] = exchange
        await self._dispatch("INTERACTION_CREATE", {
            "id": str(interaction_id), "application_id": str(APP_ID), "type": 2, "token": token, "version": 1,
            "data": data, "guild_id": str(GUILD_ID), "channel_id": str(CHANNEL_ID), "channel": _channel(),
            "member": {**_member(user_id), "permissions": "2248473465835073"},
            "app_permissions": "2248473465835073", "locale": "en-US", "guild_locale": "en-US",
            "entitlements": [], "authorizing_integration_owners": {"0": str(GUILD_ID)}, "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        })
        return exchange

    async def push_message(
        self, content: str, *, user_id: int, mention_bot: bool = True, dm: bool = False
    ) -> dict[str, Any]:
        """A user writes in the guild's channel (or, with dm, to the bot directly).

        With mention_bot, `<@bot>` is put in front and the bot is in the message's mentions.
        """
        if mention_bot:
            content = f"<@{APP_ID}> {content}"
        message = _message(
            next(self._ids), DM_CHANNEL_ID if dm else CHANNEL_ID, content, author=_user(user_id, f"user{user_id}"),
            mentions=[{**self.bot_user, "member": _member(APP_ID)}] if mention_bot else [],
        )
        if dm:
            del message["guild_id"]
            message["mentions"] = [self.bot_user] if mention_bot else []
        else:
            message["member"] = _member(user_id)
            del message["member"]["user"]
        await self._dispatch("MESSAGE_CREATE", message)
        return message

    def mark(self) -> int:
        """The current position in `sent`, for `wait_sent(..., since=mark)`."""
        return len(self.sent)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 30.0) -> None:
        """Wait until predicate() is true (it is checked after every request the bot makes)."""
        async with asyncio.timeout(within):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def wait_replies(self, exchange: Exchange, count: int, within: float = 30.0) -> list[SentMessage]:
        """The first `count` messages the bot answered an interaction with."""
        await self.wait_for(lambda: len(exchange.replies) >= count or bool(self.rejected), within)
        assert not self.rejected, self.rejected
        return exchange.replies[:count]

    async def wait_sent(self, count: int, *, since: int = 0, within: float = 30.0) -> list[SentMessage]:
        """The first `count` channel messages sent after `since` (see mark())."""
        def channel_messages() -> list[SentMessage]:
            return [m for m in self.sent[since:] if m.interaction_token is None]

        await self.wait_for(lambda: len(channel_messages()) >= count or bool(self.rejected), within)
        assert not self.rejected, self.rejected
        return channel_messages()[:count]

    # ---- gateway ----------------------------------------------------------------------------------
    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        await asyncio.wait_for(self.ready.wait(), 30)
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"op": 0, "t": event, "s": next(self._event_seq), "d": data}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}, "s": None, "t": None})
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            if op == 1:
                self.heartbeats += 1
                await ws.send_json({"op": 11})
            elif op == 2:
                if payload["d"].get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self.identify = payload["d"]
                await ws.send_json({"op": 0, "t": "READY", "s": next(self._event_seq), "d": {
                    "v": 10, "user": self.bot_user, "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
                    "session_id": "fake-session", "resume_gateway_url": self.gateway_url,
                    "application": {"id": str(APP_ID), "flags": 0},
                }})
                await ws.send_json({"op": 0, "t": "GUILD_CREATE", "s": next(self._event_seq), "d": _guild()})
                self.ready.set()
                await self._notify()
        return ws

    # ---- REST -------------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        route = f"{request.method} /{path}"
        try:
            return await self._route(request, path)
        except _Refused as refused:
            self.rejected.append(Rejection(route, refused.status, refused.message))
            return _json({"message": refused.message, "code": refused.code}, status=refused.status)
        finally:
            await self._notify()

    async def _route(self, request: web.Request, path: str) -> web.StreamResponse:
        method, parts = request.method, path.strip("/").split("/")
        if parts[0] in {"webhooks", "interactions"}:  # authenticated by the token in the URL
            if method == "POST" and len(parts) == 4 and parts[0] == "interactions" and parts[3] == "callback":
                return await self._callback(request, parts[1], parts[2])
            if method == "POST" and len(parts) == 3 and parts[0] == "webhooks" and parts[1] == str(APP_ID):
                return await self._followup(request, parts[2])
            return self._unknown(request, path)
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        if method == "GET" and path == "users/@me":
            return _json(self.bot_user)
        if method == "GET" and path == "oauth2/applications/@me":
            return _json(_application())
        if method == "GET" and path == "gateway/bot":
            return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": {
                "total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1}})
        if method == "PUT" and path == f"applications/{APP_ID}/commands":
            return _json(self._sync(await request.json()))
        if method == "POST" and len(parts) == 3 and parts[0] == "channels" and parts[2] == "typing":
            self.typing.append(int(parts[1]))
            return web.Response(status=204)
        if method == "POST" and len(parts) == 3 and parts[0] == "channels" and parts[2] == "messages":
            payload = await request.json()
            reference = (payload.get("message_reference") or {}).get("message_id")
            sent = self._record(payload, int(parts[1]), reply_to=int(reference) if reference else None)
            return _json(self._message_of(sent))
        return self._unknown(request, path)

    def _unknown(self, request: web.Request, path: str) -> web.Response:
        self.unknown.append(f"{request.method} /{path}")
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _sync(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for command in commands:
            if not _NAME.match(command["name"]) or command["name"] != command["name"].lower():
                raise _Refused(400, 50035, f"Invalid command name {command['name']!r}")
            if not 1 <= len(command.get("description", "")) <= 100:
                raise _Refused(400, 50035, f"/{command['name']}: description must be 1-100 characters")
            required = [bool(o.get("required")) for o in command.get("options", [])]
            if required != sorted(required, reverse=True):
                raise _Refused(400, 50035, f"/{command['name']}: required options must come first")
        self.commands = [
            {**c, "id": str(next(self._ids)), "application_id": str(APP_ID), "version": "1", "type": c.get("type", 1)}
            for c in commands
        ]
        return self.commands

    async def _callback(self, request: web.Request, interaction_id: str, token: str) -> web.Response:
        exchange = self.exchanges.get(token)
        if exchange is None or interaction_id != str(exchange.interaction_id):
            raise _Refused(404, 10062, "Unknown interaction")
        if asyncio.get_running_loop().time() - exchange.created > ACK_WITHIN:
            raise _Refused(404, 10062, "Unknown interaction")  # not acknowledged within 3 seconds
        if exchange.callbacks:
            raise _Refused(400, 40060, "Interaction has already been acknowledged.")
        body = await request.json()
        kind, data = body.get("type"), body.get("data") or {}
        if kind not in {4, 5}:
            raise _Refused(400, 50035, f"Unsupported interaction response type {kind!r} for a slash command")
        exchange.callbacks.append(body)
        message_id = next(self._ids)
        resource: dict[str, Any] = {"type": kind}
        if kind == 4:
            sent = self._record(data, CHANNEL_ID, token=token, flags=data.get("flags", 0))
            exchange.replies.append(sent)
            message_id = sent.message_id
            resource["message"] = self._message_of(sent)
        if request.query.get("with_response") not in {"1", "true", "True"}:
            return web.Response(status=204)
        return _json({
            "interaction": {
                "id": str(exchange.interaction_id), "type": 2, "response_message_id": str(message_id),
                "response_message_loading": kind == 5, "response_message_ephemeral": bool(data.get("flags", 0) & 64),
            },
            "resource": resource,
        })

    async def _followup(self, request: web.Request, token: str) -> web.Response:
        exchange = self.exchanges.get(token)
        if exchange is None or not exchange.callbacks:
            raise _Refused(404, 10015, "Unknown Webhook")  # a followup before the acknowledgement
        payload = await request.json()
        sent = self._record(payload, CHANNEL_ID, token=token, flags=payload.get("flags", 0))
        exchange.replies.append(sent)
        return _json(self._message_of(sent))

    def _record(
        self, payload: dict[str, Any], channel_id: int, *, token: str | None = None, flags: int = 0,
        reply_to: int | None = None,
    ) -> SentMessage:
        problem = check_message(payload)
        if problem is not None:
            raise _Refused(400, 50035, f"Invalid Form Body: {problem}")
        sent = SentMessage(
            next(self._seq), next(self._ids), channel_id, payload.get("content") or "", payload.get("embeds") or [],
            flags=flags or 0, reply_to=reply_to, interaction_token=token,
        )
        self.sent.append(sent)
        return sent

    def _message_of(self, sent: SentMessage) -> dict[str, Any]:
        message = _message(sent.message_id, sent.channel_id, sent.content, author=self.bot_user, embeds=sent.embeds)
        message["flags"] = sent.flags
        if sent.interaction_token is not None:
            message["webhook_id"] = str(APP_ID)
            message["application_id"] = str(APP_ID)
        return message

    async def _attachment(self, request: web.Request) -> web.Response:
        data = self._files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


# ---- payloads -------------------------------------------------------------------------------------
def _json(data: Any, status: int = 200) -> web.Response:
    """JSON as Discord sends it: discord.py parses a body only when the type is exactly application/json."""
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id), "username": name, "global_name": name, "discriminator": "0", "avatar": None,
        "bot": bot, "public_flags": 0,
    }


def _member(user_id: int) -> dict[str, Any]:
    name = BOT_NAME if user_id == APP_ID else f"user{user_id}"
    return {
        "user": _user(user_id, name, bot=user_id == APP_ID), "roles": [], "joined_at": _now(), "deaf": False,
        "mute": False, "flags": 0, "nick": None, "avatar": None, "pending": False,
    }


def _channel() -> dict[str, Any]:
    return {
        "id": str(CHANNEL_ID), "type": 0, "guild_id": str(GUILD_ID), "name": "general", "position": 0,
        "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None, "last_message_id": None,
        "rate_limit_per_user": 0, "flags": 0,
    }


def _guild() -> dict[str, Any]:
    everyone = {
        "id": str(GUILD_ID), "name": "@everyone", "permissions": "2248473465835073", "position": 0,
        "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0,
    }
    return {
        "id": str(GUILD_ID), "name": "Briefbot test guild", "icon": None, "owner_id": "1", "region": None,
        "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
        "explicit_content_filter": 0, "roles": [everyone], "emojis": [], "stickers": [], "features": [],
        "mfa_level": 0, "application_id": None, "system_channel_id": None, "system_channel_flags": 0,
        "rules_channel_id": None, "vanity_url_code": None, "description": None, "banner": None,
        "premium_tier": 0, "preferred_locale": "en-US", "public_updates_channel_id": None, "nsfw_level": 0,
        "premium_progress_bar_enabled": False, "joined_at": _now(), "large": False, "unavailable": False,
        "member_count": 2, "members": [_member(APP_ID)], "channels": [_channel()], "threads": [],
        "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
    }


def _application() -> dict[str, Any]:
    return {
        "id": str(APP_ID), "name": BOT_NAME, "icon": None, "description": "Briefbot (fake)", "bot_public": False,
        "bot_require_code_grant": False, "verify_key": "00" * 32, "owner": _user(1, "owner"), "flags": 0,
        "summary": "", "team": None, "interactions_endpoint_url": None, "redirect_uris": [],
    }


def _message(
    message_id: int, channel_id: int, content: str, *, author: dict[str, Any],
    embeds: list[dict[str, Any]] | None = None, mentions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": str(message_id), "channel_id": str(channel_id), "guild_id": str(GUILD_ID), "type": 0,
        "content": content, "author": author, "embeds": embeds or [], "attachments": [], "mentions": mentions or [],
        "mention_roles": [], "mention_everyone": False, "pinned": False, "tts": False, "timestamp": _now(),
        "edited_timestamp": None, "flags": 0, "components": [],
    }
