"""Load benchmark of the Telegram bot: N users asking at once through the fake Bot API server.

The real aiogram Dispatcher long-polls the fake server (tests/fakes/telegram_server.py) over HTTP on
127.0.0.1 and answers from the seed index with the real embedder, exactly as in the tests. Each
round, N users (default 200) each send one question at the same moment; for every user we measure
the time from the update being queued on the server to the reply being accepted by the server, and
for the round the replies per second (N / time from the first update to the last reply).

    .venv/bin/python bench/telegram_load.py [--users 200] [--rounds 3] [--rate-limit N] [--external]

With --external the fake server runs in its own process (as Telegram would), so its CPU time is
not the bot's; by default it shares the bot's event loop.

Figures are medians over rounds after one warm-up round; the machine is shared, so compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiogram import Bot  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402

from bot.adapters.telegram import build_dispatcher  # noqa: E402
from bot.adapters.telegram_run import serve_polling  # noqa: E402
from bot.briefing import Briefing  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.sources import default_manifest  # noqa: E402
from tests.fakes.telegram_server import DEFAULT_TOKEN, FakeTelegramServer  # noqa: E402


def pct(values: list[float], p: int) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def questions() -> list[str]:
    """The extra question set's questions (answerable and not)."""
    lines = (ROOT / "bench" / "qa_more.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


async def one_round(server: FakeTelegramServer, users: int, pool: list[str], base_id: int) -> dict[str, float]:
    """N users ask at once; returns latency percentiles (ms) and replies per second."""
    mark = server.mark()
    pushed: dict[int, float] = {}
    for n in range(users):
        user = base_id + n
        server.push_message(pool[n % len(pool)], user_id=user)
        pushed[user] = time.time()
    replies = await server.wait_sent(users, since=mark, timeout=300)
    first_reply: dict[int, float] = {}
    for reply in replies:
        first_reply.setdefault(reply.chat_id, reply.date)
    return _figures(pushed, first_reply, users)


class RemoteServer:
    """The fake server in its own process (`python -m tests.fakes.telegram_server`), driven over HTTP."""

    def __init__(self, rate_limit: float | None) -> None:
        self.rate_limit = rate_limit
        self.request_counts: dict[str, int] = {}

    async def __aenter__(self) -> RemoteServer:
        args = ["--rate-limit", str(self.rate_limit)] if self.rate_limit else []
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fakes.telegram_server", "--port", "0", *args,
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.base_url = (await self.process.stdout.readline()).decode().split()[1]
        self.api = TelegramAPIServer.from_base(self.base_url)
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        self.process.terminate()
        await self.process.wait()

    async def mark(self) -> int:
        async with self.http.get(f"{self.base_url}/_test/sent", params={"since": 10**9}) as response:
            return int((await response.json())["last_seq"])

    async def push_messages(self, messages: list[dict[str, object]]) -> None:
        async with self.http.post(f"{self.base_url}/_test/messages", json=messages) as response:
            response.raise_for_status()

    async def wait_sent(self, count: int, since: int) -> list[tuple[int, float]]:
        params = {"count": count, "since": since, "timeout": 300}
        async with self.http.get(f"{self.base_url}/_test/wait_sent", params=params) as response:
            return [(m["chat_id"], m["date"]) for m in (await response.json())["messages"]]

    async def started(self) -> None:
        for _ in range(200):
            async with self.http.get(f"{self.base_url}/_test/stats") as response:
                if (await response.json())["requests"].get("getupdates"):
                    return
            await asyncio.sleep(0.05)


async def one_remote_round(server: RemoteServer, users: int, pool: list[str], base_id: int) -> dict[str, float]:
    """one_round, with the server in another process."""
    mark = await server.mark()
    at = time.time()
    await server.push_messages([{"text": pool[n % len(pool)], "user_id": base_id + n} for n in range(users)])
    pushed = dict.fromkeys(range(base_id, base_id + users), at)
    replies = await server.wait_sent(users, since=mark)
    first_reply: dict[int, float] = {}
    for chat_id, date in replies:
        first_reply.setdefault(chat_id, date)
    return _figures(pushed, first_reply, users)


def _figures(pushed: dict[int, float], first_reply: dict[int, float], users: int) -> dict[str, float]:
    latencies = [(first_reply[user] - at) * 1000 for user, at in pushed.items()]
    span = max(first_reply.values()) - min(pushed.values())
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": pct(latencies, 95),
        "max_ms": max(latencies),
        "replies_per_s": users / span,
    }


async def main(users: int, rounds: int, rate_limit: float | None, external: bool) -> None:
    logging.basicConfig(level=logging.WARNING)
    data = Path(tempfile.mkdtemp(prefix="briefbot-bench-"))
    briefing = Briefing(Settings(data_dir=data, sources=default_manifest()))
    started = time.perf_counter()
    briefing.reload()
    briefing.ask("warm-up")
    print(f"index and model ready in {time.perf_counter() - started:.1f} s ({len(briefing.index)} sentences)")
    pool = questions()
    server: FakeTelegramServer | RemoteServer
    async with RemoteServer(rate_limit) if external else FakeTelegramServer(rate_limit=rate_limit) as server:
        bot = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=server.api))
        dp = build_dispatcher(briefing)
        polling = asyncio.create_task(serve_polling(dp, bot, handle_signals=False, polling_timeout=10))
        try:
            if isinstance(server, RemoteServer):
                await server.started()
                run = functools.partial(one_remote_round, server)
            else:
                local = server
                await local.wait_for(lambda: local.request_counts["getupdates"] > 0)
                run = functools.partial(one_round, local)
            await run(users, pool, 1_000_000)  # warm-up
            results = [await run(users, pool, 2_000_000 + r * users) for r in range(rounds)]
        finally:
            await dp.stop_polling()
            await polling
            await bot.session.close()
    where = "in its own process" if external else "in the bot's process"
    print(f"{users} concurrent users, {rounds} rounds (+1 warm-up), {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, fake server {where}, rate limit {rate_limit or 'none'}")
    for number, result in enumerate(results, 1):
        print(f"  round {number}: p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
              f"max {result['max_ms']:.0f} ms, {result['replies_per_s']:.0f} replies/s")
    print(f"median: p50 {statistics.median(r['p50_ms'] for r in results):.0f} ms, "
          f"p95 {statistics.median(r['p95_ms'] for r in results):.0f} ms, "
          f"{statistics.median(r['replies_per_s'] for r in results):.0f} replies/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate-limit", type=float, default=None, help="the fake server's messages/s cap")
    parser.add_argument("--external", action="store_true", help="run the fake server in its own process")
    args = parser.parse_args()
    asyncio.run(main(args.users, args.rounds, args.rate_limit, args.external))
