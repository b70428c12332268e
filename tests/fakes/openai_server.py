"""A fake OpenAI-compatible chat completions server on 127.0.0.1, for the real `openai` client.

It runs its own event loop in a thread, so synchronous code (Briefing.ask) can call it. Queue what
the next requests get with `reply(content)`, `fail(status)` or `stall(seconds)`; every request body
and its Authorization header are recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web


@dataclass
class Behaviour:
    """What one request gets."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0


@dataclass
class FakeOpenAIServer:
    """Serves POST /v1/chat/completions and GET /v1/models."""

    api_key: str = "sk-test-key"
    requests: list[dict[str, Any]] = field(default_factory=list)
    _queue: list[Behaviour] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        """The base URL to give the openai client."""
        return f"http://127.0.0.1:{self.port}/v1"

    def reply(self, content: str) -> None:
        """The next request gets a completion with this content."""
        self._queue.append(Behaviour(content=content))

    def reply_json(self, data: object) -> None:
        """The next request gets this object, as JSON text, for content."""
        self.reply(json.dumps(data, ensure_ascii=False))

    def fail(self, status: int, times: int = 2) -> None:
        """The next requests (a call and the client's retry) get an error status."""
        self._queue.extend(Behaviour(status=status) for _ in range(times))

    def stall(self, seconds: float, times: int = 2) -> None:
        """The next requests are answered only after a delay."""
        self._queue.extend(Behaviour(content="{}", delay=seconds) for _ in range(times))

    async def _completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("Authorization", "")})
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response(
                {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, status=401
            )
        behaviour = self._queue.pop(0) if self._queue else Behaviour(content='{"answered": false}')
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if behaviour.status != 200:
            return web.json_response({"error": {"message": "server error", "type": "server_error"}},
                                     status=behaviour.status)
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": behaviour.content},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def __enter__(self) -> Self:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._completions)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
