"""When digests are due: schedules in the subscriber's time zone, and APScheduler wiring.

A due job only writes the outbox row for (subscription, period); the period is the scheduled instant
in UTC, so a job that fires twice, late, or on two instances names the same period and the unique
constraint keeps one row. The period is computed from the `Clock`, never from when APScheduler woke
up, which is what lets tests drive schedules across DST changes with a fake clock.

At start, and every few minutes after (`reconcile`), the jobs are rebuilt from the subscriptions
table, so an instance picks up subscriptions made on another, and `catch_up` enqueues, per
subscription, the latest period missed if it lies within the grace period: a bot that was down for
three days sends one digest, not three, and a period whose job failed (the database was locked) is
enqueued by the next reconcile.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import String

from bot.errors import InputError
from bot.store import SUBSCRIPTIONS, Subscription

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")  # crontab numbers 0-7
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)+$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_TIMEISH = re.compile(r"[\d:]")  # a word meant as a time, not as a zone
_DAY = "(" + "|".join(DAYS) + ")"
_DAY_LIST = re.compile(rf"^{_DAY}(-{_DAY})?(,{_DAY}(-{_DAY})?)*$")
RESOLUTION = timedelta(minutes=1)
MIN_INTERVAL = timedelta(hours=1)  # the most often a cron schedule may send a digest
MAX_EXPR_CHARS = cast(String, SUBSCRIPTIONS.c.schedule_expr.type).length or 120
MAX_ZONE_CHARS = cast(String, SUBSCRIPTIONS.c.timezone.type).length or 64
RECONCILE_JOB = "reconcile"
EXAMPLES = "/subscribe 07:30 Europe/Berlin · /subscribe weekly mon 08:00 · /subscribe cron 0 8 * * 1-5"


class Clock(Protocol):
    """The time now, as an aware datetime."""

    def now(self) -> datetime:
        """Now (timezone-aware)."""
        ...


class SystemClock:
    """The real clock, in UTC."""

    def now(self) -> datetime:
        """Now, in UTC."""
        return datetime.now(UTC)


class Enqueuer(Protocol):
    """Writes the outbox row of a (subscription, period); `bot.digest.Digester` in production."""

    async def enqueue(
        self, subscription: Subscription, period: str, *, force: bool = False, now: datetime | None = None
    ) -> int | None:
        """The new row's id, or None when the period has a row already."""
        ...


class Subscriptions(Protocol):
    """Where the scheduler reads subscriptions from; `bot.store.Store` in production."""

    async def active_subscriptions(self) -> list[Subscription]:
        """Every active subscription."""
        ...

    async def subscription_by_id(self, subscription_id: int) -> Subscription | None:
        """A subscription by id."""
        ...


@dataclass(frozen=True, slots=True)
class Schedule:
    """daily 'HH:MM', weekly 'mon,thu HH:MM' or a 5-field crontab, in an IANA time zone."""

    kind: str
    expr: str
    timezone: str

    @classmethod
    def of(cls, subscription: Subscription) -> Schedule:
        """The schedule of a subscription."""
        return cls(subscription.schedule_kind, subscription.schedule_expr, subscription.timezone)

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger."""
        zone = ZoneInfo(self.timezone)
        if self.kind == "cron":
            fields = self.expr.split()
            return CronTrigger(
                minute=fields[0], hour=fields[1], day=fields[2], month=fields[3],
                day_of_week=_cron_weekdays(fields[4]), timezone=zone,
            )
        days, _, at = self.expr.rpartition(" ")
        hour, minute = at.split(":")
        return CronTrigger(day_of_week=days or None, hour=int(hour), minute=int(minute), timezone=zone)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after `moment`."""
        # from no previous fire time APScheduler never steps back: it starts at `now`, fold and all
        return self.trigger().get_next_fire_time(None, moment + timedelta(microseconds=1))

    def latest(self, now: datetime, window: timedelta) -> datetime | None:
        """The last fire time in (now - window, now], or None."""
        trigger = self.trigger()
        start = now - window + timedelta(microseconds=1)
        fire = trigger.get_next_fire_time(None, start)  # >= start, and _following only moves on
        last = None
        for _ in range(100_000):
            if fire is None or fire > now:
                break
            last = fire
            fire = _following(trigger, fire)
        return last

    def period(self, fire_time: datetime) -> str:
        """The outbox period of a fire time (see `period_key`)."""
        return period_key(fire_time, self.timezone)


def _following(trigger: CronTrigger, fire: datetime) -> datetime | None:
    """The fire time after `fire`; APScheduler 3 can return an earlier one inside a DST fold."""
    following = trigger.get_next_fire_time(fire, fire)
    if following is not None and following <= fire:
        following = trigger.get_next_fire_time(None, fire + RESOLUTION)
        if following is not None and following <= fire:
            return None
    return following


def period_key(fire_time: datetime, timezone: str) -> str:
    """A period: the scheduled local wall time and zone, e.g. '2026-10-25T02:30@Europe/Berlin'.

    Wall time, not the UTC instant: when clocks fall back, 02:30 happens twice, and both firings
    name the same period, so the digest is sent once.
    """
    local = fire_time.astimezone(ZoneInfo(timezone))
    return f"{local:%Y-%m-%dT%H:%M}@{timezone}"


def manual_period(now: datetime) -> str:
    """The period of an on-demand digest (/digest): unique per request."""
    return "manual:" + now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_schedule(words: Iterable[str], default_time: str = "08:00", default_zone: str = "UTC") -> Schedule:
    """Parse `/subscribe` arguments: '[HH:MM] [Area/City]', 'weekly mon 08:00 …', 'cron m h d m w …'."""
    args = [w for w in words if w]
    zone = default_zone
    if args and (_ZONE.match(args[-1]) or args[-1].upper() == "UTC"):
        zone = args.pop()
    _check_zone(zone)
    kind = "daily"
    if args and args[0].lower() in ("daily", "weekly", "cron"):
        kind = args.pop(0).lower()
    if kind == "cron":
        return _parse_cron(args, zone)
    days = ""
    if kind == "weekly":
        if not args or not _DAY_LIST.match(args[0].lower()):
            raise InputError(f"Say which weekday, e.g. /subscribe weekly mon 08:00 (or mon,thu). {EXAMPLES}")
        days = args.pop(0).lower()
    at = args.pop(0) if args and _TIMEISH.search(args[0]) else default_time
    match = _TIME.match(at)
    if not match:
        raise InputError(f"Invalid time {at!r}: use HH:MM (24 h) and an IANA zone. E.g. {EXAMPLES}")
    if any(_TIMEISH.search(word) for word in args):
        raise InputError(f"Could not read {' '.join(args)!r}: the time comes first, then the zone. E.g. {EXAMPLES}")
    if args:  # after the time only a zone may come, and this one is not Area/City: '08:00 Berlin'
        raise _unknown_zone(" ".join(args))
    at = f"{int(match[1]):02d}:{match[2]}"
    expr = f"{days} {at}".strip()
    _check_length(expr)
    return Schedule(kind, expr, zone)


def _parse_cron(fields: list[str], zone: str) -> Schedule:
    """A 5-field crontab that crontab and APScheduler read alike, firing at most hourly."""
    expr = " ".join(fields)
    if len(fields) != 5:
        raise InputError(f"A cron schedule has 5 fields (minute hour day month weekday). E.g. {EXAMPLES}")
    _check_length(expr)
    day, weekday = fields[2], fields[4]
    if not day.startswith("*") and not weekday.startswith("*"):
        # crontab fires when either field matches, APScheduler only when both do
        raise InputError(
            f"A cron schedule can limit the day of the month ({day}) or the weekday ({weekday}), not both. "
            "E.g. /subscribe cron 0 8 1 * * (the 1st of each month) or /subscribe cron 0 8 * * 1 (Mondays)"
        )
    schedule = Schedule("cron", expr, zone)
    try:
        trigger = schedule.trigger()
    except ValueError as exc:
        raise InputError(f"Invalid cron expression {expr!r}: {exc}. E.g. /subscribe cron 0 8 * * 1-5") from exc
    fires = _firings(trigger, 3)
    if not fires:
        raise InputError(f"The cron expression {expr!r} never fires. E.g. /subscribe cron 0 8 * * 1-5")
    gaps = [b - a for a, b in itertools.pairwise(fires)]
    if gaps and min(gaps) < MIN_INTERVAL:
        raise InputError(
            f"Digests come at most once an hour, and {expr!r} fires {min(gaps) // timedelta(minutes=1)} min "
            "apart. Name one minute, e.g. /subscribe cron 0 8-18/2 * * 1-5 (every two hours on workdays)"
        )
    return schedule


def _firings(trigger: CronTrigger, n: int) -> list[datetime]:
    """The first n fire times from a fixed moment (fewer if the trigger stops)."""
    fires: list[datetime] = []
    fire = trigger.get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=UTC))
    while fire is not None and len(fires) < n:
        fires.append(fire)
        fire = _following(trigger, fire)
    return fires


def _check_length(expr: str) -> None:
    if len(expr) > MAX_EXPR_CHARS:
        raise InputError(
            f"That schedule is {len(expr)} characters long; at most {MAX_EXPR_CHARS} fit. "
            f"Use ranges and steps (1-5, */2) instead of long lists. E.g. {EXAMPLES}"
        )


def _check_zone(zone: str) -> None:
    try:
        if len(zone) > MAX_ZONE_CHARS:
            raise ValueError(zone)
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long for a file
        raise _unknown_zone(zone) from exc


def _unknown_zone(name: str) -> InputError:
    """The error for a zone we cannot use, suggesting IANA names that end like it ('Berlin')."""
    key = "_".join(name.split()).lower()
    like = [z for z in _zones() if z.lower() == key or z.lower().endswith("/" + key)][:3]
    hint = f" Did you mean {' or '.join(like)}?" if like else ""
    return InputError(
        f"Unknown time zone {name!r}: use an IANA name (Area/City).{hint} "
        f"E.g. /subscribe 08:00 Europe/Berlin or /subscribe 08:00 America/New_York"
    )


@functools.cache
def _zones() -> list[str]:
    return sorted(available_timezones())


def _cron_weekdays(field: str) -> str:
    """Crontab weekday numbers (0 and 7 = Sunday) as names; APScheduler 3 counts 0 as Monday."""
    if not re.search(r"\d", field) and "/" not in field:
        return field
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            lo_text, hi_text = base.split("-", 1)
            lo, hi = _day_number(lo_text), _day_number(hi_text)
        else:
            lo = hi = _day_number(base)
            if step_text:
                hi = 6
        if lo > hi:
            raise ValueError(f"weekday range {base!r} runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(CRON_DAYS[d] for d in sorted(days))


def _day_number(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text in CRON_DAYS:
        return CRON_DAYS.index(text)
    raise ValueError(f"unknown weekday {text!r}")


class DigestScheduler:
    """APScheduler jobs, one per active subscription; a due job enqueues the period's outbox row."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        enqueuer: Enqueuer,
        *,
        clock: Clock | None = None,
        grace: timedelta = timedelta(hours=12),
        reconcile_every: timedelta = timedelta(minutes=5),
    ) -> None:
        self.subscriptions = subscriptions
        self.enqueuer = enqueuer
        self.clock = clock or SystemClock()
        self.grace = grace
        self.reconcile_every = reconcile_every
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._schedules: dict[int, Schedule] = {}  # what each job was built from
        self._done: dict[int, str] = {}  # the latest period known to have its outbox row
        # thousands of jobs due at 08:00 queue here instead of crowding the database (SQLite: one writer)
        self._slots = asyncio.Semaphore(4)

    async def start(self) -> None:
        """Rebuild the jobs from the subscriptions table, start, send what was missed, keep reconciling."""
        self.scheduler.add_job(
            self.reconcile,
            IntervalTrigger(seconds=max(1, int(self.reconcile_every.total_seconds())), timezone=UTC),
            id=RECONCILE_JOB,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.start()
        await self.reconcile()

    def shutdown(self) -> None:
        """Stop firing jobs."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def reconcile(self) -> int:
        """Make the jobs match the active subscriptions, then enqueue what is due (idempotent).

        Runs at start and every `reconcile_every`: it picks up subscriptions made or changed on other
        instances, drops the jobs of ended ones, and re-enqueues a period whose job failed (e.g. the
        database was locked), as long as it lies within the grace period.
        """
        subs = await self.subscriptions.active_subscriptions()
        active = {sub.id for sub in subs}
        for sub_id in [i for i in self._schedules if i not in active]:
            self.remove(sub_id)
        for sub in subs:
            if self._schedules.get(sub.id) != Schedule.of(sub):
                self.add(sub)
        return await self.catch_up(subs)

    def add(self, subscription: Subscription) -> None:
        """Create or replace the job of a subscription."""
        schedule = Schedule.of(subscription)
        self.scheduler.add_job(
            self.fire,
            schedule.trigger(),
            args=[subscription.id],
            id=_job_id(subscription.id),
            replace_existing=True,
            misfire_grace_time=max(1, int(self.grace.total_seconds())),
            coalesce=True,
            max_instances=1,
        )
        self._schedules[subscription.id] = schedule

    def remove(self, subscription_id: int) -> None:
        """Drop a subscription's job, if it has one."""
        self._schedules.pop(subscription_id, None)
        self._done.pop(subscription_id, None)
        if self.scheduler.get_job(_job_id(subscription_id)):
            self.scheduler.remove_job(_job_id(subscription_id))

    def next_run(self, subscription_id: int) -> datetime | None:
        """When the subscription's job fires next (None: no job)."""
        job = self.scheduler.get_job(_job_id(subscription_id))
        return job.next_run_time if job else None

    async def fire(self, subscription_id: int) -> int | None:
        """The job: re-read the subscription and enqueue its due period."""
        sub = await self.subscriptions.subscription_by_id(subscription_id)
        if sub is None or not sub.active:
            self.remove(subscription_id)
            return None
        return await self.run_due(sub)

    async def run_due(self, subscription: Subscription) -> int | None:
        """Enqueue the latest period due within the grace period (a no-op if it has a row already)."""
        now = self.clock.now()
        fire = Schedule.of(subscription).latest(now, self.grace)
        if fire is None or fire < subscription.created_at:
            return None
        period = period_key(fire, subscription.timezone)
        if self._done.get(subscription.id) == period:
            return None  # enqueued (here or elsewhere) already: spare the database
        async with self._slots:
            row = await self.enqueuer.enqueue(subscription, period, now=now)
        self._done[subscription.id] = period
        if row is not None:
            log.info("digest %s for subscription %d enqueued", period, subscription.id)
        return row

    async def catch_up(self, subscriptions: list[Subscription] | None = None) -> int:
        """Enqueue, once, each subscription's latest missed period within the grace period.

        A subscription whose enqueue fails is logged and left for the next reconcile; the others go on.
        """
        subs = subscriptions if subscriptions is not None else await self.subscriptions.active_subscriptions()
        enqueued = 0
        for sub in subs:
            try:
                row = await self.run_due(sub)
            except Exception:  # e.g. the database is locked: one subscription must not stop the others
                log.exception("digest for subscription %d not enqueued; retried at the next reconcile", sub.id)
                continue
            if row is not None:
                enqueued += 1
        return enqueued


def _job_id(subscription_id: int) -> str:
    return f"digest:{subscription_id}"
