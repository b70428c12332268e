"""Digests as one service for an adapter: subscriptions, their schedules and delivery, wired together.

`DigestService.running(settings, index, sender)` opens the store (running migrations), rebuilds the
scheduler's jobs from the subscriptions table, sends digests missed while the bot was down, and keeps
an outbox drainer running until the `async with` block ends. Adapters call its few methods and render
the dataclasses it returns; they never touch the store or the scheduler themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import Settings
from bot.delivery import Drainer, Sender
from bot.digest import Digester
from bot.index import Index
from bot.scheduler import Clock, DigestScheduler, Schedule, SystemClock, manual_period, parse_schedule
from bot.store import HistoryEntry, Store, Subscription

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """What /subscription shows: the subscription, its next digest and the last one."""

    subscription: Subscription
    schedule: Schedule
    next_digest: datetime | None
    last: HistoryEntry | None


class DigestService:
    """Subscribe, unsubscribe, send one now, describe: for the chats of one platform."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        digester: Digester,
        scheduler: DigestScheduler,
        drainer: Drainer,
        *,
        platform: str = "telegram",
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.digester = digester
        self.scheduler = scheduler
        self.drainer = drainer
        self.platform = platform
        self.clock = clock or SystemClock()
        self._drain_task: asyncio.Task[None] | None = None

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        settings: Settings,
        index: Callable[[], Index],
        sender: Sender,
        *,
        platform: str = "telegram",
        clock: Clock | None = None,
        drain: bool = True,
    ) -> AsyncIterator[DigestService]:
        """Open the store, start the scheduler (catching up) and the drainer; stop them on exit."""
        store = await Store.open(settings.sqlalchemy_url)
        try:
            digester = Digester(store, index, settings.digest_quotes_per_source, settings.digest_max_chars)
            scheduler = DigestScheduler(
                store,
                digester,
                clock=clock,
                grace=timedelta(hours=settings.digest_grace_hours),
                reconcile_every=timedelta(minutes=settings.digest_reconcile_minutes),
            )
            drainer = Drainer.from_settings(store, sender, settings)
            service = cls(settings, store, digester, scheduler, drainer, platform=platform, clock=clock)
            if drain:
                service._drain_task = asyncio.create_task(service._drain_forever())
            try:
                await scheduler.start()
                yield service
            finally:
                scheduler.shutdown()
                await service.stop()
        finally:
            await store.close()

    async def stop(self) -> None:
        """Stop delivery: no new claims, in-flight sends finish (bounded), unsent claimed rows go back."""
        self.drainer.stop()
        task, self._drain_task = self._drain_task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(task, self.drainer.stop_grace + 5.0)  # cancelled when it overruns
        except TimeoutError:
            log.warning("the digest drainer did not stop in time; cancelled")

    async def _drain_forever(self) -> None:
        while not self.drainer.stopping:
            try:
                await self.drainer.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the digest drainer stopped; restarting it in 5 s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.drainer.stopped(), 5)

    async def subscribe(
        self, chat_id: str, words: list[str], *, chat_kind: str = "private", created_by: str | None = None
    ) -> SubscriptionInfo:
        """Subscribe a chat (or change its schedule); raises InputError for a bad time or zone."""
        schedule = parse_schedule(words, self.settings.default_digest_time, self.settings.default_timezone)
        sub = await self.store.subscribe(
            self.platform, chat_id, schedule_kind=schedule.kind, schedule_expr=schedule.expr,
            timezone=schedule.timezone, chat_kind=chat_kind, created_by=created_by, now=self.clock.now(),
        )
        self.scheduler.add(sub)
        info = await self.info(chat_id)
        assert info is not None
        return info

    async def unsubscribe(self, chat_id: str) -> bool:
        """Stop a chat's digests; False when it had none."""
        sub = await self.store.subscription(self.platform, chat_id)
        if sub is None or not await self.store.unsubscribe(self.platform, chat_id, self.clock.now()):
            return False
        self.scheduler.remove(sub.id)
        return True

    async def info(self, chat_id: str) -> SubscriptionInfo | None:
        """The chat's active subscription, its next and last digest; None when not subscribed."""
        sub = await self.store.subscription(self.platform, chat_id)
        if sub is None or not sub.active:
            return None
        schedule = Schedule.of(sub)
        history = await self.store.history(sub.id, limit=1)
        return SubscriptionInfo(sub, schedule, schedule.next_after(self.clock.now()), history[0] if history else None)

    async def digest_now(self, chat_id: str, *, chat_kind: str = "private") -> bool:
        """Queue a digest for the chat now (subscribed or not); it goes out through the outbox."""
        sub = await self.store.ensure_chat(
            self.platform, chat_id, chat_kind=chat_kind, timezone=self.settings.default_timezone
        )
        now = self.clock.now()
        row = await self.digester.enqueue(sub, manual_period(now), force=True, now=now)
        self.drainer.wake()
        return row is not None

    async def count(self) -> int:
        """Active subscriptions (for /stats)."""
        return await self.store.count_active()
