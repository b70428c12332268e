"""The index: built from documents, searchable, and cached by content hash so unchanged text is never re-embedded."""

from __future__ import annotations

import gc
import io
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from bot.embed import Embedder
from bot.index import Index, build
from bot.segment import sentences
from bot.sources import Document


class RecordingEmbedder:
    """The real embedder, recording every text it is asked to embed."""

    def __init__(self, inner: Embedder, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name
        self.dim = inner.dim
        self.embedded: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return self.inner.embed(texts)


ASTANA = Document(
    id="astana",
    title="Besuch in Astana",
    text="Tokajew empfing den Energieminister in Astana. Er brachte eine Botschaft aus Moskau.\n\n"
    "Am 9. Mai soll Tokajew nach Moskau reisen.",
    lang="de",
    origin="test",
)
KOMMERSANT = Document(
    id="kommersant",
    title="Das Interview",
    text="Lawrow gab dem Blatt Kommersant ein Interview. Darin griff er Tokajew an.",
    lang="de",
    origin="test",
)


def sentence_texts(doc: Document) -> list[str]:
    return [s.text for s in sentences(doc.text)]


@pytest.fixture
def recorder(embedder: Embedder) -> RecordingEmbedder:
    return RecordingEmbedder(embedder)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "index"


def test_units_point_into_their_documents(recorder: RecordingEmbedder) -> None:
    index = build([ASTANA, KOMMERSANT], recorder)
    assert len(index) == 5
    assert [index.text(i) for i in range(len(index))] == sentence_texts(ASTANA) + sentence_texts(KOMMERSANT)
    assert [(u.doc, u.paragraph, u.sentence) for u in index.units] == [
        (0, 1, 0), (0, 1, 1), (0, 2, 0), (1, 1, 0), (1, 1, 1),
    ]
    assert index.sentence_vectors.shape == (5, index.paragraph_vectors.shape[1])
    assert np.allclose(np.linalg.norm(index.sentence_vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who gave an interview to Kommersant?", "Lawrow gab dem Blatt Kommersant ein Interview."),
        ("Когда Токаев поедет в Москву?", "Am 9. Mai soll Tokajew nach Moskau reisen."),
    ],
)
def test_search_ranks_the_matching_sentence_first(
    recorder: RecordingEmbedder, question: str, expected: str
) -> None:
    index = build([ASTANA, KOMMERSANT], recorder)
    hits = index.search(recorder.embed([question])[0], question)
    assert index.text(hits[0].unit) == expected
    assert sorted(h.unit for h in hits) == list(range(len(index)))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_an_empty_index_finds_nothing(recorder: RecordingEmbedder) -> None:
    index = build([], recorder)
    assert len(index) == 0
    assert index.search(recorder.embed(["Lawrow"])[0], "Lawrow") == []


def test_progress_reaches_the_total(recorder: RecordingEmbedder) -> None:
    seen: list[tuple[int, int]] = []
    build([ASTANA, KOMMERSANT], recorder, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, 5)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_second_build_embeds_nothing(embedder: Embedder, cache: Path) -> None:
    first, second = RecordingEmbedder(embedder), RecordingEmbedder(embedder)
    built = build([ASTANA, KOMMERSANT], first, cache)
    assert first.embedded == sentence_texts(ASTANA) + sentence_texts(KOMMERSANT)
    rebuilt = build([ASTANA, KOMMERSANT], second, cache)
    assert second.embedded == []
    assert np.allclose(rebuilt.sentence_vectors, built.sentence_vectors)
    assert {p.name for p in cache.iterdir()} == {
        f"{ASTANA.content_hash}.{embedder.name}.npz",
        f"{KOMMERSANT.content_hash}.{embedder.name}.npz",
    }


def test_changing_one_document_re_embeds_only_it(embedder: Embedder, cache: Path) -> None:
    build([ASTANA, KOMMERSANT], RecordingEmbedder(embedder), cache)
    changed = Document(
        id=KOMMERSANT.id,
        title=KOMMERSANT.title,
        text=KOMMERSANT.text + " Moskau schwieg dazu.",
        lang="de",
        origin="test",
    )
    assert changed.content_hash != KOMMERSANT.content_hash
    recorder = RecordingEmbedder(embedder)
    index = build([ASTANA, changed], recorder, cache)
    assert recorder.embedded == sentence_texts(changed)
    assert index.text(len(index) - 1) == "Moskau schwieg dazu."


def test_the_cache_is_kept_per_embedder(embedder: Embedder, cache: Path) -> None:
    build([ASTANA], RecordingEmbedder(embedder), cache)
    other = RecordingEmbedder(embedder, name="another-model")
    build([ASTANA], other, cache)
    assert other.embedded == sentence_texts(ASTANA)


def test_without_a_cache_dir_everything_is_embedded(recorder: RecordingEmbedder) -> None:
    build([ASTANA], recorder)
    build([ASTANA], recorder)
    assert recorder.embedded == sentence_texts(ASTANA) * 2


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda good: b"not numpy at all", id="garbage"),
        pytest.param(lambda good: pickle.dumps({"sentences": [1, 2, 3]}), id="pickle"),
        pytest.param(lambda good: _npz(other=np.zeros((3, 512), np.float32)), id="npz-without-key"),
        pytest.param(lambda good: _npz(sentences=np.zeros((2, 512), np.float32)), id="wrong-row-count"),
        pytest.param(lambda good: b"", id="empty-file"),
        pytest.param(lambda good: good[: len(good) // 2], id="truncated-npz"),
        pytest.param(lambda good: _npy(np.zeros((3, 512), np.float32)), id="npy-not-npz"),
        pytest.param(lambda good: _npz(sentences=np.zeros((3, 7), np.float32)), id="wrong-width"),
    ],
)
def test_a_damaged_cache_file_is_ignored_and_rewritten(embedder: Embedder, cache: Path, damage) -> None:
    build([ASTANA, KOMMERSANT], RecordingEmbedder(embedder), cache)
    path = cache / f"{ASTANA.content_hash}.{embedder.name}.npz"
    path.write_bytes(damage(path.read_bytes()))

    recorder = RecordingEmbedder(embedder)
    try:
        index = build([ASTANA, KOMMERSANT], recorder, cache)
    except Exception as exc:  # reported as a plain failure, so nothing it holds outlives the test
        crash = f"{type(exc).__name__}: {exc}"
    else:
        crash = ""
    gc.collect()
    assert not crash, crash
    assert recorder.embedded == sentence_texts(ASTANA)  # only the damaged document
    _assert_searchable(index, recorder)

    again = RecordingEmbedder(embedder)
    build([ASTANA, KOMMERSANT], again, cache)
    assert again.embedded == []  # the damaged file was replaced by a good one


class MeetingEmbedder:
    """Embeds (one at a time) only once a second builder has missed the cache too."""

    def __init__(self, inner: Embedder, meet, lock: threading.Lock) -> None:
        self.inner, self.meet, self.lock = inner, meet, lock
        self.name = inner.name
        self.dim = inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        self.meet()
        with self.lock:
            return self.inner.embed(texts)


def test_two_builders_saving_one_cache_at_once_both_succeed(
    embedder: Embedder, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    together = threading.Barrier(2)

    def meet() -> None:
        try:
            together.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass  # an implementation that never gets here is not held up

    real_replace = Path.replace

    def replace(self: Path, target: str | Path) -> Path:
        if Path(self).parent == cache:
            meet()  # both builders have written their temporary file before either renames it
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    lock = threading.Lock()
    failures: list[str] = []

    def index_astana() -> None:
        try:
            build([ASTANA], MeetingEmbedder(embedder, meet, lock), cache)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    builders = [threading.Thread(target=index_astana) for _ in range(2)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join(timeout=30)
    assert failures == []
    recorder = RecordingEmbedder(embedder)
    build([ASTANA], recorder, cache)
    assert recorder.embedded == []


def _assert_searchable(index: Index, embedder: Embedder) -> None:
    question = "Wann reist Tokajew nach Moskau?"
    hits = index.search(embedder.embed([question])[0], question)
    assert index.text(hits[0].unit) == "Am 9. Mai soll Tokajew nach Moskau reisen."
