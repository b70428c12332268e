"""Draining the outbox: claim due rows, send them within the platform's limits, record the outcome.

Delivery is at-least-once. A row is claimed with a lease, sent, and then marked sent in its own
transaction; if the process dies between the send and the mark, the lease runs out and the row is
sent again. Platforms like Telegram take no idempotency key, so that second copy cannot be avoided,
but it is bounded: only sends in flight at the crash can repeat, and at most `concurrency` sends are
ever in flight. Claimed rows that were not yet sent are simply sent later, never twice.

Outcomes: sent; retry-after (the whole sender pauses, the row waits, no attempt counted); recipient
gone (blocked, deleted, kicked: the subscription becomes inactive); other failures are retried with
exponential backoff (capped) while within `retry_window` of the digest being queued, then recorded as
failed; a permanent rejection fails at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.config import Settings
from bot.digest import Digest
from bot.errors import BriefbotError
from bot.scheduler import Clock, SystemClock
from bot.store import OutboxItem, Store

log = logging.getLogger(__name__)

INLINE_WAIT = 1.5  # a chat busy for longer than this goes back to the outbox instead of blocking a worker
LEASE_MARGIN = 0.2  # share of the lease kept free after a send's deadline, for recording its outcome


class DrainerFailed(BriefbotError):
    """A delivery worker died unexpectedly, so the drainer stopped."""


class SendError(BriefbotError):
    """A message could not be sent."""


class RetryAfter(SendError):
    """The platform asked to wait before sending again (Telegram 429 retry_after)."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds} s")
        self.seconds = float(seconds)


class RecipientGone(SendError):
    """The chat blocked the bot, was deleted, or removed it: do not send there again."""


class TransientSendError(SendError):
    """A failure worth retrying later (network, server error)."""


class PermanentSendError(SendError):
    """A failure that retrying will not fix (a bad request)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes: a platform's chat id (or @channel) and what kind of chat it is."""

    platform: str
    chat_id: str
    chat_kind: str = "private"  # private | group | channel


class Sender(Protocol):
    """Sends one digest as one message; raises a SendError subclass when it cannot."""

    async def send(self, target: Target, message: Digest) -> None:
        """Deliver `message` to `target`."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Platform limits (Telegram defaults: 25 msg/s overall, 1/s per chat, 20/min per group)."""

    global_rate: float = 25.0
    per_chat_rate: float = 1.0
    group_per_minute: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits configured in Settings."""
        return cls(settings.delivery_rate_global, settings.delivery_rate_per_chat, settings.delivery_group_per_minute)


class RateLimiter:
    """Paces sends: evenly spaced global slots, one per second per chat, a per-minute window per group."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._chat_next: dict[str, float] = {}
        self._chat_sent: dict[str, float] = {}  # when each chat's last message actually went out
        self._group_sent: dict[str, collections.deque[float]] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def pause(self, seconds: float) -> None:
        """Stop every send for `seconds` (a retry-after applies to the whole bot)."""
        self._paused_until = max(self._paused_until, self._now() + seconds)
        self._next_slot = max(self._next_slot, self._paused_until)

    async def acquire(self) -> None:
        """Wait for the next global slot (a slot that falls into a pause is exchanged for a later one)."""
        for _ in range(1000):
            async with self._lock:
                now = self._now()
                slot = max(now, self._next_slot, self._paused_until)
                self._next_slot = slot + 1.0 / self.limits.global_rate
            if slot > now:
                await asyncio.sleep(slot - now)
            if self._paused_until <= self._now():
                return

    async def space(self, chat_id: str) -> None:
        """Right before a send: wait until the chat's previous send is 1/per_chat_rate ago, then record it.

        `reserve` books slots ahead; this holds the limit on the moments messages really leave, which a
        busy event loop can shift. No await separates the check from the record, so it is race-free.
        """
        gap = 1.0 / self.limits.per_chat_rate
        while True:
            now = self._now()
            last = self._chat_sent.get(chat_id)
            if last is None or now - last >= gap:
                self._chat_sent[chat_id] = now
                return
            await asyncio.sleep(gap - (now - last))

    def reserve(self, chat_id: str, kind: str, max_wait: float = INLINE_WAIT) -> float:
        """Seconds until `chat_id` may get a message; the slot is booked when that is within max_wait."""
        now = self._now()
        at = max(now, self._chat_next.get(chat_id, 0.0))
        window = self._group_sent.get(chat_id) if kind != "private" else None
        if window is not None:
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) >= self.limits.group_per_minute:
                at = max(at, window[0] + 60.0)
        wait = at - now
        if wait > max_wait:
            return wait
        self._chat_next[chat_id] = at + 1.0 / self.limits.per_chat_rate
        if kind != "private":
            self._group_sent.setdefault(chat_id, collections.deque()).append(at)
        if len(self._chat_next) > 50_000:
            self._forget(now)
        return wait

    def _forget(self, now: float) -> None:
        self._chat_next = {k: v for k, v in self._chat_next.items() if v > now}
        self._chat_sent = {k: v for k, v in self._chat_sent.items() if v > now - 1.0 / self.limits.per_chat_rate}
        self._group_sent = {k: v for k, v in self._group_sent.items() if v and v[-1] > now - 60.0}


@dataclass
class DrainReport:
    """What one drainer did."""

    sent: int = 0
    deferred: int = 0
    retried: int = 0
    failed: int = 0
    gone: int = 0
    errors: list[str] = field(default_factory=list)


class Drainer:
    """Sends the outbox through a Sender with at most `concurrency` messages in flight."""

    def __init__(
        self,
        store: Store,
        sender: Sender,
        *,
        limits: Limits | None = None,
        concurrency: int = 8,
        max_attempts: int | None = None,
        backoff: float = 5.0,
        backoff_max: float = 600.0,
        retry_window: float = 6 * 3600.0,
        lease: float = 60.0,
        clock: Clock | None = None,
        worker_id: str | None = None,
        poll: float = 1.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.store = store
        self.sender = sender
        self.limiter = RateLimiter(limits or Limits())
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.retry_window = retry_window
        self.lease = lease
        self.clock = clock or SystemClock()
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.poll = poll
        self.stop_grace = stop_grace
        self._stopping = asyncio.Event()
        self._held: dict[int, OutboxItem] = {}  # claimed by this drainer and not yet dealt with
        self.report = DrainReport()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()

    @classmethod
    def from_settings(cls, store: Store, sender: Sender, settings: Settings, **kwargs: object) -> Drainer:
        """A drainer with the limits, retries and lease of Settings."""
        return cls(
            store, sender, limits=Limits.from_settings(settings), concurrency=settings.delivery_concurrency,
            max_attempts=settings.delivery_max_attempts, backoff=settings.delivery_backoff_seconds,
            backoff_max=settings.delivery_backoff_max_seconds, retry_window=settings.delivery_retry_window,
            lease=settings.delivery_lease_seconds, **kwargs,  # type: ignore[arg-type]
        )

    def stop(self) -> None:
        """Stop claiming; run() lets in-flight sends finish (up to stop_grace), returns the rest, ends."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether stop() was called."""
        return self._stopping.is_set()

    async def stopped(self) -> None:
        """Return once stop() was called."""
        await self._stopping.wait()

    def wake(self) -> None:
        """Look at the outbox now (a row was just enqueued)."""
        self._wake.set()

    async def run(self, *, until_idle: bool = False, idle_horizon: float = 30.0) -> DrainReport:
        """Drain until stop() (or, with until_idle, until nothing is due within idle_horizon seconds)."""
        # claimed rows wait here: at most 2 x concurrency, sent within seconds, well inside the lease
        queue: asyncio.Queue[OutboxItem] = asyncio.Queue(maxsize=2 * self.concurrency)
        self._room = asyncio.Event()
        workers = {asyncio.create_task(self._work(queue)) for _ in range(self.concurrency)}
        try:
            while not self.stopping:
                room = queue.maxsize - queue.qsize()
                if room < self.concurrency:  # claim in batches, not a row at a time
                    self._room.clear()
                    await self._watch(workers, self._room.wait())
                    continue
                items = await self.store.claim(self.worker_id, room, self.lease, self.clock.now())
                for item in items:
                    self._held[item.id] = item
                    queue.put_nowait(item)
                if items:
                    continue
                await self._watch(workers, queue.join())  # in-flight sends may defer rows due soon
                due = await self.store.next_due()
                wait = self.poll if due is None else (due - self.clock.now()).total_seconds()
                if until_idle and (due is None or wait > idle_horizon):
                    return self.report
                await self._watch(workers, self._sleep(min(max(wait, 0.0), self.poll)))
            await self._finish_in_flight(queue)
            return self.report
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._release()

    async def _finish_in_flight(self, queue: asyncio.Queue[OutboxItem]) -> None:
        """On stop: drop the rows not yet started and give the sends under way stop_grace to end."""
        while not queue.empty():
            queue.get_nowait()
            queue.task_done()
        try:
            await asyncio.wait_for(queue.join(), self.stop_grace)
        except TimeoutError:
            log.warning("sends still in flight after %.0f s; cancelled", self.stop_grace)

    async def _release(self) -> None:
        """Give this drainer's claimed but unsent rows back to the outbox for the next claim."""
        held, self._held = list(self._held.values()), {}
        if not held:
            return
        try:
            returned = await self.store.release(held)
        except Exception:  # the store is down: the rows' leases bring them back instead
            log.exception("could not return %d claimed outbox rows; they come back after their lease", len(held))
            return
        log.info("returned %d of %d claimed outbox rows to the outbox", returned, len(held))

    async def _watch(self, workers: set[asyncio.Task[None]], waiting: Coroutine[Any, Any, Any]) -> None:
        """Await `waiting` (or stop()), raising DrainerFailed as soon as a worker task has died."""
        task = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stop, *workers}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()
            stop.cancel()
        for worker in workers:
            if worker.done():
                cause = None if worker.cancelled() else worker.exception()
                raise DrainerFailed(f"a delivery worker stopped: {cause!r}") from cause
        if task.done() and not task.cancelled():
            task.result()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0.01))
        except TimeoutError:
            pass

    async def _work(self, queue: asyncio.Queue[OutboxItem]) -> None:
        while True:
            item = await queue.get()
            try:
                await self.deliver(item)
            except Exception as exc:  # the store failed: keep the worker; the row's lease brings it back
                self.report.errors.append(f"{type(exc).__name__}: {exc}")
                log.exception("outbox row %d: outcome not recorded; it is retried after its lease", item.id)
            finally:
                queue.task_done()
                self._room.set()
            self._held.pop(item.id, None)  # not reached when cancelled mid-send: released on stop

    async def deliver(self, item: OutboxItem) -> None:
        """Send one claimed row and record the outcome (every write is scoped to the claim)."""
        target = Target(item.platform, item.chat_id, item.chat_kind)
        wait = self.limiter.reserve(item.chat_id, item.chat_kind)
        if wait > INLINE_WAIT:
            self.report.deferred += 1
            await self.store.defer(item, self._at(wait))
            return
        if wait > 0:
            await asyncio.sleep(wait)
        await self.limiter.acquire()
        await self.limiter.space(item.chat_id)
        budget = self._budget(item)
        if budget <= 0:
            # a long pause (retry-after) used up the lease: another instance may own the row soon, so
            # give it back (if it is still ours) rather than send past the lease and risk a second copy
            log.info("outbox row %d: lease nearly over before sending; returned to the outbox", item.id)
            await self.store.defer(item, self.clock.now())
            return
        if item.payload is None:  # not expected: empty periods are never pending
            await self.store.mark_failed(item, "no payload", attempt=False)
            return
        try:
            async with asyncio.timeout(budget):  # a send never outlives its lease
                await self.sender.send(target, Digest.from_dict(item.payload))
        except RetryAfter as exc:
            self.limiter.pause(exc.seconds)
            self.report.deferred += 1
            await self.store.defer(item, self._at(exc.seconds), error=str(exc))
        except RecipientGone as exc:
            self.report.gone += 1
            log.info("chat %s is gone (%s): subscription %d inactive", item.chat_id, exc, item.subscription_id)
            await self.store.mark_gone(item, str(exc))
        except PermanentSendError as exc:
            self.report.failed += 1
            self.report.errors.append(str(exc))
            await self.store.mark_failed(item, str(exc))
        except TimeoutError:
            await self._retry(item, f"TimeoutError: no answer within {budget:.1f} s")
        except Exception as exc:  # transient or unexpected: retried, and recorded
            if not isinstance(exc, SendError):
                log.exception("unexpected error sending outbox row %d", item.id)
            await self._retry(item, f"{type(exc).__name__}: {exc}")
        else:
            self.report.sent += 1
            await self.store.mark_sent(item, self.clock.now())

    def _budget(self, item: OutboxItem) -> float:
        """Seconds a send may take and still leave LEASE_MARGIN of the lease to record the outcome."""
        left = (item.claimed_until - self.clock.now()).total_seconds()
        return left - LEASE_MARGIN * self.lease

    async def _retry(self, item: OutboxItem, error: str) -> None:
        """Retry a transient failure later, unless that would be past the retry window (or attempts)."""
        attempts = item.attempts + 1
        delay = self.backoff_delay(attempts)
        retry_at = self._at(delay)
        out_of_time = retry_at > item.created_at + timedelta(seconds=self.retry_window)
        if out_of_time or (self.max_attempts is not None and attempts >= self.max_attempts):
            self.report.failed += 1
            self.report.errors.append(error)
            log.warning("giving up on outbox row %d after %d attempts: %s", item.id, attempts, error)
            await self.store.mark_failed(item, error)
            return
        self.report.retried += 1
        await self.store.defer(item, retry_at, error=error, attempt=True)

    def backoff_delay(self, attempts: int) -> float:
        """Seconds before retry number `attempts`: doubling from `backoff`, capped at `backoff_max`, ±20 %."""
        base = min(self.backoff * 2.0 ** min(attempts - 1, 40), self.backoff_max)
        return base * random.uniform(0.8, 1.2)

    def _at(self, seconds: float) -> datetime:
        return self.clock.now() + timedelta(seconds=seconds)
