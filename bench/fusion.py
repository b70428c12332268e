"""Ranking ablation: hit@3 of each retrieval signal alone and fused (run by hand).

Compares, on the answerable questions of each question set, with the same passage selection and
abstention switched off (ranking only):
  dense-sentence  cosine of the question and the sentence alone (the simple dense baseline)
  dense           the sentence blended with its neighbours and its paragraph
  bm25            the lexical evidence alone (stems plus cross-script name matching)
  rrf             reciprocal-rank fusion (k=60) of dense and bm25
  hybrid          Briefbot's score fusion (what `briefbot ask` uses)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import answer  # noqa: E402
from bot.embed import UseEmbedder  # noqa: E402
from bot.index import Hit, Index, build  # noqa: E402
from bot.sources import default_manifest, load, read_manifest  # noqa: E402

SETS = {"qa_dev": ROOT.parent / "shared" / "eval" / "qa_dev.jsonl", "qa_more": ROOT / "bench" / "qa_more.jsonl"}
KINDS = ("dense-sentence", "dense", "bm25", "rrf", "hybrid")


def ranked(index: Index, kind: str, vector: np.ndarray, question: str) -> list[Hit]:
    """The hits as one signal (or a fusion) would rank them."""
    hits = index.search(vector, question)
    if kind == "hybrid":
        return hits
    cosine, dense = np.zeros(len(index)), np.zeros(len(index))
    for hit in hits:
        cosine[hit.unit], dense[hit.unit] = hit.cosine, hit.dense
    lexical = index.lexical.scores(question)
    if kind == "dense-sentence":
        score = cosine
    elif kind == "dense":
        score = dense
    elif kind == "bm25":
        score = lexical
    else:
        rank_dense = np.argsort(np.argsort(-dense))
        rank_lexical = np.argsort(np.argsort(-lexical))
        score = 1 / (60 + rank_dense) + 1 / (60 + rank_lexical)
    return [Hit(int(i), float(score[i]), float(score[i]), 0.0, float(cosine[i])) for i in np.argsort(-score)]


def main() -> None:
    """Print hit@3 per question set and signal."""
    embedder = UseEmbedder()
    index = build([load(spec) for spec in read_manifest(default_manifest())], embedder)
    answer.ABSTAIN_BELOW = -1.0  # rank only
    for name, path in SETS.items():
        if not path.exists():
            continue
        cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        cases = [c for c in cases if c["gold"]]
        vectors = embedder.embed([c["question"] for c in cases])
        row = {}
        for kind in KINDS:
            hits = 0
            for case, vector in zip(cases, vectors, strict=True):
                result = answer.extract(index, ranked(index, kind, vector, case["question"]), case["question"])
                hits += any(any(g in q.text for g in case["gold"]) for q in result.quotes[:3])
            row[kind] = round(hits / len(cases), 3)
        print(json.dumps({"set": name, "answerable": len(cases), "hit@3": row}))


if __name__ == "__main__":
    main()
