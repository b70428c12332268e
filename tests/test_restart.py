"""Restart safety: a worker delivering 1,000 digests is SIGKILLed half way and started again.

Every subscriber must get its digest for the period, and a second copy is allowed only for sends in
flight at the kill: at most the sender's concurrency (Telegram has no idempotency key).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.digest_support import BACKENDS, create_pg_database, drop_pg_database

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIBERS = 1000
CONCURRENCY = 8
RATE = 150.0  # messages/s, the fake server's limit and the worker's


def get(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def telegram_server() -> Iterator[str]:
    """The fake Bot API server in a process of its own; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.telegram_server", "--port", "0", "--rate-limit", str(RATE)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'briefbot.sqlite3'}"
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def worker(db: str, api: str) -> subprocess.Popen[str]:
    args = [
        sys.executable, "-m", "tests.digest_worker", "--db", db, "--api", api,
        "--subscribers", str(SUBSCRIBERS), "--rate", str(RATE), "--concurrency", str(CONCURRENCY),
        "--lease", "3",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_a_killed_worker_restarted_delivers_everything_with_bounded_duplicates(
    telegram_server: str, database: str
) -> None:
    db = database
    first = worker(db, telegram_server)
    deadline = time.monotonic() + 60
    sent = 0
    while time.monotonic() < deadline and first.poll() is None:
        sent = get(telegram_server, "/_test/stats")["sent"]
        if sent >= SUBSCRIBERS // 2:
            break
        time.sleep(0.02)
    assert first.poll() is None, first.communicate()
    first.send_signal(signal.SIGKILL)
    out, err = first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL
    at_kill = get(telegram_server, "/_test/stats")["sent"]
    assert SUBSCRIBERS // 2 <= at_kill < SUBSCRIBERS, "the kill should land half way"

    second = worker(db, telegram_server)
    out, err = second.communicate(timeout=90)
    assert second.returncode == 0, err[-3000:]
    assert "ENQUEUED 0" in out  # the period's rows existed: the restart enqueued nothing again
    report = json.loads(out.split("DONE ", 1)[1])
    assert report["outbox"] == {"sent": SUBSCRIBERS}

    messages = get(telegram_server, "/_test/sent?since=0")["messages"]
    per_chat = Counter(m["chat_id"] for m in messages)
    assert set(per_chat) == set(range(1, SUBSCRIBERS + 1))  # nobody lost
    duplicates = sum(n - 1 for n in per_chat.values())
    assert duplicates <= CONCURRENCY, f"{duplicates} duplicates, bound {CONCURRENCY}"
    assert all("City council" in m["text"] for m in messages)
    print(f"\nkilled after {at_kill} sent; duplicates after restart: {duplicates} (bound {CONCURRENCY})")
