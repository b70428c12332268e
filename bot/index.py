"""Hybrid retrieval over sentences: dense multilingual embeddings fused with lexical evidence.

Every sentence of every document is a retrieval unit. Its dense score blends the question's cosine
similarity to the sentence and to its whole paragraph (context a lone sentence lacks, such as who
"he" is). Lexical evidence (BM25 on stems, with names matched across scripts) is added as a bounded
bonus, scaled by how much of the question the documents' vocabulary covers: a German question gets
full lexical weight, an English question about a German text mostly relies on names and cognates.
Fusing scores rather than ranks keeps the dense margin: a naive rank fusion lets BM25's noise on a
cross-lingual question outvote a clear dense winner.

Embeddings are cached per document under its content hash (and the embedder's name), so a restart or
a reload embeds only documents whose text changed.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.embed import Embedder, normalise
from bot.lexical import LexicalIndex
from bot.segment import Paragraph, paragraphs
from bot.sources import Document

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (sentences done, sentences total)

DENSE_SENTENCE_WEIGHT = 0.65  # the rest goes to the paragraph's similarity
NEIGHBOUR_WEIGHT = 0.3  # share of each neighbouring sentence mixed into a sentence's vector
LEXICAL_WEIGHT = 0.15
LEXICAL_CAP = 2.0  # lexical evidence saturates at about two rare words matched


@dataclass(frozen=True, slots=True)
class Unit:
    """One sentence in the index, pointing back into its document."""

    doc: int  # position in Index.documents
    paragraph: int  # 1-based paragraph number
    sentence: int  # position within the paragraph
    start: int
    end: int
    is_question: bool


@dataclass(frozen=True, slots=True)
class Hit:
    """A scored unit; `score` is what ranks, the parts explain it."""

    unit: int
    score: float
    dense: float
    lexical: float
    cosine: float  # the question's similarity to this sentence alone


class Index:
    """Sentences of all documents, their embeddings and a lexical index."""

    def __init__(
        self,
        documents: Sequence[Document],
        units: list[Unit],
        paragraphs_of: list[list[Paragraph]],
        sentence_vectors: np.ndarray,
        paragraph_vectors: np.ndarray,
        paragraph_row: np.ndarray,
        lexical: LexicalIndex,
    ) -> None:
        self.documents = list(documents)
        self.units = units
        self.paragraphs_of = paragraphs_of
        self.sentence_vectors = sentence_vectors
        self.paragraph_vectors = paragraph_vectors
        self.paragraph_row = paragraph_row  # unit -> row of paragraph_vectors
        self.lexical = lexical
        self.context_vectors = _with_context(units, sentence_vectors)

    def __len__(self) -> int:
        return len(self.units)

    def text(self, unit: int) -> str:
        """The exact text of a unit."""
        u = self.units[unit]
        return self.documents[u.doc].text[u.start : u.end]

    def search(self, question_vector: np.ndarray, question: str) -> list[Hit]:
        """Score every unit for a question; best first."""
        if not self.units:
            return []
        cosine = self.sentence_vectors @ question_vector
        sent = self.context_vectors @ question_vector
        para = (self.paragraph_vectors @ question_vector)[self.paragraph_row]
        dense = DENSE_SENTENCE_WEIGHT * sent + (1 - DENSE_SENTENCE_WEIGHT) * para
        lexical = np.minimum(self.lexical.scores(question), LEXICAL_CAP) / LEXICAL_CAP
        score = dense + LEXICAL_WEIGHT * lexical
        order = np.argsort(-score, kind="stable")
        return [
            Hit(int(i), float(score[i]), float(dense[i]), float(lexical[i]), float(cosine[i])) for i in order
        ]


def build(
    documents: Sequence[Document],
    embedder: Embedder,
    cache_dir: Path | None = None,
    progress: ProgressFn | None = None,
) -> Index:
    """Segment and embed documents (reusing cached embeddings) into a searchable Index."""
    units: list[Unit] = []
    sentence_blocks: list[np.ndarray] = []
    paragraph_blocks: list[np.ndarray] = []
    paragraph_row: list[int] = []
    unit_texts: list[str] = []
    unit_langs: list[str] = []
    paragraphs_of = [paragraphs(doc.text) for doc in documents]
    total = sum(len(p.sentences) for paras in paragraphs_of for p in paras)
    done = 0
    row = 0
    for d, (doc, paras) in enumerate(zip(documents, paragraphs_of, strict=True)):
        sent_texts = [s.text for p in paras for s in p.sentences]
        sent_vecs = _load_cached(cache_dir, doc, embedder, len(sent_texts))
        if sent_vecs is None:
            sent_vecs = _embed_with_progress(embedder, sent_texts, progress, done, total)
            _save_cached(cache_dir, doc, embedder, sent_vecs)
        para_vecs = _paragraph_vectors(paras, sent_vecs)
        done += len(sent_texts)
        if progress:
            progress(done, total)
        sentence_blocks.append(sent_vecs)
        paragraph_blocks.append(para_vecs)
        for p_index, para in enumerate(paras):
            for s in para.sentences:
                units.append(Unit(d, para.number, s.index, s.start, s.end, s.is_question))
                paragraph_row.append(row + p_index)
                unit_texts.append(s.text)
                unit_langs.append(doc.lang)
        row += len(paras)
    dim = 512
    return Index(
        documents,
        units,
        paragraphs_of,
        np.vstack(sentence_blocks) if sentence_blocks else np.zeros((0, dim), np.float32),
        np.vstack(paragraph_blocks) if paragraph_blocks else np.zeros((0, dim), np.float32),
        np.asarray(paragraph_row, dtype=np.int64),
        LexicalIndex.build(unit_texts, unit_langs),
    )


def _with_context(units: list[Unit], vectors: np.ndarray) -> np.ndarray:
    """Each sentence's vector with a share of its paragraph neighbours' (who 'he' is, what 'this' was)."""
    out = vectors.copy()
    for i, unit in enumerate(units):
        for j in (i - 1, i + 1):
            if 0 <= j < len(units) and units[j].doc == unit.doc and units[j].paragraph == unit.paragraph:
                out[i] += NEIGHBOUR_WEIGHT * vectors[j]
    return normalise(out) if len(units) else out


def _paragraph_vectors(paras: list[Paragraph], sent_vecs: np.ndarray) -> np.ndarray:
    """A paragraph's vector: the normalised mean of its sentences' (as good as embedding it whole)."""
    out = np.zeros((len(paras), sent_vecs.shape[1] if sent_vecs.ndim == 2 else 512), dtype=np.float32)
    row = 0
    for p_index, para in enumerate(paras):
        count = len(para.sentences)
        out[p_index] = sent_vecs[row : row + count].sum(axis=0)
        row += count
    return normalise(out)


def _embed_with_progress(
    embedder: Embedder, texts: list[str], progress: ProgressFn | None, done: int, total: int
) -> np.ndarray:
    if progress is None or len(texts) <= 512:
        return embedder.embed(texts)
    blocks = []
    for i in range(0, len(texts), 512):
        blocks.append(embedder.embed(texts[i : i + 512]))
        progress(done + min(i + 512, len(texts)), total)
    return np.vstack(blocks)


def _cache_path(cache_dir: Path, doc: Document, embedder: Embedder) -> Path:
    return cache_dir / f"{doc.content_hash}.{embedder.name}.npz"


def indexed_at(cache_dir: Path, doc: Document, embedder: Embedder) -> float | None:
    """When this version of the document was embedded (unix time), if it is in the cache."""
    try:
        return _cache_path(cache_dir, doc, embedder).stat().st_mtime
    except OSError:
        return None


def _load_cached(cache_dir: Path | None, doc: Document, embedder: Embedder, n_sent: int) -> np.ndarray | None:
    if cache_dir is None:
        return None
    path = _cache_path(cache_dir, doc, embedder)
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as archive, archive.open("sentences.npy") as member:
            sent = np.lib.format.read_array(member, allow_pickle=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring a damaged embedding cache %s: %s", path.name, exc)
        return None
    dim = getattr(embedder, "dim", None)
    if sent.ndim != 2 or sent.shape[0] != n_sent or (dim is not None and sent.shape[1] != dim):
        return None  # written for another segmentation or model: embed again
    if not np.issubdtype(sent.dtype, np.floating) or not np.isfinite(sent).all():
        log.warning("ignoring a damaged embedding cache %s: not finite float vectors", path.name)
        return None
    return sent.astype(np.float32)


def _save_cached(cache_dir: Path | None, doc: Document, embedder: Embedder, sent: np.ndarray) -> None:
    if cache_dir is None:
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _cache_path(cache_dir, doc, embedder)
    handle, name = tempfile.mkstemp(dir=cache_dir, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, sentences=sent)
        os.replace(name, path)  # atomic; concurrent writers of the same content both succeed
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
