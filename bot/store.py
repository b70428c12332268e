"""Storage for subscriptions, digest state and the delivery outbox (SQLAlchemy 2, async).

SQLite in the data dir by default, PostgreSQL by URL; the schema is owned by Alembic migrations
(`bot/migrations`), applied by `Store.open`. Idempotency lives in constraints, not in code paths:

- one subscription per (platform, chat);
- one outbox row per (subscription, period): a job that fires twice, or on two instances, inserts
  one row and the second insert is a no-op;
- what a subscriber last saw is `digest_state` (per source: the content hash of the version in its
  last digest), and `source_versions` keeps each version's sentence hashes once, shared by everyone,
  so "new or changed since the previous digest" is a set difference.

The outbox is drained by claiming rows with a lease: `FOR UPDATE SKIP LOCKED` on PostgreSQL (several
instances share the work), plain serialised writes on SQLite. A claimed row whose lease ran out
(its process died) can be claimed again; that is where at-least-once comes from. Every write back
(sent, deferred, failed, gone, released) applies only while the row is still under the claim it
was given with (`OutboxItem.claimed_by` and `claimed_until`), so a worker that lost its lease cannot
undo what the row's new owner recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from bot.errors import StoreError

log = logging.getLogger(__name__)

PENDING, SENDING, SENT, EMPTY, FAILED, GONE = "pending", "sending", "sent", "empty", "failed", "gone"
CANCELLED = "cancelled"  # queued, then the subscription ended (unsubscribed or gone) before it went out
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 4_251_907_311  # pg_advisory_xact_lock key: one migrator at a time


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (naive storage) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class SubscriptionRow(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("platform", "chat_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    chat_kind: Mapped[str] = mapped_column(String(16), default="private")
    schedule_kind: Mapped[str] = mapped_column(String(8))
    schedule_expr: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SourceVersionRow(Base):
    __tablename__ = "source_versions"

    source_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    sentence_hashes: Mapped[str] = mapped_column(Text)  # JSON list
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DigestStateRow(Base):
    __tablename__ = "digest_state"

    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    source_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("subscription_id", "period"),
        Index("ix_outbox_status_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12))
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON of a Digest
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


SUBSCRIPTIONS = cast(Table, SubscriptionRow.__table__)
SOURCE_VERSIONS = cast(Table, SourceVersionRow.__table__)
DIGEST_STATE = cast(Table, DigestStateRow.__table__)
OUTBOX = cast(Table, OutboxRow.__table__)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A chat's subscription: where digests go and when (schedule in the chat's IANA time zone)."""

    id: int
    platform: str
    chat_id: str
    chat_kind: str  # private | group | channel
    schedule_kind: str  # daily | weekly | cron
    schedule_expr: str  # "08:00" | "mon 08:00" | "0 8 * * 1-5"
    timezone: str
    active: bool
    created_at: datetime
    created_by: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed outbox row with its recipient and the claim (every write back is scoped to it)."""

    id: int
    subscription_id: int
    period: str
    payload: dict[str, Any] | None
    attempts: int
    platform: str
    chat_id: str
    chat_kind: str
    claimed_by: str
    claimed_until: datetime
    created_at: datetime  # when the digest was queued: retries are bounded by a window from here


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One digest of a subscription, as the outbox recorded it."""

    period: str
    status: str
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


# (source_id -> content hash seen) -> (payload or None, source_id -> content hash now seen)
DigestBuilder = Callable[[dict[str, str]], Awaitable[tuple[dict[str, Any] | None, dict[str, str]]]]


def _subscription(row: SubscriptionRow) -> Subscription:
    return Subscription(
        row.id, row.platform, row.chat_id, row.chat_kind, row.schedule_kind, row.schedule_expr,
        row.timezone, row.active, row.created_at, row.created_by,
    )


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """Repositories over one async engine; build with `await Store.open(url)`, end with `close()`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, pool_size: int = 10) -> Store:
        """Connect (creating the SQLite folder) and bring the schema to the latest migration."""
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        engine = create_async_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        try:
            if migrate:
                await store.migrate()
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def migrate(self, revision: str = "head") -> None:
        """Apply the Alembic migrations shipped in bot/migrations."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))

        def upgrade(connection: Any) -> None:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        try:
            async with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
                await conn.run_sync(upgrade)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not migrate the database: {exc}") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction, committed on success."""
        async with self.sessions() as session, session.begin():
            yield session

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # ---- subscriptions -------------------------------------------------------------------------
    async def subscribe(
        self,
        platform: str,
        chat_id: str,
        *,
        schedule_kind: str,
        schedule_expr: str,
        timezone: str,
        chat_kind: str = "private",
        created_by: str | None = None,
        now: datetime | None = None,
    ) -> Subscription:
        """Create or update (and reactivate) the chat's subscription."""
        now = now or _now()
        values = dict(
            platform=platform, chat_id=chat_id, chat_kind=chat_kind, schedule_kind=schedule_kind,
            schedule_expr=schedule_expr, timezone=timezone, active=True, created_by=created_by,
            created_at=now, updated_at=now,
        )
        stmt = self._insert(SUBSCRIPTIONS).values(**values)
        changed = {k: stmt.excluded[k] for k in values if k not in ("created_at", "platform", "chat_id")}
        stmt = stmt.on_conflict_do_update(index_elements=["platform", "chat_id"], set_=changed)
        async with self.transaction() as s:
            await s.execute(stmt)
            row = (
                await s.execute(
                    select(SubscriptionRow).where(
                        SubscriptionRow.platform == platform, SubscriptionRow.chat_id == chat_id
                    )
                )
            ).scalar_one()
            return _subscription(row)

    async def ensure_chat(
        self, platform: str, chat_id: str, *, chat_kind: str, timezone: str, now: datetime | None = None
    ) -> Subscription:
        """The chat's subscription; an inactive one is made for a chat that has none (for /digest)."""
        now = now or _now()
        stmt = (
            self._insert(SUBSCRIPTIONS)
            .values(
                platform=platform, chat_id=chat_id, chat_kind=chat_kind, schedule_kind="daily",
                schedule_expr="08:00", timezone=timezone, active=False, created_at=now, updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["platform", "chat_id"])
        )
        async with self.transaction() as s:
            await s.execute(stmt)
        found = await self.subscription(platform, chat_id)
        assert found is not None
        return found

    async def count_active(self) -> int:
        """How many subscriptions are active."""
        async with self.sessions() as s:
            query = select(func.count()).select_from(SubscriptionRow).where(SubscriptionRow.active.is_(True))
            return int((await s.execute(query)).scalar_one())

    async def unsubscribe(self, platform: str, chat_id: str, now: datetime | None = None) -> bool:
        """Deactivate the chat's subscription; False when it had no active one."""
        async with self.transaction() as s:
            result = await s.execute(
                update(SubscriptionRow)
                .where(
                    SubscriptionRow.platform == platform,
                    SubscriptionRow.chat_id == chat_id,
                    SubscriptionRow.active.is_(True),
                )
                .values(active=False, updated_at=now or _now())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def subscription(self, platform: str, chat_id: str) -> Subscription | None:
        """The chat's subscription (active or not), if any."""
        async with self.sessions() as s:
            row = (
                await s.execute(
                    select(SubscriptionRow).where(
                        SubscriptionRow.platform == platform, SubscriptionRow.chat_id == chat_id
                    )
                )
            ).scalar_one_or_none()
            return _subscription(row) if row else None

    async def subscription_by_id(self, subscription_id: int) -> Subscription | None:
        """A subscription by id."""
        async with self.sessions() as s:
            row = await s.get(SubscriptionRow, subscription_id)
            return _subscription(row) if row else None

    async def active_subscriptions(self) -> list[Subscription]:
        """Every active subscription, oldest first."""
        async with self.sessions() as s:
            rows = await s.execute(
                select(SubscriptionRow).where(SubscriptionRow.active.is_(True)).order_by(SubscriptionRow.id)
            )
            return [_subscription(r) for r in rows.scalars()]

    # ---- digest state --------------------------------------------------------------------------
    async def record_versions(
        self, versions: dict[tuple[str, str], list[str]], now: datetime | None = None
    ) -> None:
        """Remember each (source_id, content_hash)'s sentence hashes; known versions are kept."""
        if not versions:
            return
        now = now or _now()
        rows = [
            dict(source_id=s, content_hash=h, sentence_hashes=json.dumps(hashes), created_at=now)
            for (s, h), hashes in versions.items()
        ]
        stmt = self._insert(SOURCE_VERSIONS).on_conflict_do_nothing(
            index_elements=["source_id", "content_hash"]
        )
        async with self.transaction() as s:
            await s.execute(stmt, rows)

    async def version_hashes(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], frozenset[str]]:
        """Sentence hashes of known versions (unknown keys are left out)."""
        if not keys:
            return {}
        table = SourceVersionRow
        cond = or_(*(and_(table.source_id == s, table.content_hash == h) for s, h in keys))
        async with self.sessions() as s:
            query = select(table.source_id, table.content_hash, table.sentence_hashes).where(cond)
            rows = await s.execute(query)
            return {(r[0], r[1]): frozenset(json.loads(r[2])) for r in rows}

    async def seen(self, subscription_id: int) -> dict[str, str]:
        """source_id -> content hash of the version in the subscriber's last digest."""
        async with self.sessions() as s:
            rows = await s.execute(
                select(DigestStateRow.source_id, DigestStateRow.content_hash).where(
                    DigestStateRow.subscription_id == subscription_id
                )
            )
            return {r[0]: r[1] for r in rows}

    async def create_digest(
        self, subscription_id: int, period: str, build: DigestBuilder, now: datetime | None = None
    ) -> int | None:
        """Insert the (subscription, period) outbox row and fill it, the subscription locked meanwhile.

        Returns the row id, or None when that period already has a row (the job fired twice, or on
        two instances). `build` gets what the subscriber saw and returns the payload (None: nothing
        new, the row is kept as 'empty' so the period is done) and what it has now seen. It runs
        before the write transaction; only when another digest of the subscription committed in
        between is it run again, inside, so two digests never both claim the same news.
        """
        now = now or _now()
        if await self.has_period(subscription_id, period):
            return None
        seen = await self.seen(subscription_id)
        payload, now_seen = await build(seen)
        stmt = (
            self._insert(OUTBOX)
            .values(
                subscription_id=subscription_id, period=period, status=PENDING, attempts=0,
                next_attempt_at=now, created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["subscription_id", "period"])
            .returning(OUTBOX.c.id)
        )
        async with self.transaction() as s:
            if self.dialect == "postgresql":  # one digest of a subscription at a time (SQLite: one writer)
                await s.execute(
                    select(SubscriptionRow.id)
                    .where(SubscriptionRow.id == subscription_id)
                    .with_for_update(key_share=True)  # FOR NO KEY UPDATE: outbox inserts still pass
                )
            row_id = (await s.execute(stmt)).scalar_one_or_none()
            if row_id is None:
                return None
            current = {
                r[0]: r[1]
                for r in await s.execute(
                    select(DigestStateRow.source_id, DigestStateRow.content_hash).where(
                        DigestStateRow.subscription_id == subscription_id
                    )
                )
            }
            if current != seen:  # another digest of this subscription got in first
                payload, now_seen = await build(current)
            if payload is not None:
                await s.execute(
                    delete(DigestStateRow).where(DigestStateRow.subscription_id == subscription_id)
                )
                if now_seen:
                    await s.execute(
                        DIGEST_STATE.insert(),
                        [
                            dict(subscription_id=subscription_id, source_id=k, content_hash=v, updated_at=now)
                            for k, v in now_seen.items()
                        ],
                    )
            await s.execute(
                update(OutboxRow)
                .where(OutboxRow.id == row_id)
                .values(
                    status=PENDING if payload is not None else EMPTY,
                    payload=json.dumps(payload, ensure_ascii=False) if payload is not None else None,
                )
            )
            return int(row_id)

    async def history(self, subscription_id: int, limit: int = 10) -> list[HistoryEntry]:
        """The subscription's latest outbox rows, newest first."""
        async with self.sessions() as s:
            rows = await s.execute(
                select(OutboxRow)
                .where(OutboxRow.subscription_id == subscription_id)
                .order_by(OutboxRow.created_at.desc(), OutboxRow.id.desc())
                .limit(limit)
            )
            return [
                HistoryEntry(r.period, r.status, r.attempts, r.created_at, r.sent_at, r.last_error)
                for r in rows.scalars()
            ]

    async def has_period(self, subscription_id: int, period: str) -> bool:
        """Whether an outbox row exists for (subscription, period)."""
        async with self.sessions() as s:
            found = await s.execute(
                select(OutboxRow.id).where(
                    OutboxRow.subscription_id == subscription_id, OutboxRow.period == period
                )
            )
            return found.first() is not None

    # ---- outbox --------------------------------------------------------------------------------
    async def claim(
        self, worker: str, limit: int, lease: float, now: datetime | None = None
    ) -> list[OutboxItem]:
        """Claim up to `limit` due rows for `worker` until now + lease (SKIP LOCKED on PostgreSQL).

        Rows queued before their subscription ended (unsubscribed, or the chat is gone) are closed as
        'cancelled' instead; a /digest of a chat without an active subscription is still sent.
        """
        now = now or _now()
        until = now + timedelta(seconds=lease)
        table = OUTBOX
        due = (
            select(table.c.id)
            .where(
                or_(
                    and_(table.c.status == PENDING, table.c.next_attempt_at <= now),
                    and_(table.c.status == SENDING, table.c.claimed_until < now),
                )
            )
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(table)
            .where(table.c.id.in_(due.scalar_subquery()))
            .values(status=SENDING, claimed_by=worker, claimed_until=until)
            .returning(table.c.id)
        )
        async with self.transaction() as s:
            ids = [r[0] for r in await s.execute(stmt)]
            if not ids:
                return []
            rows = await s.execute(
                select(OutboxRow, SubscriptionRow)
                .join(SubscriptionRow, SubscriptionRow.id == OutboxRow.subscription_id)
                .where(OutboxRow.id.in_(ids))
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
            )
            items, cancelled = [], []
            for o, sub in rows:
                if not sub.active and o.created_at < sub.updated_at:  # ended after this was queued
                    cancelled.append(o.id)
                    continue
                items.append(
                    OutboxItem(
                        o.id, o.subscription_id, o.period, json.loads(o.payload) if o.payload else None,
                        o.attempts, sub.platform, sub.chat_id, sub.chat_kind, worker, until,
                        o.created_at,
                    )
                )
            if cancelled:
                await s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id.in_(cancelled))
                    .values(status=CANCELLED, claimed_until=None)
                )
            return items

    async def mark_sent(self, item: OutboxItem, now: datetime | None = None) -> bool:
        """The message went out (False: the claim was lost, nothing written)."""
        return await self._set(item, status=SENT, sent_at=now or _now(), claimed_until=None, last_error=None)

    async def defer(
        self, item: OutboxItem, until: datetime, error: str | None = None, attempt: bool = False
    ) -> bool:
        """Back to pending until `until` (rate limit, retry-after, or a retry counting an attempt)."""
        values: dict[str, Any] = dict(status=PENDING, next_attempt_at=until, claimed_until=None)
        if error is not None:
            values["last_error"] = error[:2000]
        if attempt:
            values["attempts"] = OUTBOX.c.attempts + 1
        return await self._set(item, **values)

    async def mark_failed(self, item: OutboxItem, error: str, attempt: bool = True) -> bool:
        """Give up on a row and record why."""
        values: dict[str, Any] = dict(status=FAILED, last_error=error[:2000], claimed_until=None)
        if attempt:
            values["attempts"] = OUTBOX.c.attempts + 1
        return await self._set(item, **values)

    async def mark_gone(self, item: OutboxItem, error: str, now: datetime | None = None) -> bool:
        """The recipient blocked the bot or was deleted: the row is closed, the subscription inactive."""
        async with self.transaction() as s:
            result = await s.execute(
                update(OutboxRow)
                .where(*_held(item))
                .values(status=GONE, last_error=error[:2000], claimed_until=None)
            )
            # the chat is gone whoever holds the row now
            await s.execute(
                update(SubscriptionRow)
                .where(SubscriptionRow.id == item.subscription_id)
                .values(active=False, updated_at=now or _now())
            )
        return _applied(item, result.rowcount)  # type: ignore[attr-defined]

    async def release(self, items: list[OutboxItem]) -> int:
        """Return claimed rows that were not sent to pending, each only if still under its claim."""
        released = 0
        async with self.engine.begin() as conn:
            for item in items:
                result = await conn.execute(
                    update(OUTBOX).where(*_held(item)).values(status=PENDING, claimed_until=None)
                )
                released += result.rowcount
        return released

    async def _set(self, item: OutboxItem, **values: Any) -> bool:
        async with self.engine.begin() as conn:  # Core, not the ORM: this runs once per message
            result = await conn.execute(update(OUTBOX).where(*_held(item)).values(**values))
        return _applied(item, result.rowcount)

    async def outbox_counts(self) -> dict[str, int]:
        """Rows per status."""
        async with self.sessions() as s:
            rows = await s.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status))
            return {r[0]: int(r[1]) for r in rows}

    async def next_due(self) -> datetime | None:
        """When the earliest pending row becomes due (None: nothing pending)."""
        async with self.sessions() as s:
            pending = select(func.min(OutboxRow.next_attempt_at)).where(OutboxRow.status == PENDING)
            leased = select(func.min(OutboxRow.claimed_until)).where(OutboxRow.status == SENDING)
            a = (await s.execute(pending)).scalar_one_or_none()
            b = (await s.execute(leased)).scalar_one_or_none()
            times = [t for t in (a, b) if t is not None]
            return min(times) if times else None


def _held(item: OutboxItem) -> tuple[Any, ...]:
    """The row is still ours: sending, under this very claim (not re-claimed after our lease)."""
    table = OUTBOX
    return (
        table.c.id == item.id,
        table.c.status == SENDING,
        table.c.claimed_by == item.claimed_by,
        table.c.claimed_until == item.claimed_until,
    )


def _applied(item: OutboxItem, rowcount: int) -> bool:
    if rowcount:
        return True
    log.info("outbox row %d: claim by %s lost (lease over, re-claimed); write ignored", item.id, item.claimed_by)
    return False


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
