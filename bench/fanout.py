"""Fan-out benchmark: N subscribers' digests through the fake Telegram server limited to R messages/s.

    .venv/bin/python bench/fanout.py --subscribers 10000 --rate 100 [--db postgresql+asyncpg://...]

Starts the fake Bot API server (`tests.fakes.telegram_server --rate-limit R`) and one digest worker
(`tests.digest_worker`: scheduler catch-up enqueues one outbox row per subscriber, then the drainer
sends them with the same rate R configured). From what the server recorded it reports the achieved
delivery rate as a share of R (first to last message), duplicates, losses and 429 answers, and
appends the figures to bench/fanout_results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "fanout_results.jsonl"


def get(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}", timeout=60) as response:
        return json.loads(response.read())


def run(subscribers: int, rate: float, concurrency: int, db: str | None) -> dict[str, Any]:
    """One benchmark run; returns the figures."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.telegram_server", "--port", "0", "--rate-limit", str(rate)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        base = server.stdout.readline().split()[1]
        with tempfile.TemporaryDirectory() as tmp:
            url = db or f"sqlite+aiosqlite:///{Path(tmp) / 'fanout.sqlite3'}"
            began = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "tests.digest_worker", "--db", url, "--api", base,
                 "--subscribers", str(subscribers), "--rate", str(rate), "--concurrency", str(concurrency),
                 "--lease", "30"],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )
            wall = time.monotonic() - began
        report = json.loads(done.stdout.split("DONE ", 1)[1])
        messages = get(base, "/_test/sent?since=0")["messages"]
        stats = get(base, "/_test/stats")
    finally:
        server.terminate()
        server.wait(timeout=10)
    per_chat = Counter(m["chat_id"] for m in messages)
    stamps = sorted(m["date"] for m in messages)
    window = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    achieved = (len(stamps) - 1) / window if window else 0.0
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "store": (db or "sqlite").split(":", 1)[0],
        "subscribers": subscribers,
        "limit_per_s": rate,
        "concurrency": concurrency,
        "messages": len(messages),
        "delivery_seconds": round(window, 2),
        "achieved_per_s": round(achieved, 2),
        "share_of_limit": round(achieved / rate, 4),
        "duplicates": sum(n - 1 for n in per_chat.values()),
        "losses": subscribers - len(set(per_chat) & set(range(1, subscribers + 1))),
        "http_429": stats["rate_limited"],
        "worker_seconds_total": round(wall, 1),
        "outbox": report["outbox"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="N: the server's limit, messages/s")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    figures = run(args.subscribers, args.rate, args.concurrency, args.db)
    print(json.dumps(figures, indent=2))
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
