"""Helpers for the digest tests: a fake embedder, clock and sender, and the two stores to run against."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from bot.delivery import Target
from bot.digest import Digest
from bot.index import Index, build
from bot.sources import Document
from bot.store import Store

PG_ENV = "BRIEFBOT_TEST_POSTGRES_URL"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


class HashEmbedder:
    """A tiny deterministic Embedder: hashed word counts, so shared words mean similar vectors."""

    name = "hash-test-v1"

    def embed(self, texts: list[str]) -> np.ndarray:
        """Bag-of-words vectors of dimension 512, unit length."""
        out = np.zeros((len(texts), 512), dtype=np.float32)
        for row, body in enumerate(texts):
            for word in re.findall(r"\w+", body.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest()[:6], 16) % 512] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def fake_index(*documents: Document) -> Index:
    """An Index over documents with the hash embedder (no model, no cache)."""
    return build(list(documents), HashEmbedder())


def document(doc_id: str, body: str, title: str | None = None) -> Document:
    """A German-less test document."""
    return Document(doc_id, title or doc_id.title(), body, "en", f"test:{doc_id}")


@dataclass
class FakeClock:
    """A clock that moves only when told."""

    current: datetime = field(default_factory=lambda: datetime(2026, 3, 1, tzinfo=UTC))

    def now(self) -> datetime:
        """The fake now."""
        return self.current

    def advance(self, **delta: float) -> datetime:
        """Move forward by a timedelta's keyword arguments."""
        self.current += timedelta(**delta)
        return self.current


@dataclass
class RecordingSender:
    """A Sender that records what it sent; `failures[chat_id]` lists exceptions to raise first."""

    sent: list[tuple[Target, Digest, float]] = field(default_factory=list)
    attempts: list[tuple[str, float]] = field(default_factory=list)
    failures: dict[str, list[BaseException]] = field(default_factory=dict)
    delay: float = 0.0

    async def send(self, target: Target, message: Digest) -> None:
        """Record the attempt; raise the next scripted failure or record the message."""
        loop = asyncio.get_running_loop()
        self.attempts.append((target.chat_id, loop.time()))
        if self.delay:
            await asyncio.sleep(self.delay)
        queued = self.failures.get(target.chat_id)
        if queued:
            raise queued.pop(0)
        self.sent.append((target, message, loop.time()))

    def chats(self) -> list[str]:
        """The chat ids sent to, in order."""
        return [t.chat_id for t, _, _ in self.sent]


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on a loop of its own (fixtures set up outside any test's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_plain_dsn(url), timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_pg_database() -> str:
    """A fresh database on the server named by BRIEFBOT_TEST_POSTGRES_URL (skip if unset/unreachable)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)")
    name = f"briefbot_test_{uuid.uuid4().hex[:10]}"
    try:
        _run(_admin(base, f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # refused, timed out, auth: asyncpg raises many kinds
        pytest.skip(f"PostgreSQL at {PG_ENV} is unreachable: {type(exc).__name__}: {exc}")
    return _with_database(base, name)


def drop_pg_database(url: str) -> None:
    """Drop a database made by create_pg_database."""
    base = os.environ[PG_ENV]
    name = url.rpartition("/")[2]
    _run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def clear(store: Store) -> None:
    """Empty every table (PostgreSQL databases are shared by a module's tests)."""
    async with store.engine.begin() as conn:
        for table in ("outbox", "digest_state", "source_versions", "subscriptions"):
            await conn.execute(text(f"DELETE FROM {table}"))


@asynccontextmanager
async def open_store(backend: str, tmp_path: Path, pg_url: str | None) -> AsyncIterator[Store]:
    """A migrated, empty store on SQLite (a file in tmp_path) or the test PostgreSQL database."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'briefbot.sqlite3'}"
    else:
        assert pg_url is not None
        url = pg_url
    store = await Store.open(url)
    try:
        await clear(store)
        yield store
    finally:
        await store.close()


def pg_fixture_url(request: pytest.FixtureRequest) -> str | None:
    """For a store fixture: the module's PostgreSQL URL when the backend is postgresql."""
    if request.param != "postgresql":
        return None
    return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]
