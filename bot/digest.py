"""Extractive digests: what is new or changed in the sources since a subscriber's previous digest.

A subscriber's state is, per source, the content hash of the version its last digest covered; each
version's sentence hashes are stored once (`source_versions`). The new material of a source is the
set of its current sentences whose hash the old version lacks: an unchanged source contributes
nothing, an edited one only its edited or added sentences, and a first digest the current state.

From that material a section picks its most central sentences (cosine to the centroid of the new
sentences' unit embeddings) and avoids repeating itself with maximal marginal relevance; the picks
are quoted verbatim, in document order, with paragraph and character offsets. The whole digest is
kept within `max_chars` so it fits one platform message; a source whose section is left out for
that stays unseen in the subscriber's state, so its changes come in the next digest.

`Digester` ties this to the store: `enqueue(subscription, period)` writes the outbox row and the
subscriber's new state in one transaction; the CPU work runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from bot.index import Index
from bot.store import Store, Subscription

MMR_LAMBDA = 0.7  # weight of centrality against redundancy
REDUNDANT = 0.9  # cosine above which a sentence repeats one already picked
MIN_CHARS = 25  # shorter sentences ("Ja.", headings) are picked only when nothing else is new
SECTION_OVERHEAD = 40  # title line and spacing, in characters
QUOTE_OVERHEAD = 12  # quote marks, paragraph sign and number


@dataclass(frozen=True, slots=True)
class DigestQuote:
    """A verbatim sentence: `document.text[start:end] == text`, in paragraph `paragraph` (1-based)."""

    text: str
    paragraph: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Section:
    """What is new in one source."""

    source: str
    title: str
    summary: str
    quotes: tuple[DigestQuote, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """A digest: sections per source; `new` is False for a forced digest of unchanged sources."""

    sections: tuple[Section, ...]
    new: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: {"sections": [{"source", "title", "summary", "quotes": [...]}], "new"}."""
        return {
            "sections": [
                {
                    "source": s.source,
                    "title": s.title,
                    "summary": s.summary,
                    "quotes": [
                        {"text": q.text, "paragraph": q.paragraph, "start": q.start, "end": q.end}
                        for q in s.quotes
                    ],
                }
                for s in self.sections
            ],
            "new": self.new,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Digest:
        """Inverse of to_dict."""
        return cls(
            tuple(
                Section(
                    s["source"], s["title"], s["summary"],
                    tuple(DigestQuote(q["text"], q["paragraph"], q["start"], q["end"]) for q in s["quotes"]),
                )
                for s in data["sections"]
            ),
            bool(data.get("new", True)),
        )


def sentence_hash(text: str) -> str:
    """A key for a sentence's content, blind to whitespace differences."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


def versions(index: Index) -> dict[tuple[str, str], list[str]]:
    """(source_id, content_hash) -> sentence hashes, for every document of the index."""
    result: dict[tuple[str, str], list[str]] = {
        (d.id, d.content_hash): [] for d in index.documents
    }
    for unit in index.units:
        doc = index.documents[unit.doc]
        result[(doc.id, doc.content_hash)].append(sentence_hash(doc.text[unit.start : unit.end]))
    return result


def build_digest(
    index: Index,
    seen: Mapping[str, str],
    seen_sentences: Mapping[str, frozenset[str]],
    *,
    per_source: int = 3,
    max_chars: int = 3500,
    force: bool = False,
) -> Digest | None:
    """The digest of what changed since `seen` (source_id -> content hash), or None if nothing did.

    `seen_sentences` holds the sentence hashes of the seen versions; a source whose seen version is
    unknown counts as new. With `force`, unchanged sources give a digest of their current state.
    """
    return draft_digest(index, seen, seen_sentences, per_source=per_source, max_chars=max_chars, force=force)[0]


def draft_digest(
    index: Index,
    seen: Mapping[str, str],
    seen_sentences: Mapping[str, frozenset[str]],
    *,
    per_source: int = 3,
    max_chars: int = 3500,
    force: bool = False,
) -> tuple[Digest | None, frozenset[str]]:
    """`build_digest`, and the sources whose new material did not fit max_chars (left for next time)."""
    by_doc: dict[int, list[int]] = {}
    for u, unit in enumerate(index.units):
        by_doc.setdefault(unit.doc, []).append(u)
    sections: list[tuple[Section, list[float]]] = []
    for d, doc in enumerate(index.documents):
        if seen.get(doc.id) == doc.content_hash:
            continue
        old = seen_sentences.get(doc.id, frozenset())
        fresh = [u for u in by_doc.get(d, []) if sentence_hash(index.text(u)) not in old]
        section = _section(index, d, fresh, per_source)
        if section is not None:
            sections.append(section)
    new = bool(sections)
    if not sections and force:
        sections = [
            s for d in range(len(index.documents)) if (s := _section(index, d, by_doc.get(d, []), per_source))
        ]
    trimmed = _fit(sections, max_chars)
    kept = {s.source for s in trimmed}
    left_out = frozenset(s.source for s, _ in sections if s.source not in kept)
    return (Digest(tuple(trimmed), new) if trimmed else None), left_out


def now_seen(index: Index, seen: Mapping[str, str], left_out: frozenset[str]) -> dict[str, str]:
    """A subscriber's state after a digest: the current versions, except the sources left out."""
    state = {d.id: d.content_hash for d in index.documents if d.id not in left_out}
    state.update({s: seen[s] for s in left_out if s in seen})
    return state


def _section(index: Index, d: int, units: list[int], k: int) -> tuple[Section, list[float]] | None:
    """A section from the candidate units of document d, and each quote's centrality."""
    statements = [u for u in units if not index.units[u].is_question and len(index.text(u)) >= MIN_CHARS]
    candidates = statements or units
    if not candidates:
        return None
    vectors = index.sentence_vectors[candidates]
    picks = select(vectors, k)
    scores = _centrality(vectors)
    chosen = sorted(picks, key=lambda i: index.units[candidates[i]].start)
    doc = index.documents[d]
    quotes = tuple(
        DigestQuote(index.text(candidates[i]), index.units[candidates[i]].paragraph,
                    index.units[candidates[i]].start, index.units[candidates[i]].end)
        for i in chosen
    )
    section = Section(doc.id, doc.title, " ".join(q.text for q in quotes), quotes)
    return section, [float(scores[i]) for i in chosen]


def _centrality(vectors: np.ndarray) -> np.ndarray:
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    if norm < 1e-9:
        return np.zeros(len(vectors), dtype=np.float32)
    return np.asarray(vectors @ (centroid / norm), dtype=np.float32)


def select(vectors: np.ndarray, k: int, lam: float = MMR_LAMBDA, redundant: float = REDUNDANT) -> list[int]:
    """Up to k rows: most central first, each next one trading centrality against redundancy (MMR)."""
    n = len(vectors)
    if n == 0 or k <= 0:
        return []
    central = _centrality(vectors)
    chosen: list[int] = []
    closest = np.full(n, -1.0, dtype=np.float32)
    while len(chosen) < min(k, n):
        score = lam * central - (1 - lam) * np.maximum(closest, 0.0)
        score[closest > redundant] = -np.inf
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        if not np.isfinite(score[best]):
            break
        chosen.append(best)
        closest = np.maximum(closest, vectors @ vectors[best])
    return chosen


def _size(section: Section) -> int:
    return SECTION_OVERHEAD + len(section.title) + sum(len(q.text) + QUOTE_OVERHEAD for q in section.quotes)


def _fit(sections: list[tuple[Section, list[float]]], max_chars: int) -> list[Section]:
    """Drop the least central quotes (then empty sections) until the digest fits max_chars."""
    quotes = [list(zip(s.quotes, scores, strict=True)) for s, scores in sections]
    while sum(_size(_rebuild(s, q)) for (s, _), q in zip(sections, quotes, strict=True) if q) > max_chars:
        # the section with most quotes gives up its least central one
        j = max(range(len(quotes)), key=lambda i: (len(quotes[i]), -i))
        if not quotes[j]:
            break
        quotes[j].remove(min(quotes[j], key=lambda pair: pair[1]))
    return [_rebuild(s, q) for (s, _), q in zip(sections, quotes, strict=True) if q]


def _rebuild(section: Section, quotes: list[tuple[DigestQuote, float]]) -> Section:
    kept = tuple(q for q, _ in quotes)
    return Section(section.source, section.title, " ".join(q.text for q in kept), kept)


def digest_plain(digest: Digest) -> str:
    """A digest as plain text (terminal, logs, tests)."""
    parts = []
    for section in digest.sections:
        lines = [section.title]
        lines += [f"  „{q.text}“ (¶{q.paragraph})" for q in section.quotes]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


@dataclass
class Digester:
    """Builds digests against the current index and writes them to the outbox."""

    store: Store
    index: Callable[[], Index]  # the current index (Briefing.index); called in a worker thread
    per_source: int = 3
    max_chars: int = 3500
    _known: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False)
    _hashes: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict, init=False, repr=False)
    _cache: dict[tuple[Any, ...], tuple[Digest | None, frozenset[str]]] = field(
        default_factory=dict, init=False, repr=False
    )

    async def current(self) -> Index:
        """The current index, with its versions recorded in the store."""
        index = await asyncio.to_thread(self.index)
        known = {(d.id, d.content_hash) for d in index.documents}
        if not known <= self._known:
            found = await asyncio.to_thread(versions, index)
            await self.store.record_versions({k: v for k, v in found.items() if k not in self._known})
            for key, hashes in found.items():
                self._hashes[key] = frozenset(hashes)
            self._known |= known
        return index

    async def draft(
        self, index: Index, seen: Mapping[str, str], force: bool = False
    ) -> tuple[Digest | None, frozenset[str]]:
        """`draft_digest` for a subscriber that saw `seen` (computed once per distinct state)."""
        key = (tuple((d.id, d.content_hash) for d in index.documents), frozenset(seen.items()), force)
        if key in self._cache:
            return self._cache[key]
        missing = [k for k in seen.items() if k not in self._hashes]
        self._hashes.update(await self.store.version_hashes(missing))
        seen_sentences = {s: self._hashes[(s, h)] for s, h in seen.items() if (s, h) in self._hashes}
        result = await asyncio.to_thread(
            draft_digest, index, dict(seen), seen_sentences,
            per_source=self.per_source, max_chars=self.max_chars, force=force,
        )
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = result
        return result

    async def enqueue(
        self, subscription: Subscription, period: str, *, force: bool = False, now: datetime | None = None
    ) -> int | None:
        """Write the (subscription, period) digest to the outbox; None if that period exists already.

        The subscriber's new state marks as seen only the sources in the digest (and those with
        nothing new): a source whose section did not fit the message comes in the next digest.
        """
        index = await self.current()

        async def fill(seen: dict[str, str]) -> tuple[dict[str, Any] | None, dict[str, str]]:
            digest, left_out = await self.draft(index, seen, force)
            return (digest.to_dict() if digest else None), now_seen(index, seen, left_out)

        return await self.store.create_digest(subscription.id, period, fill, now)


def preview(index: Index, per_source: int = 3, max_chars: int = 3500) -> Digest | None:
    """What a new subscriber would get now: the current state of every source."""
    return build_digest(index, {}, {}, per_source=per_source, max_chars=max_chars, force=True)
