"""Schedules, periods and the APScheduler wiring, driven by a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.exc import OperationalError

from bot.digest import Digester
from bot.errors import InputError
from bot.scheduler import MAX_EXPR_CHARS, DigestScheduler, Schedule, parse_schedule, period_key
from bot.store import EMPTY, PENDING, Store, Subscription
from tests.digest_support import (
    BACKENDS,
    FakeClock,
    document,
    fake_index,
    open_store,
    pg_fixture_url,
)

START = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class RecordingEnqueuer:
    """Records enqueued periods, keeping one per (subscription, period) like the outbox."""

    rows: dict[tuple[int, str], datetime] = field(default_factory=dict)

    async def enqueue(
        self, subscription: Subscription, period: str, *, force: bool = False, now: datetime | None = None
    ) -> int | None:
        key = (subscription.id, period)
        if key in self.rows:
            return None
        assert now is not None
        self.rows[key] = now
        return len(self.rows)


def sub(sub_id: int, kind: str, expr: str, zone: str, created: datetime = START) -> Subscription:
    return Subscription(sub_id, "telegram", str(sub_id), "private", kind, expr, zone, True, created)


def digest_jobs(scheduler: DigestScheduler) -> list[str]:
    return sorted(job.id for job in scheduler.scheduler.get_jobs() if job.id.startswith("digest:"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store("sqlite", tmp_path, None) as opened:
        yield opened


@pytest.fixture(params=BACKENDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(request.param, tmp_path, pg_fixture_url(request)) as opened:
        yield opened


# ---- parsing ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("", Schedule("daily", "08:00", "UTC")),
        ("7:30", Schedule("daily", "07:30", "UTC")),
        ("07:30 Europe/Berlin", Schedule("daily", "07:30", "Europe/Berlin")),
        ("America/Argentina/Buenos_Aires", Schedule("daily", "08:00", "America/Argentina/Buenos_Aires")),
        ("weekly mon 08:00", Schedule("weekly", "mon 08:00", "UTC")),
        ("weekly mon,thu 18:05 Asia/Tokyo", Schedule("weekly", "mon,thu 18:05", "Asia/Tokyo")),
        ("cron 0 8-18/2 * * 1-5 Europe/Berlin", Schedule("cron", "0 8-18/2 * * 1-5", "Europe/Berlin")),
        ("cron 0 * * * *", Schedule("cron", "0 * * * *", "UTC")),  # hourly: the most often allowed
        ("cron 0 8 */2 * 1", Schedule("cron", "0 8 */2 * 1", "UTC")),  # '*/2' reads alike in both
        ("weekly " + ",".join(["mon"] * 28) + " 08:00", Schedule("weekly", ",".join(["mon"] * 28) + " 08:00", "UTC")),
    ],
)
def test_parse_schedule(args: str, expected: Schedule) -> None:
    assert parse_schedule(args.split()) == expected


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ("25:00", "Invalid time"),
        ("08:00 Mars/Olympus_Mons", "Unknown time zone"),
        ("weekly 08:00", "weekday"),
        ("cron 0 8 * *", "5 fields"),
        ("cron 0 8 * * 9", "Invalid cron"),
        ("08:00 tomorrow", "Unknown time zone 'tomorrow'"),
        ("08:00 Berlin", "Unknown time zone 'Berlin'"),  # not "Invalid time '08:00'": the time is fine
        ("Berlin 08:00", "the time comes first"),
        ("cron * * * * *", "at most once an hour"),
        ("cron */30 8-18 * * 1-5", "at most once an hour"),
        ("cron 0,30 8 * * *", "30 min apart"),
        ("cron 0 8 1 * 1", "not both"),  # crontab: the 1st or Mondays; APScheduler: Mondays the 1st
        ("cron 0 8 1-7 * mon", "not both"),
        ("cron 0 8 31 2 *", "never fires"),
        ("cron " + ",".join(["0"] * 60) + " 8 * * *", "at most 120 fit"),
        ("weekly " + ",".join(["mon"] * 29) + " 08:00", "at most 120 fit"),
        ("08:00 Europe/" + "A" * 300, "Unknown time zone"),
    ],
)
def test_invalid_schedules_get_a_clear_message_with_an_example(args: str, needle: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_schedule(args.split())
    message = str(caught.value)
    assert needle in message
    assert "/subscribe" in message or "Europe/Berlin" in message  # an example of what works


async def test_the_longest_schedule_accepted_fits_the_store(any_store: Store) -> None:
    longest = "cron 0 8 10" + ",1" * 55 + " * *"  # 120 characters, the column's length
    schedule = parse_schedule(longest.split())
    assert len(schedule.expr) == MAX_EXPR_CHARS == 120
    stored = await any_store.subscribe(
        "telegram", "1", schedule_kind=schedule.kind, schedule_expr=schedule.expr, timezone=schedule.timezone
    )
    assert Schedule.of(stored) == schedule
    with pytest.raises(InputError, match="at most 120 fit"):  # never a DBAPIError from PostgreSQL
        parse_schedule((longest.replace("10,", "10,11,", 1)).split())


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        ("08:00 Berlin", "Europe/Berlin"),
        ("Berlin", "Europe/Berlin"),
        ("weekly mon 08:00 Tokyo", "Asia/Tokyo"),
        ("07:30 new york", "America/New_York"),
        ("08:00 europe/berlin", "Europe/Berlin"),
    ],
)
def test_a_city_without_its_area_is_named_with_the_zone_it_may_mean(args: str, suggestion: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_schedule(args.split())
    message = str(caught.value)
    assert message.startswith("Unknown time zone") and "Invalid time" not in message
    assert f"Did you mean {suggestion}?" in message
    assert "/subscribe 08:00 Europe/Berlin" in message


def test_cron_weekdays_follow_crontab_not_apscheduler_numbering() -> None:
    # crontab: 1-5 is Monday to Friday and 0 is Sunday (APScheduler 3 alone would read 0 as Monday)
    weekdays = Schedule("cron", "0 8 * * 1-5", "UTC")
    sunday = Schedule("cron", "0 8 * * 0", "UTC")
    saturday = datetime(2026, 3, 7, 12, tzinfo=UTC)
    assert weekdays.next_after(saturday) == datetime(2026, 3, 9, 8, tzinfo=UTC)  # Monday
    assert sunday.next_after(saturday) == datetime(2026, 3, 8, 8, tzinfo=UTC)


# ---- firing at the right local time across DST --------------------------------------------------
async def test_schedules_in_several_zones_fire_at_local_time_across_dst() -> None:
    subs = [
        sub(1, "daily", "08:00", "Europe/Berlin"),  # CET -> CEST on 2026-03-29
        sub(2, "daily", "08:00", "America/New_York"),  # EST -> EDT on 2026-03-08
        sub(3, "daily", "07:15", "Australia/Sydney"),  # AEDT -> AEST on 2026-04-05
        sub(4, "daily", "09:30", "Asia/Kolkata"),  # no DST
        sub(5, "weekly", "sun 02:30", "Europe/Berlin"),  # 02:30 does not exist on 2026-03-29
        sub(6, "cron", "0 12 * * 1-5", "America/New_York"),
    ]
    clock = FakeClock(START)
    enqueuer = RecordingEnqueuer()
    scheduler = DigestScheduler(_Subs(subs), enqueuer, clock=clock, grace=timedelta(hours=1))
    while clock.now() < datetime(2026, 4, 10, tzinfo=UTC):
        clock.advance(minutes=10)
        for s in subs:
            await scheduler.run_due(s)

    def local_times(sub_id: int) -> list[datetime]:
        zone = ZoneInfo(subs[sub_id - 1].timezone)
        return sorted(
            datetime.fromisoformat(p.split("@")[0]).replace(tzinfo=zone) for (i, p) in enqueuer.rows if i == sub_id
        )

    for sub_id, (hour, minute) in {1: (8, 0), 2: (8, 0), 3: (7, 15), 4: (9, 30)}.items():
        times = local_times(sub_id)
        assert len(times) == 40, sub_id  # one a day, 1 March to 9 April
        assert {(t.hour, t.minute) for t in times} == {(hour, minute)}
        assert len({t.date() for t in times}) == 40
    # every digest was enqueued within one clock step of its local time, whatever the UTC offset
    for (sub_id, period), enqueued_at in enqueuer.rows.items():
        zone = ZoneInfo(subs[sub_id - 1].timezone)
        wall = datetime.fromisoformat(period.split("@")[0])
        due = datetime(wall.year, wall.month, wall.day, wall.hour, wall.minute, tzinfo=zone).astimezone(UTC)
        assert timedelta(0) <= enqueued_at - due < timedelta(minutes=70), (sub_id, period)
    berlin = [enqueuer.rows[(1, p)] for (i, p) in enqueuer.rows if i == 1]
    assert {t.hour for t in berlin if t < datetime(2026, 3, 29, tzinfo=UTC)} == {7}  # 08:00 CET
    assert {t.hour for t in berlin if t > datetime(2026, 3, 29, 3, tzinfo=UTC)} == {6}  # 08:00 CEST
    new_york = [enqueuer.rows[(2, p)] for (i, p) in enqueuer.rows if i == 2]
    assert {t.hour for t in new_york if t < datetime(2026, 3, 8, tzinfo=UTC)} == {13}
    assert {t.hour for t in new_york if t > datetime(2026, 3, 9, tzinfo=UTC)} == {12}
    sydney = [enqueuer.rows[(3, p)] for (i, p) in enqueuer.rows if i == 3]
    assert {t.hour for t in sydney if t < datetime(2026, 4, 4, tzinfo=UTC)} == {20}  # 07:15 AEDT
    assert {t.hour for t in sydney if t > datetime(2026, 4, 5, tzinfo=UTC)} == {21}  # 07:15 AEST
    weekly = local_times(5)
    assert len(weekly) == 6 and all(t.weekday() == 6 for t in weekly)  # Sundays, the DST one too
    workdays = local_times(6)
    assert len(workdays) == 29 and all(t.weekday() < 5 and t.hour == 12 for t in workdays)


async def test_a_time_that_happens_twice_when_clocks_fall_back_fires_once() -> None:
    s = sub(1, "daily", "02:30", "Europe/Berlin")
    clock = FakeClock(datetime(2026, 10, 24, 20, tzinfo=UTC))
    enqueuer = RecordingEnqueuer()
    scheduler = DigestScheduler(_Subs([s]), enqueuer, clock=clock, grace=timedelta(hours=3))
    while clock.now() < datetime(2026, 10, 26, 6, tzinfo=UTC):
        clock.advance(minutes=5)
        await scheduler.run_due(s)
    assert sorted(p for _, p in enqueuer.rows) == [
        "2026-10-25T02:30@Europe/Berlin",
        "2026-10-26T02:30@Europe/Berlin",
    ]


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Berlin", datetime(2026, 10, 24, 22, tzinfo=UTC)),  # falls back: 02:xx twice
        ("Europe/Berlin", datetime(2026, 3, 28, 23, tzinfo=UTC)),  # springs forward: no 02:xx
        ("America/New_York", datetime(2026, 11, 1, 3, tzinfo=UTC)),
        ("Australia/Lord_Howe", datetime(2026, 4, 4, 13, tzinfo=UTC)),  # a 30-minute shift
    ],
)
def test_next_and_latest_fire_times_stay_in_their_window_across_dst(zone: str, day: datetime) -> None:
    schedules = [Schedule("daily", f"{h:02d}:{m:02d}", zone) for h in (1, 2, 3) for m in (0, 30, 45)]
    schedules += [Schedule("cron", "30 * * * *", zone), Schedule("weekly", "sun 02:30", zone)]
    for schedule in schedules:
        for minutes in range(0, 6 * 60, 11):
            now = day + timedelta(minutes=minutes, seconds=3)
            following = schedule.next_after(now)
            assert following is not None and following > now
            following = following.astimezone(UTC)  # the clock's zone: arithmetic in UTC, not wall time
            found = schedule.latest(following, following - now)
            assert found is not None and found.astimezone(UTC) == following  # PEP 495: == across zones
            for window in (timedelta(minutes=1), timedelta(minutes=40), timedelta(hours=3)):
                last = schedule.latest(now, window)
                assert last is None or now - window < last <= now, (schedule, now, window)


def test_period_is_the_local_wall_time() -> None:
    fire = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert period_key(fire, "Europe/Berlin") == "2026-03-30T08:00@Europe/Berlin"


# ---- catching up after downtime, with the real store and digester -------------------------------
async def test_missed_digests_are_sent_once_within_the_grace_period(store: Store) -> None:
    index = fake_index(document("news", "The council met on Monday. It approved the new budget for schools."))
    digester = Digester(store, lambda: index)
    clock = FakeClock(datetime(2026, 3, 2, 6, 0, tzinfo=UTC))
    berlin = await store.subscribe(
        "telegram", "1", schedule_kind="daily", schedule_expr="08:00", timezone="Europe/Berlin", now=clock.now()
    )
    late = await store.subscribe(
        "telegram", "2", schedule_kind="daily", schedule_expr="06:00", timezone="UTC", now=clock.now()
    )
    scheduler = DigestScheduler(store, digester, clock=clock, grace=timedelta(hours=12))
    # down for three days: started again at 10:00 UTC on 5 March
    clock.current = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    assert await scheduler.catch_up() == 2
    assert await scheduler.catch_up() == 0  # a second start sends nothing again
    periods = {h.period for h in await store.history(berlin.id)}
    assert periods == {"2026-03-05T08:00@Europe/Berlin"}  # once, not once per missed day
    # beyond the grace period nothing is sent
    clock.current = datetime(2026, 3, 6, 19, 0, tzinfo=UTC)
    assert await scheduler.catch_up() == 0
    assert len(await store.history(late.id)) == 1


async def test_a_subscription_made_after_todays_time_waits_for_tomorrow(store: Store) -> None:
    index = fake_index(document("news", "The council met on Monday and approved the budget."))
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    created = await store.subscribe(
        "telegram", "1", schedule_kind="daily", schedule_expr="08:00", timezone="UTC", now=clock.now()
    )
    scheduler = DigestScheduler(store, Digester(store, lambda: index), clock=clock)
    assert await scheduler.run_due(created) is None
    clock.current = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert await scheduler.run_due(created) is not None


async def test_two_instances_firing_the_same_period_make_one_digest(store: Store) -> None:
    index = fake_index(document("news", "The council met on Monday and approved the budget."))
    clock = FakeClock(datetime(2026, 3, 2, 8, 0, 5, tzinfo=UTC))
    s = await store.subscribe(
        "telegram", "1", schedule_kind="daily", schedule_expr="08:00", timezone="UTC", now=START
    )
    one = DigestScheduler(store, Digester(store, lambda: index), clock=clock)
    two = DigestScheduler(store, Digester(store, lambda: index), clock=clock)
    results = [await one.fire(s.id), await two.fire(s.id), await one.fire(s.id)]
    assert sum(r is not None for r in results) == 1
    assert await store.outbox_counts() == {PENDING: 1}
    clock.current = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    await one.fire(s.id)  # unchanged sources: the period is recorded, nothing to send
    assert await store.outbox_counts() == {PENDING: 1, EMPTY: 1}


async def test_jobs_are_rebuilt_from_the_subscriptions_table(store: Store) -> None:
    index = fake_index(document("news", "The council met on Monday and approved the budget."))
    a = await store.subscribe(
        "telegram", "1", schedule_kind="daily", schedule_expr="08:00", timezone="Europe/Berlin", now=START
    )
    b = await store.subscribe(
        "telegram", "2", schedule_kind="weekly", schedule_expr="fri 17:45", timezone="Asia/Tokyo", now=START
    )
    await store.subscribe(
        "telegram", "3", schedule_kind="daily", schedule_expr="08:00", timezone="UTC", now=START
    )
    await store.unsubscribe("telegram", "3")
    scheduler = DigestScheduler(store, Digester(store, lambda: index), grace=timedelta(minutes=1))
    await scheduler.start()
    try:
        assert digest_jobs(scheduler) == [f"digest:{a.id}", f"digest:{b.id}"]
        next_a = scheduler.next_run(a.id)
        next_b = scheduler.next_run(b.id)
        assert next_a is not None and (next_a.hour, next_a.minute) == (8, 0)
        assert str(next_a.tzinfo) == "Europe/Berlin"
        assert next_b is not None and next_b.weekday() == 4 and (next_b.hour, next_b.minute) == (17, 45)
        scheduler.remove(b.id)
        assert scheduler.next_run(b.id) is None
        await store.unsubscribe("telegram", "1")
        assert await scheduler.fire(a.id) is None  # an unsubscribed chat's job removes itself
        assert scheduler.next_run(a.id) is None
    finally:
        scheduler.shutdown()


@dataclass
class _Subs:
    subs: list[Subscription]

    async def active_subscriptions(self) -> list[Subscription]:
        return list(self.subs)

    async def subscription_by_id(self, subscription_id: int) -> Subscription | None:
        return next((s for s in self.subs if s.id == subscription_id), None)


async def test_apscheduler_runs_the_job_and_it_enqueues_the_due_period(store: Store) -> None:
    index = fake_index(document("news", "The council met on Monday and approved the budget."))
    clock = FakeClock(datetime(2026, 3, 2, 7, 58, tzinfo=UTC))
    s = await store.subscribe(
        "telegram", "1", schedule_kind="daily", schedule_expr="08:00", timezone="UTC", now=START
    )
    scheduler = DigestScheduler(store, Digester(store, lambda: index), clock=clock, grace=timedelta(minutes=5))
    await scheduler.start()
    try:
        assert not await store.has_period(s.id, "2026-03-02T08:00@UTC")  # nothing to catch up at 07:58
        clock.current = datetime(2026, 3, 2, 8, 0, 2, tzinfo=UTC)
        job = scheduler.scheduler.get_job(f"digest:{s.id}")
        assert job is not None
        job.modify(next_run_time=datetime.now(UTC))  # let APScheduler fire it now
        scheduler.scheduler.wakeup()
        for _ in range(200):
            if await store.has_period(s.id, "2026-03-02T08:00@UTC"):
                break
            await asyncio.sleep(0.01)
        assert await store.has_period(s.id, "2026-03-02T08:00@UTC")
    finally:
        scheduler.shutdown()


async def test_many_jobs_due_at_once_all_enqueue_on_sqlite(store: Store) -> None:
    index = fake_index(document("news", "The council met on Monday and approved the budget."))
    clock = FakeClock(datetime(2026, 3, 2, 8, 0, 1, tzinfo=UTC))
    subs = [
        await store.subscribe(
            "telegram", str(i), schedule_kind="daily", schedule_expr="08:00", timezone="UTC", now=START
        )
        for i in range(300)
    ]
    scheduler = DigestScheduler(store, Digester(store, lambda: index), clock=clock)
    results = await asyncio.gather(*(scheduler.fire(s.id) for s in subs))  # as APScheduler would at 08:00
    assert all(r is not None for r in results)
    assert await store.outbox_counts() == {PENDING: 300}


@dataclass
class FlakyEnqueuer(RecordingEnqueuer):
    """Fails the first `failures[subscription_id]` enqueues of a subscription, as a locked database would."""

    failures: dict[int, int] = field(default_factory=dict)

    async def enqueue(
        self, subscription: Subscription, period: str, *, force: bool = False, now: datetime | None = None
    ) -> int | None:
        if self.failures.get(subscription.id, 0) > 0:
            self.failures[subscription.id] -= 1
            raise OperationalError("INSERT INTO outbox ...", {}, Exception("database is locked"))
        return await super().enqueue(subscription, period, force=force, now=now)


async def test_a_period_whose_enqueue_failed_is_enqueued_by_the_next_reconcile() -> None:
    subs = [sub(1, "daily", "08:00", "UTC"), sub(2, "daily", "08:00", "UTC")]
    clock = FakeClock(datetime(2026, 3, 2, 8, 0, 5, tzinfo=UTC))
    enqueuer = FlakyEnqueuer(failures={1: 2})
    scheduler = DigestScheduler(_Subs(subs), enqueuer, clock=clock, grace=timedelta(hours=1))
    with pytest.raises(OperationalError):
        await scheduler.fire(1)  # the job at 08:00 fails; APScheduler would log it and move on
    clock.advance(minutes=5)
    assert await scheduler.reconcile() == 1  # 1 fails again (logged), 2 is not held up by it
    assert set(enqueuer.rows) == {(2, "2026-03-02T08:00@UTC")}
    clock.advance(minutes=5)
    assert await scheduler.reconcile() == 1
    assert set(enqueuer.rows) == {(1, "2026-03-02T08:00@UTC"), (2, "2026-03-02T08:00@UTC")}
    assert await scheduler.reconcile() == 0  # idempotent
    clock.current = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert await scheduler.reconcile() == 0  # and beyond the grace period nothing is due


async def test_reconcile_picks_up_subscriptions_made_or_ended_on_another_instance(store: Store) -> None:
    index = fake_index(document("news", "The council met on Monday and approved the budget."))
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    a = await store.subscribe(
        "telegram", "1", schedule_kind="daily", schedule_expr="08:00", timezone="UTC", now=clock.now()
    )
    c = await store.subscribe(
        "telegram", "3", schedule_kind="daily", schedule_expr="08:00", timezone="UTC", now=clock.now()
    )
    scheduler = DigestScheduler(
        store, Digester(store, lambda: index), clock=clock, grace=timedelta(hours=1),
        reconcile_every=timedelta(minutes=2),
    )
    await scheduler.start()
    try:
        reconcile = scheduler.scheduler.get_job("reconcile")
        assert reconcile is not None and reconcile.trigger.interval == timedelta(minutes=2)
        assert digest_jobs(scheduler) == [f"digest:{a.id}", f"digest:{c.id}"]
        # another instance: a subscription made, one ended, one moved to another time
        b = await store.subscribe(
            "telegram", "2", schedule_kind="daily", schedule_expr="09:30", timezone="UTC", now=START
        )
        await store.unsubscribe("telegram", "1")
        await store.subscribe("telegram", "3", schedule_kind="weekly", schedule_expr="fri 17:45", timezone="UTC")
        clock.current = datetime(2026, 3, 2, 9, 31, tzinfo=UTC)
        reconcile.modify(next_run_time=datetime.now(UTC))  # let APScheduler run the reconcile now
        scheduler.scheduler.wakeup()
        for _ in range(200):
            if await store.has_period(b.id, "2026-03-02T09:30@UTC"):
                break
            await asyncio.sleep(0.01)
        assert await store.has_period(b.id, "2026-03-02T09:30@UTC")  # and its due digest caught up
        assert digest_jobs(scheduler) == [f"digest:{c.id}", f"digest:{b.id}"]
        next_c = scheduler.next_run(c.id)
        assert next_c is not None and next_c.weekday() == 4 and (next_c.hour, next_c.minute) == (17, 45)
    finally:
        scheduler.shutdown()
