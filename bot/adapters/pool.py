"""The worker threads every chat adapter asks the core on: CPU-bound questions off the event loop."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from bot.answer import Answer
from bot.briefing import Briefing


class AskPool:
    """Runs the core's CPU-bound `ask` on a few worker threads, so the event loop stays free.

    About one worker per two CPUs: each question is embedded with two BLAS threads, and more
    concurrent questions only contend for the cores (measured: 1-2 workers answer about twice as
    many questions per second as 6 on a 2-CPU machine). Admin reloads do not queue behind them.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, (os.cpu_count() or 2) // 2)
        self._executor: ThreadPoolExecutor | None = None

    async def ask(self, briefing: Briefing, question: str) -> Answer:
        """briefing.ask(question) on a worker thread."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="briefbot-ask")
        return await asyncio.get_running_loop().run_in_executor(self._executor, briefing.ask, question)

    async def close(self) -> None:
        """Stop the workers (at shutdown)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
