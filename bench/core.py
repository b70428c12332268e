"""Benchmarks of the question-answering core (run by hand: `make bench` or `python bench/core.py`).

Measures, on this machine:
- warm answer latency (p50/p95) over the public and extra question sets on the seed index;
- cold `briefbot ask` wall time (a fresh process: imports, model load, cached index, one answer);
- index throughput on a synthetic corpus (default 20,000 sentences) against the embedder's own
  batch throughput on the same sentences (the ratio is what indexing adds on top of embedding);
- peak resident memory of this process.
Figures are medians of repeated runs; the machine is shared, so read ratios rather than absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.briefing import Briefing  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.embed import UseEmbedder  # noqa: E402
from bot.index import build  # noqa: E402
from bot.segment import sentences  # noqa: E402
from bot.sources import Document  # noqa: E402

QUESTION_SETS = [ROOT.parent / "shared" / "eval" / "qa_dev.jsonl", ROOT / "bench" / "qa_more.jsonl"]


def pct(values: list[float], p: int) -> float:
    """The p-th percentile."""
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if len(values) > 1 else values[0]


def warm_latency(embedder: UseEmbedder, rounds: int) -> dict[str, float]:
    """Per-question latency of Briefing.ask once the model and index are loaded."""
    questions = [
        json.loads(line)["question"]
        for path in QUESTION_SETS
        if path.exists()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        briefing = Briefing(Settings(data_dir=Path(tmp)), embedder)
        briefing.reload()
        briefing.ask("warm-up")
        samples = []
        for _ in range(rounds):
            for question in questions:
                started = time.perf_counter()
                briefing.ask(question)
                samples.append((time.perf_counter() - started) * 1000)
    return {"questions": len(questions) * rounds, "p50_ms": pct(samples, 50), "p95_ms": pct(samples, 95)}


def cold_ask(runs: int) -> dict[str, float]:
    """Wall time of `briefbot ask` in a fresh process, with the index already cached on disk."""
    exe = Path(sys.executable).parent / "briefbot"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BRIEFBOT_DATA_DIR": tmp}
        subprocess.run([exe, "index"], env=env, check=True, capture_output=True)  # fill the cache
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([exe, "ask", "why did Putin call Tokayev?"], env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    return {"runs": runs, "median_s": statistics.median(times), "max_s": max(times)}


def synthetic_corpus(n_sentences: int, seed: int = 7) -> list[Document]:
    """Documents of shuffled seed-article words: realistic lengths and vocabulary, no meaning."""
    text = (ROOT / "seeds" / "000_0e92ea3f563e72bf.txt").read_text(encoding="utf-8")
    lengths = [len(s.text.split()) for s in sentences(text)]
    vocab = [w.strip(".,;:?!„“\"()") for w in text.split()]
    vocab = [w for w in vocab if w]
    rng = random.Random(seed)
    docs, made = [], 0
    while made < n_sentences:
        paragraphs = []
        for _ in range(20):
            sents = []
            for _ in range(rng.randint(2, 5)):
                words = rng.choices(vocab, k=max(4, rng.choice(lengths)))
                sents.append(" ".join(words).capitalize() + ".")
            made += len(sents)
            paragraphs.append(" ".join(sents))
        docs.append(
            Document(
                id=f"synthetic-{len(docs)}", title="synthetic", text="\n\n".join(paragraphs), lang="de", origin="bench"
            )
        )
    return docs


def throughput(embedder: UseEmbedder, n_sentences: int, repeats: int) -> dict[str, float]:
    """Index build vs. embedding alone, on the same sentences (sentences/s, medians)."""
    docs = synthetic_corpus(n_sentences)
    texts = [s.text for d in docs for s in sentences(d.text)]
    embed_times, build_times = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.embed(texts)
        embed_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        build(docs, embedder, cache_dir=None)
        build_times.append(time.perf_counter() - started)
    embed_rate = len(texts) / statistics.median(embed_times)
    build_rate = len(texts) / statistics.median(build_times)
    return {
        "sentences": len(texts),
        "embedder_sentences_per_s": embed_rate,
        "index_sentences_per_s": build_rate,
        "ratio": build_rate / embed_rate,
    }


def main() -> None:
    """Run the benchmarks and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    embedder = UseEmbedder()
    results = {
        "warm_latency": warm_latency(embedder, args.rounds),
        "cold_ask": cold_ask(args.cold_runs),
        "index_throughput": throughput(embedder, args.sentences, args.repeats),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(_rounded(results), indent=2))


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


if __name__ == "__main__":
    main()
