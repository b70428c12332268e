"""Answer quality on a question set: hit@k, MRR, abstention, quote fidelity and latency."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.answer import Answer
from bot.errors import InputError
from bot.index import Index


@dataclass(frozen=True, slots=True)
class Case:
    """One line of a question set: an empty gold list means the sources do not answer it."""

    id: str
    lang: str
    question: str
    gold: list[str]


@dataclass
class Report:
    """Aggregated figures of an evaluation run, plus per-case ranks for inspection."""

    answerable: int = 0
    unanswerable: int = 0
    hit1: int = 0
    hit3: int = 0
    reciprocal_ranks: list[float] = field(default_factory=list)
    abstained_right: int = 0
    abstained_wrong: int = 0  # answerable questions the bot declined
    quotes: int = 0
    exact_quotes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        """The headline numbers."""
        lat = sorted(self.latencies_ms) or [0.0]
        return {
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
            "hit@1": _ratio(self.hit1, self.answerable),
            "hit@3": _ratio(self.hit3, self.answerable),
            "mrr": round(statistics.fmean(self.reciprocal_ranks), 4) if self.reciprocal_ranks else 0.0,
            "abstention_accuracy": _ratio(self.abstained_right, self.unanswerable),
            "false_abstentions": self.abstained_wrong,
            "quote_fidelity": _ratio(self.exact_quotes, self.quotes) if self.quotes else 1.0,
            "latency_p50_ms": round(_percentile(lat, 50), 2),
            "latency_p95_ms": round(_percentile(lat, 95), 2),
        }


def read_cases(path: Path) -> Iterator[Case]:
    """Read a JSONL question set."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield Case(str(row["id"]), str(row.get("lang", "")), str(row["question"]), list(row["gold"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{number}: not a question line ({exc})") from exc


def evaluate(cases: list[Case], ask: Callable[[str], Answer], index: Index) -> Report:
    """Ask every case and score the answers against the gold fragments."""
    report = Report()
    for case in cases:
        started = time.perf_counter()
        answer = ask(case.question)
        report.latencies_ms.append((time.perf_counter() - started) * 1000)
        for quote in answer.quotes:
            report.quotes += 1
            doc = next((d for d in index.documents if d.id == quote.source), None)
            report.exact_quotes += doc is not None and doc.text[quote.start : quote.end] == quote.text
        if not case.gold:
            report.unanswerable += 1
            report.abstained_right += not answer.answered
            if answer.answered:
                report.misses.append(case.id)
            continue
        report.answerable += 1
        report.abstained_wrong += not answer.answered
        rank = next(
            (i for i, q in enumerate(answer.quotes, 1) if any(g in q.text for g in case.gold)), None
        )
        report.hit1 += rank == 1
        report.hit3 += rank is not None and rank <= 3
        report.reciprocal_ranks.append(1.0 / rank if rank else 0.0)
        if rank is None or rank > 3:
            report.misses.append(case.id)
    return report


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _percentile(values: list[float], pct: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]
