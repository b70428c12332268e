"""Draining the outbox: rate limits, retry-after, gone recipients, backoff, and two senders at once."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.delivery import (
    Drainer,
    DrainerFailed,
    Limits,
    PermanentSendError,
    RateLimiter,
    RecipientGone,
    RetryAfter,
    Target,
    TransientSendError,
)
from bot.digest import Digest
from bot.store import FAILED, GONE, PENDING, SENT, OutboxItem, Store
from bot.subscriptions import DigestService
from tests.digest_support import (
    FakeClock,
    RecordingSender,
    document,
    fake_index,
    open_store,
)

PAYLOAD: dict[str, Any] = {
    "sections": [
        {"source": "news", "title": "News", "summary": "It rained.",
         "quotes": [{"text": "It rained.", "paragraph": 1, "start": 0, "end": 10}]}
    ]
}
FAST = Limits(global_rate=1000.0, per_chat_rate=1000.0, group_per_minute=1000)


@pytest.fixture
async def postgres_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    request.applymarker(pytest.mark.postgres)
    async with open_store("postgresql", tmp_path, request.getfixturevalue("pg_url")) as opened:
        yield opened


async def enqueue(store: Store, chats: list[str], kind: str = "private", period: str = "p") -> list[int]:
    """One digest per chat (chats may repeat: several periods for one chat)."""
    ids = []
    for n, chat in enumerate(chats):
        sub = await store.subscribe(
            "telegram", chat, chat_kind=kind, schedule_kind="daily", schedule_expr="08:00", timezone="UTC"
        )

        async def build(seen: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
            return PAYLOAD, {"news": "h"}

        row = await store.create_digest(sub.id, f"{period}{n}", build)
        assert row is not None
        ids.append(row)
    return ids


async def test_every_digest_is_sent_once_at_the_global_rate(store: Store) -> None:
    await enqueue(store, [str(i) for i in range(30)])
    sender = RecordingSender()
    drainer = Drainer(store, sender, limits=Limits(global_rate=100.0), concurrency=4)
    began = time.monotonic()
    report = await drainer.run(until_idle=True)
    elapsed = time.monotonic() - began
    assert sorted(sender.chats(), key=int) == [str(i) for i in range(30)]
    assert report.sent == 30 and await store.outbox_counts() == {SENT: 30}
    assert elapsed >= 29 / 100.0  # evenly spaced slots: never faster than the limit
    gaps = [b - a for (_, _, a), (_, _, b) in zip(sender.sent, sender.sent[1:], strict=False)]
    assert min(gaps) > 1 / 100.0 * 0.5


async def test_retry_after_pauses_the_sender_and_the_row_is_sent_later(store: Store) -> None:
    await enqueue(store, ["1", "2", "3"])
    sender = RecordingSender(failures={"1": [RetryAfter(1)]})
    drainer = Drainer(store, sender, limits=FAST, concurrency=1)
    report = await drainer.run(until_idle=True)
    assert Counter(sender.chats()) == {"1": 1, "2": 1, "3": 1}
    assert report.deferred == 1 and report.sent == 3
    first_try = sender.attempts[0][1]
    # nothing at all went out during the retry-after second
    assert all(at - first_try >= 0.95 for _, _, at in sender.sent)
    assert await store.outbox_counts() == {SENT: 3}
    (entry,) = await store.history((await store.subscription("telegram", "1")).id)  # type: ignore[union-attr]
    assert entry.attempts == 0  # waiting out a retry-after is not a failed attempt


async def test_a_chat_that_blocked_the_bot_becomes_inactive(store: Store) -> None:
    await enqueue(store, ["1", "2"])
    sender = RecordingSender(failures={"1": [RecipientGone("Forbidden: bot was blocked by the user")]})
    report = await Drainer(store, sender, limits=FAST).run(until_idle=True)
    assert sender.chats() == ["2"] and report.gone == 1
    gone = await store.subscription("telegram", "1")
    assert gone is not None and not gone.active
    assert [s.chat_id for s in await store.active_subscriptions()] == ["2"]
    assert await store.outbox_counts() == {SENT: 1, GONE: 1}


async def test_transient_failures_are_retried_with_growing_backoff(store: Store) -> None:
    await enqueue(store, ["1"])
    sender = RecordingSender(failures={"1": [TransientSendError("502"), TransientSendError("502")]})
    drainer = Drainer(store, sender, limits=FAST, backoff=0.2, max_attempts=5, poll=0.05)
    report = await drainer.run(until_idle=True)
    assert sender.chats() == ["1"] and report.retried == 2 and report.sent == 1
    times = [at for _, at in sender.attempts]
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert first_gap >= 0.2 * 0.8 and second_gap >= 0.4 * 0.8 and second_gap > first_gap
    (entry,) = await store.history((await store.subscription("telegram", "1")).id)  # type: ignore[union-attr]
    assert (entry.status, entry.attempts) == (SENT, 2)


async def test_failures_are_recorded_after_the_last_attempt(store: Store) -> None:
    await enqueue(store, ["1", "2"])
    sender = RecordingSender(
        failures={
            "1": [TransientSendError(f"timeout {n}") for n in range(10)],
            "2": [PermanentSendError("Bad Request: message text is empty")],
        }
    )
    report = await Drainer(store, sender, limits=FAST, backoff=0.02, max_attempts=3, poll=0.02).run(
        until_idle=True
    )
    assert sender.sent == [] and report.failed == 2
    assert len([chat for chat, _ in sender.attempts if chat == "1"]) == 3
    assert len([chat for chat, _ in sender.attempts if chat == "2"]) == 1  # not retried
    one = await store.history((await store.subscription("telegram", "1")).id)  # type: ignore[union-attr]
    assert (one[0].status, one[0].attempts, one[0].last_error) == (FAILED, 3, "TransientSendError: timeout 2")
    assert await store.outbox_counts() == {FAILED: 2}


async def test_one_chat_gets_at_most_its_per_chat_rate(store: Store) -> None:
    await enqueue(store, ["7", "7", "7", "8"])
    sender = RecordingSender()
    limits = Limits(global_rate=1000.0, per_chat_rate=5.0, group_per_minute=1000)
    await Drainer(store, sender, limits=limits, concurrency=4).run(until_idle=True)
    seven = [at for target, _, at in sender.sent if target.chat_id == "7"]
    assert len(seven) == 3 and len(sender.sent) == 4
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(seven))


def test_group_limit_per_minute_defers_rather_than_blocking() -> None:
    limiter = RateLimiter(Limits(global_rate=1000.0, per_chat_rate=1000.0, group_per_minute=3))
    waits = [limiter.reserve("-100", "group") for _ in range(3)]
    assert max(waits) < 0.01
    assert limiter.reserve("-100", "group") > 59  # the fourth waits for the window, off the worker
    assert limiter.reserve("42", "private") < 0.01  # other chats are not held up


async def test_two_senders_on_postgresql_never_send_a_row_twice(postgres_store: Store) -> None:
    store = postgres_store
    await enqueue(store, [str(i) for i in range(300)])
    sender_a, sender_b = RecordingSender(delay=0.002), RecordingSender(delay=0.002)
    a = Drainer(store, sender_a, limits=Limits(global_rate=400.0), concurrency=4, worker_id="a")
    b = Drainer(store, sender_b, limits=Limits(global_rate=400.0), concurrency=4, worker_id="b")
    await asyncio.gather(a.run(until_idle=True), b.run(until_idle=True))
    chats = sender_a.chats() + sender_b.chats()
    assert len(chats) == len(set(chats)) == 300
    assert sender_a.sent and sender_b.sent  # both took a share of the work
    assert await store.outbox_counts() == {SENT: 300}


async def test_rows_whose_lease_ran_out_while_paused_are_not_sent_by_the_old_claim(store: Store) -> None:
    await enqueue(store, ["1", "2", "3"])
    sender = RecordingSender(failures={"1": [RetryAfter(1)]})
    drainer = Drainer(store, sender, limits=FAST, concurrency=1, lease=0.5, poll=0.05)
    await drainer.run(until_idle=True)
    assert Counter(sender.chats()) == {"1": 1, "2": 1, "3": 1}  # claimed again after the lease, sent once
    assert await store.outbox_counts() == {SENT: 3}


class HangingSender(RecordingSender):
    """A RecordingSender whose sends wait for `release` (then fail with `then`, if set)."""

    def __init__(self, then: BaseException | None = None) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.attempted = asyncio.Event()
        self.then = then

    async def wait_attempts(self, n: int) -> None:
        """Return once `n` sends have started."""
        while len(self.attempts) < n:
            self.attempted.clear()
            await self.attempted.wait()

    async def send(self, target: Target, message: Digest) -> None:
        """Record the attempt, hang until released, then fail or record the message."""
        self.attempts.append((target.chat_id, asyncio.get_running_loop().time()))
        self.attempted.set()
        await self.release.wait()
        if self.then is not None:
            raise self.then
        self.sent.append((target, message, asyncio.get_running_loop().time()))


async def test_a_worker_whose_lease_ran_out_cannot_undo_the_new_owners_result(store: Store) -> None:
    await enqueue(store, ["1", "2", "3"])
    slow = HangingSender(then=TransientSendError("502 after a long stall"))
    a = Drainer(store, slow, limits=FAST, concurrency=3, worker_id="a", poll=0.02, backoff=0.01)
    a_run = asyncio.create_task(a.run(until_idle=True))
    await asyncio.wait_for(slow.wait_attempts(3), 10)
    fast = RecordingSender()
    later = FakeClock(datetime.now(UTC) + timedelta(hours=1))  # b looks after a's leases ran out
    await Drainer(store, fast, limits=FAST, worker_id="b", poll=0.02, clock=later).run(until_idle=True)
    assert sorted(fast.chats()) == ["1", "2", "3"]
    slow.release.set()  # a's sends now fail late: its retries must not put b's sent rows back
    report = await asyncio.wait_for(a_run, 10)
    assert slow.sent == [] and len(slow.attempts) == 3 and report.retried == 3
    assert await store.outbox_counts() == {SENT: 3}
    for chat in ("1", "2", "3"):
        (entry,) = await store.history((await store.subscription("telegram", chat)).id)  # type: ignore[union-attr]
        assert (entry.attempts, entry.last_error) == (0, None)


async def test_a_send_is_cut_off_before_its_lease_ends_and_retried(store: Store) -> None:
    await enqueue(store, ["1"])
    sender = HangingSender()
    drainer = Drainer(store, sender, limits=FAST, lease=2.0, backoff=0.05, poll=0.02)
    run = asyncio.create_task(drainer.run(until_idle=True))
    await asyncio.wait_for(sender.wait_attempts(2), 10)  # the first send was cut off, the retry began
    (_, first), (_, second) = sender.attempts
    assert second - first < 2.0  # cut off inside its lease (less the margin), then retried by us
    sender.release.set()
    report = await asyncio.wait_for(run, 10)
    assert report.retried == 1 and report.sent == 1 and len(sender.sent) == 1
    (entry,) = await store.history((await store.subscription("telegram", "1")).id)  # type: ignore[union-attr]
    assert (entry.status, entry.attempts) == (SENT, 1)


class FlakyStore(Store):
    """The same database, but the first `failures` mark_sent calls raise (a dropped connection)."""

    def __init__(self, store: Store, failures: int) -> None:
        super().__init__(store.engine)
        self.failures = failures

    async def mark_sent(self, item: OutboxItem, now: datetime | None = None) -> bool:
        """Fail the first calls like a lost connection, then record normally."""
        if self.failures > 0:
            self.failures -= 1
            raise OSError("connection reset by peer")
        return await super().mark_sent(item, now)


async def test_store_errors_in_a_worker_do_not_stall_delivery(store: Store) -> None:
    await enqueue(store, [str(i) for i in range(6)])
    flaky = FlakyStore(store, failures=4)
    sender = RecordingSender()
    drainer = Drainer(flaky, sender, limits=FAST, concurrency=2, lease=0.5, poll=0.05)
    report = await asyncio.wait_for(drainer.run(until_idle=True), 20)
    assert await store.outbox_counts() == {SENT: 6}
    assert set(sender.chats()) == {str(i) for i in range(6)}
    assert len(sender.sent) == 6 + 4  # the rows whose outcome was lost were sent again after their lease
    assert len(report.errors) == 4


class WorkerCrash(BaseException):
    """Something no per-row handler catches."""


async def test_a_dead_worker_stops_the_drainer_instead_of_stalling_it(store: Store) -> None:
    await enqueue(store, ["1", "2"])
    drainer = Drainer(store, RecordingSender(), limits=FAST, concurrency=1, poll=0.05)

    async def crash(item: OutboxItem) -> None:
        raise WorkerCrash

    drainer.deliver = crash  # type: ignore[method-assign]
    with pytest.raises(DrainerFailed) as failed:
        await asyncio.wait_for(drainer.run(), 10)
    assert isinstance(failed.value.__cause__, WorkerCrash)


async def test_transient_failures_are_retried_for_the_whole_window(store: Store) -> None:
    await enqueue(store, ["1"])
    sender = RecordingSender(failures={"1": [TransientSendError("502")] * 1000})
    drainer = Drainer(store, sender, limits=FAST, backoff=0.02, backoff_max=0.05, retry_window=0.6, poll=0.02)
    began = time.monotonic()
    report = await asyncio.wait_for(drainer.run(until_idle=True), 10)
    assert time.monotonic() - began >= 0.4 and report.failed == 1 and sender.sent == []
    assert len(sender.attempts) > 8  # far more than a fixed handful of attempts: the window decides
    (entry,) = await store.history((await store.subscription("telegram", "1")).id)  # type: ignore[union-attr]
    assert entry.status == FAILED and entry.attempts == len(sender.attempts)


async def test_default_policy_outlasts_an_outage_of_hours_then_gives_up(store: Store) -> None:
    await enqueue(store, ["1"])
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=1))
    sender = RecordingSender(failures={"1": [TransientSendError("502")] * 1000})
    drainer = Drainer(
        store, sender, limits=FAST, clock=clock, max_attempts=settings.delivery_max_attempts,
        backoff=settings.delivery_backoff_seconds, backoff_max=settings.delivery_backoff_max_seconds,
        retry_window=settings.delivery_retry_window,
    )
    began, delays = clock.now(), []
    while True:
        (item,) = await store.claim("w", 1, settings.delivery_lease_seconds, clock.now())
        await drainer.deliver(item)
        (entry,) = await store.history(item.subscription_id)
        if entry.status == FAILED:
            break
        due = await store.next_due()
        assert due is not None
        delays.append((due - clock.now()).total_seconds())
        clock.current = due
    outage = clock.now() - began
    assert sum(delays[:4]) < 90 < sum(delays)  # the old policy gave up here, after ~75 s
    assert timedelta(hours=5, minutes=45) < outage <= timedelta(hours=6)
    assert max(delays) <= 600 * 1.2 and entry.attempts == len(sender.attempts) > 30


async def test_stop_finishes_sends_in_flight_and_returns_the_rest(store: Store) -> None:
    await enqueue(store, [str(i) for i in range(6)])
    sender = HangingSender()
    drainer = Drainer(store, sender, limits=FAST, concurrency=2, worker_id="a", poll=0.05)
    run = asyncio.create_task(drainer.run())
    await asyncio.wait_for(sender.wait_attempts(2), 10)
    drainer.stop()
    await asyncio.sleep(0.05)
    assert not run.done()  # the two sends under way are waited for
    sender.release.set()
    report = await asyncio.wait_for(run, 5)
    assert report.sent == 2 and len(sender.attempts) == 2  # nothing new started after stop()
    assert await store.outbox_counts() == {SENT: 2, PENDING: 4}  # claimed, unsent: back at once
    other = RecordingSender()
    await Drainer(store, other, limits=FAST, worker_id="b").run(until_idle=True)  # no lease to wait out
    assert sorted(sender.chats() + other.chats(), key=int) == [str(i) for i in range(6)]


async def test_stop_cancels_sends_that_overrun_the_grace_and_returns_their_rows(store: Store) -> None:
    await enqueue(store, ["1", "2"])
    sender = HangingSender()  # never released
    drainer = Drainer(store, sender, limits=FAST, concurrency=2, stop_grace=0.2, poll=0.05)
    run = asyncio.create_task(drainer.run())
    await asyncio.wait_for(sender.wait_attempts(2), 10)
    began = time.monotonic()
    drainer.stop()
    await asyncio.wait_for(run, 5)
    assert time.monotonic() - began < 3.0  # the 0.2 s grace, then cancelled (not left hanging)
    assert await store.outbox_counts() == {PENDING: 2}


async def test_leaving_the_digest_service_stops_delivery_gracefully(store: Store) -> None:
    await enqueue(store, [str(i) for i in range(4)])
    url = store.engine.url.render_as_string(hide_password=False)
    settings = Settings(_env_file=None, database_url=url, delivery_concurrency=2)  # type: ignore[call-arg]
    sender = HangingSender()
    index = fake_index(document("news", "It rained."))
    async with DigestService.running(settings, lambda: index, sender) as service:
        await asyncio.wait_for(sender.wait_attempts(2), 10)
        sender.release.set()
        await service.stop()
        assert service.drainer.report.sent == 2
    assert await store.outbox_counts() == {SENT: 2, PENDING: 2}
