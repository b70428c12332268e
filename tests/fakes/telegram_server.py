"""A fake Telegram Bot API server that the real aiogram bot talks to over HTTP on 127.0.0.1.

It keeps the parts of the Bot API Briefbot uses and checks what Telegram checks (text length in
UTF-16 code units, entity bounds and nesting, callback data size), so that a reply accepted here
is a reply Telegram would accept. Everything the bot does is recorded for the test to inspect.

In process (tests)::

    async with FakeTelegramServer() as server:
        bot = Bot(TOKEN, session=AiohttpSession(api=server.api))
        server.push_message("hello", user_id=1)
        [reply] = await server.wait_sent(1, chat_id=1)

Out of process (restart-safety tests, benchmarks)::

    python -m tests.fakes.telegram_server --port 8081 --rate-limit 30

prints ``READY http://127.0.0.1:8081`` once listening, then serves the Bot API under
``/bot<token>/<method>`` and a test API under ``/_test/`` (see ``FakeTelegramServer._test_routes``):
``GET /_test/sent?since=SEQ&chat_id=ID``, ``GET /_test/wait_sent?count=N&since=SEQ&timeout=S``,
``GET /_test/stats``, ``POST /_test/message``, ``POST /_test/messages``, ``POST /_test/update``,
``POST /_test/fail``, ``POST /_test/block``, ``POST /_test/unblock``, ``POST /_test/reset``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Self

from aiogram.client.telegram import TelegramAPIServer
from aiohttp import ClientSession, ClientTimeout, web

DEFAULT_TOKEN = "123456789:TEST-token_for_the_fake_server"
MAX_TEXT_UTF16 = 4096
MAX_CALLBACK_DATA_BYTES = 64
JSON_FIELDS = {
    "entities", "caption_entities", "reply_markup", "reply_parameters", "link_preview_options",
    "commands", "scope", "allowed_updates",
}
SEND_METHODS = {"sendmessage", "editmessagetext", "editmessagereplymarkup"}  # what the global rate limit counts
_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}\b")


# ---- UTF-16, the unit Telegram counts in --------------------------------------------------------
def utf16_len(text: str) -> int:
    """Length of text in UTF-16 code units, as Telegram counts offsets and lengths."""
    return len(text.encode("utf-16-le")) // 2


def utf16_slice(text: str, offset: int, length: int) -> str:
    """The part of text an entity covers; raises ValueError when it splits a surrogate pair."""
    data = text.encode("utf-16-le")[2 * offset : 2 * (offset + length)]
    return data.decode("utf-16-le", errors="strict")


def _utf16_offset(text: str, index: int) -> int:
    return utf16_len(text[:index])


def check_text(text: str, entities: list[dict[str, Any]]) -> str | None:
    """Telegram's complaint about a message text and its entities, or None when it is valid."""
    size = utf16_len(text)
    if not text.strip():
        return "Bad Request: message text is empty"
    if size > MAX_TEXT_UTF16:
        return "Bad Request: message is too long"
    spans = []
    for entity in entities:
        offset, length = entity.get("offset"), entity.get("length")
        if not isinstance(offset, int) or not isinstance(length, int) or "type" not in entity:
            return "Bad Request: can't parse entities: invalid entity"
        if offset < 0 or length <= 0 or offset + length > size:
            return f"Bad Request: can't parse entities: entity {entity['type']} is out of bounds"
        try:
            utf16_slice(text, offset, length)
        except UnicodeDecodeError:
            return "Bad Request: can't parse entities: entity splits a character"
        spans.append((offset, offset + length))
    for (a_start, a_end), (b_start, b_end) in itertools.combinations(spans, 2):
        disjoint = a_end <= b_start or b_end <= a_start
        nested = (a_start <= b_start and b_end <= a_end) or (b_start <= a_start and a_end <= b_end)
        if not (disjoint or nested):
            return "Bad Request: can't parse entities: entities overlap"
    return None


def _check_markup(markup: dict[str, Any] | None) -> str | None:
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                return "Bad Request: BUTTON_DATA_INVALID"
            if not button.get("text"):
                return "Bad Request: text buttons are unallowed in the inline keyboard"
    return None


# ---- what the server records --------------------------------------------------------------------
@dataclass
class SentMessage:
    """A message the bot sent (its current state: edits update it) in the order it was accepted."""

    seq: int
    chat_id: int
    message_id: int
    text: str
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    reply_to_message_id: int | None
    date: float
    edits: int = 0

    def entity_texts(self, kind: str | None = None) -> list[str]:
        """The texts covered by the entities (of one type, e.g. 'blockquote')."""
        return [
            utf16_slice(self.text, e["offset"], e["length"])
            for e in self.entities
            if kind is None or e["type"] == kind
        ]

    def entity_types(self) -> list[str]:
        """The entity types, in order."""
        return [e["type"] for e in self.entities]

    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row by row, flattened."""
        return [b for row in (self.reply_markup or {}).get("inline_keyboard", []) for b in row]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape served by GET /_test/sent."""
        return asdict(self)


@dataclass(frozen=True)
class FailedRequest:
    """A request the server answered with an error (injected, rate limited or invalid)."""

    method: str
    chat_id: int | None
    error_code: int
    description: str
    at: float


@dataclass
class _FailRule:
    method: str
    chat_id: int | None
    error_code: int
    description: str
    retry_after: int | None
    times: int
    migrate_to_chat_id: int | None = None


@dataclass
class _File:
    file_id: str
    data: bytes
    name: str
    path: str = field(default="")


class _ApiError(Exception):
    def __init__(
        self, code: int, description: str, retry_after: int | None = None, migrate_to: int | None = None
    ) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after
        self.migrate_to = migrate_to


class _RateLimit:
    """A token bucket: `rate` messages per second, bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def take(self) -> int | None:
        """None when a message may go now, else the whole seconds to wait."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return max(1, math.ceil((1 - self.tokens) / self.rate))


# ---- the server ---------------------------------------------------------------------------------
class FakeTelegramServer:
    """A local Bot API server: push updates in, read what the bot sent, inject errors."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        rate_limit: float | None = None,
        bot_username: str = "briefbot_test_bot",
    ) -> None:
        self.host, self.port = host, port
        self.token = token  # None: any well-formed token is accepted
        self.bot_username = bot_username
        self.rate_limit = rate_limit
        self._limiter = _RateLimit(rate_limit) if rate_limit else None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._tick = asyncio.Event()
        self._webhook_task: asyncio.Task[None] | None = None
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> Self:
        """Listen on host:port (port 0 picks a free one, see `.port`)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._test_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._closing.clear()
        return self

    async def stop(self) -> None:
        """Wake every long poll and stop listening."""
        self._closing.set()
        self._notify()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT, for TELEGRAM_API_BASE."""
        return f"http://{self.host}:{self.port}"

    @property
    def api(self) -> TelegramAPIServer:
        """The aiogram server description: `AiohttpSession(api=server.api)`."""
        return TelegramAPIServer.from_base(self.base_url)

    @property
    def bot_id(self) -> int:
        """The bot's user id (the numeric prefix of the token)."""
        prefix = (self.token or DEFAULT_TOKEN).split(":", 1)[0]
        return int(prefix) if prefix.isdigit() else 42

    def reset(self) -> None:
        """Forget everything recorded and queued (the bot's identity and settings stay)."""
        self.sent: list[SentMessage] = []
        self.failures: list[FailedRequest] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (method, params) of every API call
        self.request_counts: Counter[str] = Counter()
        self.callback_answers: list[dict[str, Any]] = []
        self.chat_actions: list[dict[str, Any]] = []
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (scope type, lang) -> list
        self.blocked: dict[int, tuple[int, str]] = {}  # chat_id -> (error_code, description)
        self.webhook: dict[str, Any] = {}
        self.rate_limited = 0
        self._rules: list[_FailRule] = []
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._confirmed = 0  # every update_id below this one was fetched and confirmed
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._files: dict[str, _File] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}  # user messages, for replies
        self._notify()

    # -- driving the bot: updates in ---------------------------------------------------------------
    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (an update_id is assigned when missing); returns it."""
        update = dict(update)
        update.setdefault("update_id", self._next_update_id)
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        self._updates.append(update)
        self._notify()
        if self.webhook.get("url") and (self._webhook_task is None or self._webhook_task.done()):
            self._webhook_task = asyncio.get_running_loop().create_task(self._deliver_webhook())
        return update

    def push_message(
        self,
        text: str,
        *,
        user_id: int,
        chat_id: int | None = None,
        chat_type: str = "private",
        reply_to: SentMessage | dict[str, Any] | None = None,
        entities: list[dict[str, Any]] | None = None,
        language_code: str | None = "en",
    ) -> dict[str, Any]:
        """A user's text message; commands and @mentions get entities as Telegram would add them."""
        message = self._user_message(user_id, chat_id, chat_type, language_code)
        message["text"] = text
        found = _auto_entities(text) if entities is None else entities
        if found:
            message["entities"] = found
        if reply_to is not None:
            message["reply_to_message"] = self._as_message(reply_to)
        self._messages[(message["chat"]["id"], message["message_id"])] = message
        return self.push_update({"message": message})

    def push_document(
        self,
        data: bytes,
        filename: str,
        *,
        user_id: int,
        caption: str | None = None,
        chat_id: int | None = None,
        chat_type: str = "private",
        mime_type: str = "text/plain",
    ) -> dict[str, Any]:
        """A user's document upload (downloadable through getFile), optionally with a caption."""
        message = self._user_message(user_id, chat_id, chat_type, "en")
        file = self.add_file(data, filename)
        message["document"] = {
            "file_id": file.file_id,
            "file_unique_id": f"u{file.file_id}",
            "file_name": filename,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        if caption is not None:
            message["caption"] = caption
            if found := _auto_entities(caption):
                message["caption_entities"] = found
        self._messages[(message["chat"]["id"], message["message_id"])] = message
        return self.push_update({"message": message})

    def push_callback(
        self, message: SentMessage, data: str, *, user_id: int, chat_type: str | None = None
    ) -> str:
        """A user pressing an inline button with `data` under a sent message; returns the query id."""
        query_id = f"cq{self._next_update_id}"
        chat = self._chat(message.chat_id, chat_type)
        self.push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": _user(user_id),
                    "message": self._bot_message(message, chat),
                    "chat_instance": f"ci{message.chat_id}",
                    "data": data,
                }
            }
        )
        return query_id

    def add_file(self, data: bytes, filename: str) -> _File:
        """Store a file for getFile and /file/ downloads."""
        file_id = f"file{len(self._files) + 1}"
        file = _File(file_id, data, filename, f"documents/{file_id}_{filename}")
        self._files[file_id] = file
        return file

    # -- inspecting the bot: messages out ----------------------------------------------------------
    def mark(self) -> int:
        """The seq of the last sent message: pass it as `since` to wait only for newer ones."""
        return len(self.sent)

    def sent_to(self, chat_id: int, since: int = 0) -> list[SentMessage]:
        """Messages sent to one chat after seq `since`."""
        return [m for m in self.sent[since:] if m.chat_id == chat_id]

    async def wait_sent(
        self, count: int = 1, *, chat_id: int | None = None, since: int = 0, timeout: float = 10.0  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """Wait for `count` messages (to chat_id, after seq `since`); returns the first `count`.

        On timeout it fails the test with what was sent instead (hence a timeout parameter).
        """

        def found() -> list[SentMessage]:
            return [m for m in self.sent[since:] if chat_id is None or m.chat_id == chat_id]

        await self._wait(lambda: len(found()) >= count, timeout, lambda: f"{count} messages, got {found()}")
        return found()[:count]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until predicate() holds, re-checking after every request the server handles."""
        await self._wait(predicate, timeout, lambda: "the condition")

    def fail_next(
        self,
        method: str,
        *,
        chat_id: int | None = None,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        """Answer the next `times` calls of `method` (to chat_id, if given) with an error.

        429 carries `parameters.retry_after` (default 1 s); `migrate_to_chat_id` imitates a group
        that became a supergroup (400 with `parameters.migrate_to_chat_id`).
        """
        if error_code == 429 and retry_after is None:
            retry_after = 1
        default = {
            429: f"Too Many Requests: retry after {retry_after}",
            403: "Forbidden: bot was blocked by the user",
            400: "Bad Request: chat not found",
            500: "Internal Server Error",
        }.get(error_code, "Error")
        self._rules.append(
            _FailRule(
                method.lower(), chat_id, error_code, description or default, retry_after, times, migrate_to_chat_id
            )
        )

    def block(self, chat_id: int, *, error_code: int = 403, description: str | None = None) -> None:
        """Every send to chat_id fails from now on (403: blocked by the user; 400: chat not found)."""
        default = "Forbidden: bot was blocked by the user"
        if error_code != 403:
            default = "Bad Request: chat not found"
        self.blocked[chat_id] = (error_code, description or default)

    def unblock(self, chat_id: int) -> None:
        """Sends to chat_id succeed again."""
        self.blocked.pop(chat_id, None)

    @property
    def my_commands(self) -> list[dict[str, Any]]:
        """The commands registered for the default scope and language."""
        return self.commands.get(("default", ""), [])

    @property
    def pending_updates(self) -> int:
        """Updates queued and not yet confirmed by the bot."""
        return len(self._updates)

    # -- internals: waiting ------------------------------------------------------------------------
    def _notify(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    async def _wait(
        self, predicate: Callable[[], bool], timeout: float, what: Callable[[], str]  # noqa: ASYNC109
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self._closing.is_set():
                raise AssertionError(f"timed out after {timeout}s waiting for {what()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), remaining)

    # -- internals: chats, users, messages ---------------------------------------------------------
    def _chat(self, chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        chat = self._chats.get(chat_id)
        if chat is None or (chat_type and chat["type"] != chat_type):
            kind = chat_type or ("private" if chat_id > 0 else "supergroup")
            chat = {"id": chat_id, "type": kind}
            if kind == "private":
                chat["first_name"] = f"User{chat_id}"
            else:
                chat["title"] = f"Group {chat_id}"
            self._chats[chat_id] = chat
        return chat

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _user_message(
        self, user_id: int, chat_id: int | None, chat_type: str, language_code: str | None
    ) -> dict[str, Any]:
        chat_id = user_id if chat_id is None else chat_id
        if chat_type == "private" and chat_id != user_id:
            raise ValueError("a private chat's id is the user's id")
        return {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._chat(chat_id, chat_type),
            "from": _user(user_id, language_code),
        }

    @property
    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Briefbot", "username": self.bot_username}

    def _bot_message(self, sent: SentMessage, chat: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "date": int(sent.date),
            "chat": chat or self._chat(sent.chat_id),
            "from": self._bot_user,
            "text": sent.text,
        }
        if sent.entities:
            message["entities"] = sent.entities
        if sent.reply_markup:
            message["reply_markup"] = sent.reply_markup
        if sent.edits:
            message["edit_date"] = int(time.time())
        if sent.reply_to_message_id and (
            original := self._messages.get((sent.chat_id, sent.reply_to_message_id))
        ):
            message["reply_to_message"] = original
        return message

    def _as_message(self, value: SentMessage | dict[str, Any]) -> dict[str, Any]:
        return self._bot_message(value) if isinstance(value, SentMessage) else value

    # -- internals: the Bot API --------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"].lower()
        params = await _params(request)
        self.requests.append((method, params))
        self.request_counts[method] += 1
        self._notify()
        chat_id = _int_or_none(params.get("chat_id"))
        try:
            if (self.token is not None and token != self.token) or not re.fullmatch(r"\d+:[\w-]+", token):
                raise _ApiError(401, "Unauthorized")
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise _ApiError(404, "Not Found: method not found")
            self._inject_failure(method, chat_id)
            result = await handler(params)
        except _ApiError as exc:
            self.failures.append(FailedRequest(method, chat_id, exc.code, exc.description, time.time()))
            self._notify()
            body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
            if exc.retry_after is not None:
                body["parameters"] = {"retry_after": exc.retry_after}
            if exc.migrate_to is not None:
                body["parameters"] = {"migrate_to_chat_id": exc.migrate_to}
            return web.json_response(body, status=exc.code)
        self._notify()
        return web.json_response({"ok": True, "result": result})

    def _inject_failure(self, method: str, chat_id: int | None) -> None:
        for rule in self._rules:
            if rule.method == method and rule.chat_id in (None, chat_id) and rule.times > 0:
                rule.times -= 1
                self._rules = [r for r in self._rules if r.times > 0]
                raise _ApiError(rule.error_code, rule.description, rule.retry_after, rule.migrate_to_chat_id)
        if method in SEND_METHODS:
            if chat_id in self.blocked:
                raise _ApiError(*self.blocked[chat_id])
            if self._limiter is not None and (wait := self._limiter.take()) is not None:
                self.rate_limited += 1
                raise _ApiError(429, f"Too Many Requests: retry after {wait}", wait)

    async def _m_getme(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self._bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    async def _m_getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook.get("url"):
            raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                 "use deleteWebhook to delete the webhook first")
        offset = _int_or_none(params.get("offset")) or 0
        limit = min(max(_int_or_none(params.get("limit")) or 100, 1), 100)
        timeout = max(_int_or_none(params.get("timeout")) or 0, 0)
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self._confirmed = max(self._confirmed, offset)
        if not self._updates and timeout:
            with contextlib.suppress(AssertionError):
                await self._wait(lambda: bool(self._updates), timeout, lambda: "updates")
        return self._updates[:limit]

    async def _m_sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _require_chat(params)
        text = str(params.get("text", ""))
        entities = params.get("entities") or []
        markup = params.get("reply_markup")
        if problem := check_text(text, entities) or _check_markup(markup):
            raise _ApiError(400, problem)
        reply_to = _int_or_none(params.get("reply_to_message_id")) or _int_or_none(
            (params.get("reply_parameters") or {}).get("message_id")
        )
        sent = SentMessage(
            seq=len(self.sent) + 1,
            chat_id=chat_id,
            message_id=self._next_message_id(chat_id),
            text=text,
            entities=entities,
            reply_markup=markup,
            reply_to_message_id=reply_to,
            date=time.time(),
        )
        self.sent.append(sent)
        return self._bot_message(sent)

    async def _m_editmessagetext(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _require_chat(params)
        message_id = _int_or_none(params.get("message_id"))
        target = next((m for m in self.sent if m.chat_id == chat_id and m.message_id == message_id), None)
        if target is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        text = str(params.get("text", ""))
        entities = params.get("entities") or []
        markup = params.get("reply_markup")
        if problem := check_text(text, entities) or _check_markup(markup):
            raise _ApiError(400, problem)
        if text == target.text and entities == target.entities and markup == target.reply_markup:
            raise _ApiError(400, "Bad Request: message is not modified: specified new message content "
                                 "and reply markup are exactly the same as a current content and reply "
                                 "markup of the message")
        target.text, target.entities, target.reply_markup = text, entities, markup
        target.edits += 1
        return self._bot_message(target)

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _require_chat(params)
        message_id = _int_or_none(params.get("message_id"))
        target = next((m for m in self.sent if m.chat_id == chat_id and m.message_id == message_id), None)
        if target is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup")
        if problem := _check_markup(markup):
            raise _ApiError(400, problem)
        if markup == target.reply_markup:
            raise _ApiError(400, "Bad Request: message is not modified")
        target.reply_markup = markup
        target.edits += 1
        return self._bot_message(target)

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> bool:
        if not params.get("callback_query_id"):
            raise _ApiError(400, "Bad Request: query is too old and response timeout expired "
                                 "or query ID is invalid")
        self.callback_answers.append(params)
        return True

    async def _m_sendchataction(self, params: dict[str, Any]) -> bool:
        _require_chat(params)
        self.chat_actions.append(params)
        return True

    async def _m_setmycommands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command.get("command", "")) or not (
                1 <= len(command.get("description", "")) <= 256
            ):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        scope = (params.get("scope") or {}).get("type", "default")
        self.commands[(scope, params.get("language_code", ""))] = commands
        return True

    async def _m_getmycommands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        scope = (params.get("scope") or {}).get("type", "default")
        return self.commands.get((scope, params.get("language_code", "")), [])

    async def _m_deletemycommands(self, params: dict[str, Any]) -> bool:
        scope = (params.get("scope") or {}).get("type", "default")
        self.commands.pop((scope, params.get("language_code", "")), None)
        return True

    async def _m_setwebhook(self, params: dict[str, Any]) -> bool:
        if not str(params.get("url", "")).startswith(("http://", "https://")):
            raise _ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if _truthy(params.get("drop_pending_updates")):
            self._updates.clear()
        self.webhook = {"url": params["url"], "secret_token": params.get("secret_token")}
        if self._updates:
            self._webhook_task = asyncio.get_running_loop().create_task(self._deliver_webhook())
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> bool:
        if _truthy(params.get("drop_pending_updates")):
            self._updates.clear()
        self.webhook = {}
        return True

    async def _m_getwebhookinfo(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    async def _m_getfile(self, params: dict[str, Any]) -> dict[str, Any]:
        file = self._files.get(str(params.get("file_id", "")))
        if file is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if len(file.data) > 20 * 1024 * 1024:
            raise _ApiError(400, "Bad Request: file is too big")
        return {"file_id": file.file_id, "file_unique_id": f"u{file.file_id}", "file_size": len(file.data),
                "file_path": file.path}

    async def _m_close(self, params: dict[str, Any]) -> bool:
        return True

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        for file in self._files.values():
            if file.path == path:
                return web.Response(body=file.data, content_type="application/octet-stream")
        raise web.HTTPNotFound()

    async def _deliver_webhook(self) -> None:
        """POST queued updates, in order, to the webhook URL with its secret token header."""
        timeout = ClientTimeout(total=30)
        async with ClientSession(timeout=timeout) as session:
            while self._updates and self.webhook.get("url"):
                update = self._updates[0]
                headers = {}
                if secret := self.webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = secret
                try:
                    async with session.post(self.webhook["url"], json=update, headers=headers) as resp:
                        ok = resp.status == 200
                except OSError:
                    ok = False
                if ok:
                    self._updates.remove(update)
                    self._notify()
                else:
                    await asyncio.sleep(0.2)

    # -- the test API over HTTP, for use from another process --------------------------------------
    def _test_routes(self, app: web.Application) -> None:
        """GET /_test/sent?since=&chat_id=, GET /_test/wait_sent?count=&since=&chat_id=&timeout=,
        GET /_test/stats, POST /_test/message {text,user_id,chat_id?,chat_type?}, POST /_test/messages
        [{...}, ...] (many at once), POST /_test/update,
        POST /_test/fail {method,chat_id?,error_code,description?,retry_after?,times?},
        POST /_test/block {chat_id,error_code?}, POST /_test/unblock {chat_id}, POST /_test/reset."""

        def messages(request: web.Request) -> tuple[list[SentMessage], int]:
            since = int(request.query.get("since", 0))
            chat = _int_or_none(request.query.get("chat_id"))
            return [m for m in self.sent[since:] if chat is None or m.chat_id == chat], len(self.sent)

        async def sent(request: web.Request) -> web.Response:
            found, last = messages(request)
            return web.json_response({"messages": [m.to_dict() for m in found], "last_seq": last})

        async def wait_sent(request: web.Request) -> web.Response:
            count = int(request.query.get("count", 1))
            timeout = float(request.query.get("timeout", 10))
            with contextlib.suppress(AssertionError):
                await self._wait(lambda: len(messages(request)[0]) >= count, timeout, lambda: "")
            found, last = messages(request)
            return web.json_response({"messages": [m.to_dict() for m in found], "last_seq": last})

        async def stats(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "sent": len(self.sent),
                    "rate_limited": self.rate_limited,
                    "failures": len(self.failures),
                    "pending_updates": len(self._updates),
                    "requests": dict(self.request_counts),
                    "rate_limit": self.rate_limit,
                }
            )

        async def message(request: web.Request) -> web.Response:
            body = await request.json()
            text = body.pop("text")
            return web.json_response(self.push_message(text, **body))

        async def many(request: web.Request) -> web.Response:
            bodies = await request.json()
            return web.json_response([self.push_message(body.pop("text"), **body) for body in bodies])

        async def update(request: web.Request) -> web.Response:
            return web.json_response(self.push_update(await request.json()))

        async def fail(request: web.Request) -> web.Response:
            body = await request.json()
            self.fail_next(body.pop("method"), **body)
            return web.json_response({"ok": True})

        async def block(request: web.Request) -> web.Response:
            body = await request.json()
            self.block(int(body.pop("chat_id")), **body)
            return web.json_response({"ok": True})

        async def unblock(request: web.Request) -> web.Response:
            self.unblock(int((await request.json())["chat_id"]))
            return web.json_response({"ok": True})

        async def reset(request: web.Request) -> web.Response:
            self.reset()
            return web.json_response({"ok": True})

        app.router.add_get("/_test/sent", sent)
        app.router.add_get("/_test/wait_sent", wait_sent)
        app.router.add_get("/_test/stats", stats)
        app.router.add_post("/_test/message", message)
        app.router.add_post("/_test/messages", many)
        app.router.add_post("/_test/update", update)
        app.router.add_post("/_test/fail", fail)
        app.router.add_post("/_test/block", block)
        app.router.add_post("/_test/unblock", unblock)
        app.router.add_post("/_test/reset", reset)


# ---- helpers ------------------------------------------------------------------------------------
def _user(user_id: int, language_code: str | None = "en") -> dict[str, Any]:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
    if language_code:
        user["language_code"] = language_code
    return user


def _auto_entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram adds to a user's text: a leading /command and @mentions."""
    entities = []
    if match := _COMMAND.match(text):
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(match.group())})
    for match in _MENTION.finditer(text):
        entities.append(
            {"type": "mention", "offset": _utf16_offset(text, match.start()),
             "length": utf16_len(match.group())}
        )
    return sorted(entities, key=lambda e: e["offset"])


async def _params(request: web.Request) -> dict[str, Any]:
    """Bot API parameters from the query string, a form (urlencoded or multipart) or a JSON body."""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST":
        if request.content_type == "application/json":
            params.update(await request.json())
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    for key in JSON_FIELDS & params.keys():
        if isinstance(params[key], str):
            try:
                params[key] = json.loads(params[key])
            except json.JSONDecodeError:
                raise web.HTTPBadRequest(text=f"can't parse {key} JSON object") from None
    return params


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _truthy(value: Any) -> bool:
    return value in (True, "true", "True", "1", 1)


def _require_chat(params: dict[str, Any]) -> int:
    chat_id = _int_or_none(params.get("chat_id"))
    if chat_id is None:
        raise _ApiError(400, "Bad Request: chat not found")
    return chat_id


# ---- standalone -------------------------------------------------------------------------------
async def _serve(args: argparse.Namespace) -> None:
    server = FakeTelegramServer(host=args.host, port=args.port, token=args.token, rate_limit=args.rate_limit)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"READY {server.base_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.fakes.telegram_server --port N --rate-limit N`: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on READY)")
    parser.add_argument("--rate-limit", type=float, default=None,
                        help="global messages per second; above it sendMessage answers 429 retry_after")
    parser.add_argument("--token", default=None, help="accept only this bot token (default: any)")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
