"""The core facade every adapter talks to: sources, the index over them, and answers.

`Briefing` owns the current `Index` and replaces it only with a complete new one: a reload whose
sources fail raises and leaves the last good index answering. All methods are synchronous and
CPU-bound; async adapters call them through `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from bot.answer import Answer, Quote, extract
from bot.config import Settings
from bot.embed import Embedder, UseEmbedder
from bot.errors import InputError, SourceError
from bot.index import Index, ProgressFn, build, indexed_at
from bot.llm import LLM, improve
from bot.segment import Paragraph
from bot.sources import (
    MAX_SOURCE_BYTES,
    SOURCE_ID,
    SourceSpec,
    default_manifest,
    load,
    load_bytes,
    read_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)
UPLOAD_SUFFIXES = {".txt", ".md", ".html", ".htm"}


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What `/sources` shows about one indexed source."""

    id: str
    title: str
    lang: str
    origin: str
    sentences: int
    indexed_at: float  # unix time


class Briefing:
    """Sources, index and answers; built once in main() and passed to the adapters."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, llm: LLM | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or UseEmbedder()
        self.llm = llm
        self._index: Index | None = None
        self._indexed_at: dict[str, float] = {}
        self._lock = threading.Lock()  # serialises reloads and source edits, never questions

    # ---- sources and index -------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        """The manifest in use: configured, or the data dir's own, or the packaged seeds."""
        if self.settings.sources is not None:
            return self.settings.sources
        own = self.settings.data_dir / "sources.toml"
        return own if own.exists() else default_manifest()

    @property
    def index(self) -> Index:
        """The current index, loading it on first use."""
        if self._index is None:
            self.reload()
        assert self._index is not None
        return self._index

    def specs(self) -> list[SourceSpec]:
        """The configured sources."""
        return read_manifest(self.manifest_path)

    def reload(self, progress: ProgressFn | None = None) -> Index:
        """Re-read every source and swap in a new index, or raise and keep the old one."""
        with self._lock:
            return self._rebuild(self.specs(), progress)

    def _rebuild(self, specs: list[SourceSpec], progress: ProgressFn | None = None) -> Index:
        documents, errors = [], []
        for spec in specs:
            try:
                documents.append(load(spec))
            except SourceError as exc:
                errors.append(str(exc))
        if errors:
            raise SourceError("; ".join(errors))
        cache = self.settings.data_dir / "index"
        index = build(documents, self.embedder, cache, progress)
        now = time.time()
        self._indexed_at = {doc.id: indexed_at(cache, doc, self.embedder) or now for doc in documents}
        self._index = index
        log.info("indexed %d sources, %d sentences", len(documents), len(index))
        return index

    def sources(self) -> list[SourceInfo]:
        """The indexed sources with their sizes and when they were last indexed."""
        return self._infos(self.index)

    def _infos(self, index: Index) -> list[SourceInfo]:
        counts: dict[int, int] = {}
        for unit in index.units:
            counts[unit.doc] = counts.get(unit.doc, 0) + 1
        return [
            SourceInfo(d.id, d.title, d.lang, d.origin, counts.get(i, 0), self._indexed_at.get(d.id, 0.0))
            for i, d in enumerate(index.documents)
        ]

    @staticmethod
    def check_upload(filename: str, size: int | None) -> None:
        """Raise SourceError for an upload of the wrong kind or size; adapters call it before downloading."""
        suffix = Path(filename).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            kind = repr(suffix) if suffix else "(none)"
            raise SourceError(f"{filename}: unsupported file type {kind}; use a .txt, .md or .html file")
        if size is not None and size > MAX_SOURCE_BYTES:
            raise SourceError(f"{filename} is too big ({size} bytes; at most {MAX_SOURCE_BYTES})")

    def add_source(self, filename: str, data: bytes, title: str | None = None) -> SourceInfo:
        """Store an uploaded file as a new source and index it; nothing changes if it is unusable."""
        self.check_upload(filename, len(data))
        suffix = Path(filename).suffix.lower()
        source_id = _slug(Path(filename).stem)
        doc = load_bytes(source_id, data, name=filename, title=title)  # validates before any write
        with self._lock:
            specs = self.specs()
            if any(s.id == source_id for s in specs):
                raise SourceError(f"a source with id {source_id!r} exists already; remove it first")
            folder = self.settings.data_dir / "sources"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{source_id}{suffix}"
            path.write_bytes(data)
            spec = SourceSpec(id=source_id, title=doc.title, lang=doc.lang, path=path)
            try:
                index = self._rebuild([*specs, spec])
            except Exception:
                path.unlink(missing_ok=True)
                raise
            self._save_specs([*specs, spec])
            return next(info for info in self._infos(index) if info.id == source_id)

    def remove_source(self, source_id: str) -> int:
        """Drop a source from the manifest and the index; returns the number of sentences still indexed."""
        with self._lock:
            specs = self.specs()
            remaining = [s for s in specs if s.id != source_id]
            if len(remaining) == len(specs):
                raise SourceError(f"no source with id {source_id!r}")
            index = self._rebuild(remaining)
            self._save_specs(remaining)
            return len(index)

    def _save_specs(self, specs: list[SourceSpec]) -> None:
        """Write the edited manifest: the configured one, or the data dir's own."""
        if self.settings.sources is not None:
            write_manifest(self.settings.sources, specs)
        else:
            write_manifest(self.settings.data_dir / "sources.toml", self._owned(specs))

    def _owned(self, specs: list[SourceSpec]) -> list[SourceSpec]:
        """Specs whose packaged seed files are copied into the data dir (they outlive upgrades)."""
        seeds = default_manifest().parent
        folder = self.settings.data_dir / "sources"
        folder.mkdir(parents=True, exist_ok=True)
        copied = []
        for spec in specs:
            if spec.path is not None and spec.path.parent == seeds:
                target = folder / spec.path.name
                shutil.copyfile(spec.path, target)
                spec = SourceSpec(spec.id, spec.title, spec.lang, target, spec.url, spec.feed)
            copied.append(spec)
        return copied

    def context(self, quote: Quote) -> Paragraph | None:
        """The paragraph a quote was taken from, if its source still holds exactly that text."""
        index = self.index
        for number, document in enumerate(index.documents):
            if document.id != quote.source:
                continue
            paragraphs = index.paragraphs_of[number]
            if not 0 < quote.paragraph <= len(paragraphs):
                return None
            paragraph = paragraphs[quote.paragraph - 1]
            inside = paragraph.start <= quote.start and quote.end <= paragraph.end
            return paragraph if inside and document.text[quote.start : quote.end] == quote.text else None
        return None

    # ---- questions ---------------------------------------------------------------------------
    def ask(self, question: str) -> Answer:
        """Answer a question from the indexed sources, with verbatim quotes."""
        cleaned = clean_question(question, self.settings.max_question_chars)
        index = self.index
        vector = self.embedder.embed([cleaned])[0]
        hits = index.search(vector, cleaned)
        offline = extract(index, hits, question, self.settings.quotes_per_answer)
        if self.llm is None:
            return offline
        return improve(self.llm, index, hits, offline, question, self.settings.quotes_per_answer)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean_question(question: str, max_chars: int) -> str:
    """Normalise a question for retrieval, or raise InputError for empty or oversized input."""
    if len(question) > max_chars:
        raise InputError(f"The question is too long ({len(question)} characters; at most {max_chars}).")
    text = unicodedata.normalize("NFC", _CONTROL.sub(" ", question))
    text = re.sub(r"\s+", " ", text).strip()
    if not any(ch.isalnum() for ch in text):
        raise InputError("The question is empty: ask something about the sources.")
    return text


def _slug(stem: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64] or "source"
    if not SOURCE_ID.match(slug):
        slug = f"src-{slug}"[:64]
    return slug
