"""Contract tests of bot.store, run alike against SQLite and the PostgreSQL named by the environment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bot.store import CANCELLED, EMPTY, FAILED, GONE, PENDING, SENDING, SENT, Store

T0 = datetime(2026, 3, 1, 7, 0, tzinfo=UTC)


async def subscribe(store: Store, chat: str, **kw: Any) -> int:
    values: dict[str, Any] = dict(schedule_kind="daily", schedule_expr="08:00", timezone="Europe/Berlin", now=T0)
    values.update(kw)
    return (await store.subscribe("telegram", chat, **values)).id


def builder(payload: dict[str, Any] | None, state: dict[str, str], calls: list[dict[str, str]] | None = None):
    async def build(seen: dict[str, str]) -> tuple[dict[str, Any] | None, dict[str, str]]:
        if calls is not None:
            calls.append(dict(seen))
        return payload, state

    return build


async def test_migrations_are_idempotent_and_recorded(store: Store) -> None:
    await store.migrate()
    await store.migrate()
    async with store.engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert version == "0001"


async def test_one_subscription_per_chat_updated_and_reactivated(store: Store) -> None:
    first = await subscribe(store, "100")
    second = await subscribe(store, "100", schedule_kind="weekly", schedule_expr="mon 09:00", timezone="UTC")
    assert first == second
    sub = await store.subscription("telegram", "100")
    assert sub is not None and (sub.schedule_kind, sub.schedule_expr, sub.timezone) == ("weekly", "mon 09:00", "UTC")
    assert sub.created_at == T0 and sub.created_at.tzinfo is not None
    assert await store.unsubscribe("telegram", "100") is True
    assert await store.unsubscribe("telegram", "100") is False
    assert await store.active_subscriptions() == []
    await subscribe(store, "100")
    again = await store.subscription("telegram", "100")
    assert again is not None and again.active and again.id == first
    assert await store.subscription("discord", "100") is None


async def test_one_outbox_row_per_subscription_and_period(store: Store) -> None:
    sub = await subscribe(store, "1")
    calls: list[dict[str, str]] = []
    build = builder({"sections": [{"source": "a"}]}, {"a": "h1"}, calls)
    first = await store.create_digest(sub, "2026-03-01T07:00Z", build, T0)
    assert first is not None
    assert await store.create_digest(sub, "2026-03-01T07:00Z", build, T0) is None
    assert calls == [{}]  # the second insert did not even build
    assert await store.seen(sub) == {"a": "h1"}
    second = await store.create_digest(sub, "2026-03-02T07:00Z", build, T0)
    assert second is not None and calls[-1] == {"a": "h1"}
    assert await store.outbox_counts() == {PENDING: 2}
    assert await store.has_period(sub, "2026-03-01T07:00Z")


async def test_concurrent_enqueues_of_one_period_make_one_row(store: Store) -> None:
    sub = await subscribe(store, "1")

    async def slow_build(seen: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
        await asyncio.sleep(0.05)
        return {"sections": []}, {"a": "h"}

    results = await asyncio.gather(*(store.create_digest(sub, "p", slow_build, T0) for _ in range(5)))
    assert sum(r is not None for r in results) == 1
    assert await store.outbox_counts() == {PENDING: 1}


async def test_nothing_new_keeps_the_period_but_sends_nothing(store: Store) -> None:
    sub = await subscribe(store, "1")
    await store.create_digest(sub, "p1", builder({"sections": []}, {"a": "h1"}), T0)
    assert await store.create_digest(sub, "p2", builder(None, {"a": "h2"}), T0) is not None
    assert await store.outbox_counts() == {PENDING: 1, EMPTY: 1}
    assert await store.seen(sub) == {"a": "h1"}  # an empty digest changes nobody's state
    assert [h.period for h in await store.history(sub)] == ["p2", "p1"]


async def test_source_versions_are_stored_once(store: Store) -> None:
    await store.record_versions({("a", "h1"): ["s1", "s2"]}, T0)
    await store.record_versions({("a", "h1"): ["changed"], ("b", "h9"): []}, T0)
    found = await store.version_hashes([("a", "h1"), ("b", "h9"), ("c", "zz")])
    assert found == {("a", "h1"): frozenset({"s1", "s2"}), ("b", "h9"): frozenset()}


async def test_claim_takes_due_rows_once_and_again_after_the_lease(store: Store) -> None:
    subs = [await subscribe(store, str(i)) for i in range(3)]
    for sub in subs:
        await store.create_digest(sub, "p", builder({"sections": []}, {}), T0)
    claimed = await store.claim("w1", 2, lease=30, now=T0)
    assert len(claimed) == 2 and {c.chat_id for c in claimed} <= {"0", "1", "2"}
    rest = await store.claim("w2", 10, lease=30, now=T0)
    assert len(rest) == 1 and rest[0].id not in {c.id for c in claimed}
    assert await store.claim("w3", 10, lease=30, now=T0 + timedelta(seconds=10)) == []
    await store.mark_sent(claimed[0], T0)
    expired = await store.claim("w3", 10, lease=30, now=T0 + timedelta(seconds=31))
    assert {c.id for c in expired} == {claimed[1].id, rest[0].id}  # the dead worker's rows
    assert (await store.outbox_counts()) == {SENT: 1, SENDING: 2}


async def test_deferred_rows_wait_and_count_attempts(store: Store) -> None:
    sub = await subscribe(store, "1")
    await store.create_digest(sub, "p", builder({"sections": []}, {}), T0)
    (item,) = await store.claim("w", 5, 30, T0)
    await store.defer(item, T0 + timedelta(minutes=1), error="boom", attempt=True)
    assert await store.claim("w", 5, 30, T0 + timedelta(seconds=59)) == []
    assert await store.next_due() == T0 + timedelta(minutes=1)
    (again,) = await store.claim("w", 5, 30, T0 + timedelta(minutes=1))
    assert again.attempts == 1
    await store.mark_failed(again, "still boom")
    (entry,) = await store.history(sub)
    assert (entry.status, entry.attempts, entry.last_error) == (FAILED, 2, "still boom")
    assert await store.next_due() is None


async def test_gone_recipient_deactivates_the_subscription(store: Store) -> None:
    sub = await subscribe(store, "1")
    await store.create_digest(sub, "p", builder({"sections": []}, {}), T0)
    (item,) = await store.claim("w", 5, 30, T0)
    await store.mark_gone(item, "Forbidden: bot was blocked by the user")
    found = await store.subscription_by_id(sub)
    assert found is not None and not found.active
    assert await store.outbox_counts() == {GONE: 1}


async def test_concurrent_claims_never_share_a_row(store: Store) -> None:
    subs = [await subscribe(store, str(i)) for i in range(60)]
    for sub in subs:
        await store.create_digest(sub, "p", builder({"sections": []}, {}), T0)

    async def worker(name: str) -> list[int]:
        got: list[int] = []
        while batch := await store.claim(name, 4, 30, T0):
            got += [item.id for item in batch]
        return got

    results = await asyncio.gather(*(worker(f"w{i}") for i in range(4)))
    ids = [i for r in results for i in r]
    assert len(ids) == len(set(ids)) == 60


async def test_writes_of_a_claim_that_was_lost_change_nothing(store: Store) -> None:
    sub = await subscribe(store, "1")
    await store.create_digest(sub, "p", builder({"sections": []}, {}), T0)
    (old,) = await store.claim("w1", 5, lease=30, now=T0)
    (new,) = await store.claim("w2", 5, lease=30, now=T0 + timedelta(seconds=31))  # w1's lease ran out
    assert (new.id, new.claimed_by, new.claimed_until) == (old.id, "w2", T0 + timedelta(seconds=61))
    assert await store.mark_sent(new, T0 + timedelta(seconds=32)) is True
    # w1 comes back late: none of its writes may touch the row w2 finished
    assert await store.defer(old, T0, error="late", attempt=True) is False
    assert await store.mark_failed(old, "late") is False
    assert await store.mark_sent(old, T0) is False
    assert await store.mark_gone(old, "late") is False
    (entry,) = await store.history(sub)
    assert (entry.status, entry.attempts, entry.last_error) == (SENT, 0, None)
    assert entry.sent_at == T0 + timedelta(seconds=32)
    assert await store.claim("w3", 5, lease=30, now=T0 + timedelta(hours=1)) == []


async def test_a_claim_expired_but_not_taken_over_may_still_be_written(store: Store) -> None:
    sub = await subscribe(store, "1")
    await store.create_digest(sub, "p", builder({"sections": []}, {}), T0)
    (item,) = await store.claim("w1", 5, lease=30, now=T0)
    assert await store.defer(item, T0 + timedelta(minutes=5), error="slow", attempt=True) is True
    (entry,) = await store.history(sub)
    assert (entry.status, entry.attempts) == (PENDING, 1)


async def test_concurrent_digests_of_one_subscription_are_serialised(store: Store) -> None:
    subs = [await subscribe(store, str(i)) for i in range(20)]

    async def build(seen: dict[str, str]) -> tuple[dict[str, Any] | None, dict[str, str]]:
        await asyncio.sleep(0.01)
        news = None if seen.get("a") == "h1" else {"sections": [{"source": "a", "since": dict(seen)}]}
        return news, {"a": "h1"}

    # /digest tapped twice: two periods of one subscription at once, for 20 subscriptions
    rows = await asyncio.gather(
        *(store.create_digest(sub, period, build, T0) for sub in subs for period in ("m1", "m2"))
    )
    assert all(row is not None for row in rows)
    assert await store.outbox_counts() == {PENDING: 20, EMPTY: 20}  # the second had nothing new
    for sub in subs:
        assert await store.seen(sub) == {"a": "h1"}
        assert sorted(h.status for h in await store.history(sub)) == [EMPTY, PENDING]


async def test_claim_cancels_digests_of_subscriptions_that_ended_after_queueing(store: Store) -> None:
    kept, left, gone = [await subscribe(store, chat) for chat in ("kept", "left", "gone")]
    for sub in (kept, left, gone):
        await store.create_digest(sub, "p", builder({"sections": []}, {}), T0)
    await store.create_digest(gone, "p2", builder({"sections": []}, {}), T0)
    later = T0 + timedelta(minutes=1)
    assert await store.unsubscribe("telegram", "left", now=later)
    first = await store.claim("w0", 10, 30, T0)  # a worker that then stalls, except for one send
    gone_item = next(i for i in first if (i.chat_id, i.period) == ("gone", "p"))
    await store.mark_gone(gone_item, "Forbidden: bot was blocked by the user", now=later)
    # /digest from the chat that unsubscribed: asked for after the end, so it is sent
    await store.create_digest(left, "manual", builder({"sections": []}, {}), later + timedelta(seconds=1))
    claimed = await store.claim("w1", 10, 30, T0 + timedelta(hours=1))
    assert sorted((i.chat_id, i.period) for i in claimed) == [("kept", "p"), ("left", "manual")]
    assert await store.outbox_counts() == {SENDING: 2, CANCELLED: 2, GONE: 1}
    assert [h.status for h in await store.history(left)] == [SENDING, CANCELLED]
