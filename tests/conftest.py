"""Shared fixtures: an isolated environment for every test, and one real embedder per session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.briefing import Briefing
from bot.config import Settings
from bot.embed import UseEmbedder
from bot.store import Store
from tests.digest_support import BACKENDS, create_pg_database, drop_pg_database, open_store, pg_fixture_url

ROOT = Path(__file__).resolve().parent.parent
SEED_MANIFEST = ROOT / "seeds" / "sources.toml"
SEED_TEXT = (ROOT / "seeds" / "000_0e92ea3f563e72bf.txt").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No test sees the developer's env, .env file or data dir."""
    import os

    for name in list(os.environ):
        if name.startswith(("BRIEFBOT_", "TELEGRAM_", "DISCORD_", "OPENAI_")) or name == "DATABASE_URL":
            if name != "BRIEFBOT_TEST_POSTGRES_URL":
                monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("BRIEFBOT_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    return data_dir


@pytest.fixture(scope="session")
def embedder() -> UseEmbedder:
    """The real offline USE embedder, loaded once per test session."""
    model = UseEmbedder()
    model.embed(["warm-up"])
    return model


@pytest.fixture(scope="session")
def seed_briefing(embedder: UseEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Briefing:
    """A Briefing over the seed article; shared, so tests must not edit its sources."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("seed-data"), sources=SEED_MANIFEST)
    briefing = Briefing(settings, embedder)
    briefing.reload()
    return briefing


@pytest.fixture
def briefing(embedder: UseEmbedder, tmp_path: Path) -> Briefing:
    """A Briefing of its own (over the seeds) that a test may change."""
    settings = Settings(data_dir=tmp_path / "own-data")
    own = Briefing(settings, embedder)
    own.reload()
    return own


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test module, dropped afterwards (skips without a server)."""
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened Store on each backend: SQLite in tmp_path, and PostgreSQL when configured."""
    async with open_store(request.param, tmp_path, pg_fixture_url(request)) as opened:
        yield opened
