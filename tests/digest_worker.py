"""A digest worker process for the restart test and the fan-out benchmark.

`python -m tests.digest_worker --db URL --api http://127.0.0.1:PORT --subscribers N` makes N daily
subscriptions (once), lets the scheduler catch up on the period due at `--now` (a unique outbox row
per subscriber, so a restarted worker enqueues nothing twice), then drains the outbox through the
real aiogram Bot and `TelegramDigestSender` to the given Bot API server, and exits when it is empty.
It prints `ENQUEUED n` and `DONE {json report}` on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, select

from bot.adapters.telegram_sender import TelegramDigestSender
from bot.delivery import Drainer, Limits
from bot.digest import Digester
from bot.scheduler import DigestScheduler
from bot.store import Store, SubscriptionRow
from tests.digest_support import FakeClock, document, fake_index

TOKEN = "123456789:TEST-token_for_the_fake_server"
CREATED = datetime(2026, 3, 1, tzinfo=UTC)
ARTICLE = (
    "The city council met on Monday to discuss the new budget for public schools.\n\n"
    "After a long debate the council approved two million euros for school buildings. "
    "Teachers' unions welcomed the decision but asked for more staff.\n\n"
    "The mayor said the first renovations would start in the summer holidays."
)


async def add_subscribers(store: Store, count: int) -> None:
    """Daily 08:00 UTC subscriptions for chats 1..count, unless they exist already."""
    async with store.transaction() as s:
        existing = (await s.execute(select(func.count()).select_from(SubscriptionRow))).scalar_one()
        if existing:
            return
        rows = [
            dict(platform="telegram", chat_id=str(i), chat_kind="private", schedule_kind="daily",
                 schedule_expr="08:00", timezone="UTC", active=True, created_at=CREATED, updated_at=CREATED)
            for i in range(1, count + 1)
        ]
        await s.execute(SubscriptionRow.__table__.insert(), rows)


async def main(args: argparse.Namespace) -> None:
    store = await Store.open(args.db)
    try:
        await add_subscribers(store, args.subscribers)
        index = fake_index(document("council", ARTICLE, "City council"))
        clock = FakeClock(datetime.fromisoformat(args.now))
        scheduler = DigestScheduler(store, Digester(store, lambda: index), clock=clock, grace=timedelta(hours=1))
        enqueued = await scheduler.catch_up()
        print(f"ENQUEUED {enqueued}", flush=True)
        session = AiohttpSession(api=TelegramAPIServer.from_base(args.api))
        async with Bot(TOKEN, session=session) as bot:
            limits = Limits(global_rate=args.rate, per_chat_rate=1.0, group_per_minute=20)
            drainer = Drainer(
                store, TelegramDigestSender(bot), limits=limits, concurrency=args.concurrency,
                lease=args.lease, backoff=0.5, poll=0.2,
            )
            began = time.monotonic()
            report = await drainer.run(until_idle=True, idle_horizon=args.lease + 5)
            elapsed = time.monotonic() - began
        counts = await store.outbox_counts()
        print("DONE " + json.dumps({"sent": report.sent, "deferred": report.deferred, "failed": report.failed,
                                    "seconds": round(elapsed, 3), "outbox": counts}), flush=True)
    finally:
        await store.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", required=True)
    parser.add_argument("--api", required=True, help="Bot API base URL, e.g. http://127.0.0.1:8081")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--now", default="2026-03-02T08:00:30+00:00", help="the scheduler's clock")
    parser.add_argument("--rate", type=float, default=25.0, help="global messages per second")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lease", type=float, default=3.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
