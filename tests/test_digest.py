"""Digest content: verbatim quotes, only what is new since the last digest, nothing new -> nothing sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from bot.briefing import Briefing
from bot.delivery import Drainer, Limits
from bot.digest import Digest, Digester, build_digest, digest_plain, preview, select, sentence_hash, versions
from bot.embed import UseEmbedder
from bot.index import Index, build
from bot.sources import Document
from bot.store import EMPTY, SENT, Store
from tests.conftest import SEED_TEXT
from tests.digest_support import RecordingSender, document, fake_index, open_store

FAST = Limits(global_rate=1000.0, per_chat_rate=1000.0, group_per_minute=1000)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store("sqlite", tmp_path, None) as opened:
        yield opened


def seed_document(text: str = SEED_TEXT) -> Document:
    return Document("putin-tokajew", "Warum Putin Tokajew umwirbt", text, "de", "seed")


def assert_exact_spans(digest: Digest, index: Index) -> None:
    docs = {d.id: d for d in index.documents}
    for section in digest.sections:
        doc = docs[section.source]
        assert section.title == doc.title
        for quote in section.quotes:
            assert doc.text[quote.start : quote.end] == quote.text
            paragraph = index.paragraphs_of[index.documents.index(doc)][quote.paragraph - 1]
            assert paragraph.start <= quote.start and quote.end <= paragraph.end
            assert quote.text in section.summary


def test_preview_quotes_exact_spans_within_their_paragraphs(seed_briefing: Briefing) -> None:
    index = seed_briefing.index
    digest = preview(index, per_source=3, max_chars=3500)
    assert digest is not None and len(digest.sections) == 1
    (section,) = digest.sections
    assert 1 <= len(section.quotes) <= 3
    assert_exact_spans(digest, index)
    starts = [q.start for q in section.quotes]
    assert starts == sorted(starts)  # in reading order
    assert not any(q.text.rstrip().endswith("?") for q in section.quotes)
    assert Digest.from_dict(digest.to_dict()) == digest
    assert set(digest.to_dict()["sections"][0]) == {"source", "title", "summary", "quotes"}
    assert "„" in digest_plain(digest)


def test_digest_fits_the_character_budget(seed_briefing: Briefing) -> None:
    digest = preview(seed_briefing.index, per_source=20, max_chars=900)
    assert digest is not None
    size = sum(len(q.text) + 12 for s in digest.sections for q in s.quotes)
    assert size <= 900
    assert_exact_spans(digest, seed_briefing.index)


def test_mmr_skips_near_duplicates() -> None:
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.999, 0.0447, 0.0])
    c = np.array([0.6, 0.8, 0.0])
    vectors = np.vstack([a, b, c]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picks = select(vectors, 2)
    assert set(picks) != {0, 1}  # the two near-identical sentences are never both picked
    assert len(picks) == 2


def test_unchanged_source_gives_nothing_and_a_changed_one_only_its_changes(embedder: UseEmbedder) -> None:
    old = build([seed_document()], embedder)
    (key, hashes), = versions(old).items()
    seen, seen_sentences = {key[0]: key[1]}, {key[0]: frozenset(hashes)}
    assert build_digest(old, seen, seen_sentences) is None
    forced = build_digest(old, seen, seen_sentences, force=True)
    assert forced is not None and not forced.new  # /digest still answers, saying nothing is new

    added = (
        "Kasachstan kündigte an, die Getreideexporte nach China im kommenden Jahr zu verdoppeln. "
        "Die neue Bahnstrecke über Chorgos soll dafür bereits im Herbst fertig werden."
    )
    edited = SEED_TEXT.replace("Tokajew empfing", "Tokajew empfing am Montag", 1) + "\n" + added + "\n"
    new = build([seed_document(edited)], embedder)
    digest = build_digest(new, seen, seen_sentences, per_source=5)
    assert digest is not None and digest.new
    assert_exact_spans(digest, new)
    old_texts = {old.text(u) for u in range(len(old))}
    quoted = [q.text for s in digest.sections for q in s.quotes]
    assert quoted and not any(text in old_texts for text in quoted)  # only what changed
    assert any("Getreideexporte" in text or "Bahnstrecke" in text or "am Montag" in text for text in quoted)
    assert len(quoted) <= 3  # three sentences changed or were added
    assert all(sentence_hash(t) not in seen_sentences[key[0]] for t in quoted)


async def test_nothing_new_means_nothing_is_sent(store: Store, seed_briefing: Briefing) -> None:
    digester = Digester(store, lambda: seed_briefing.index)
    sub = await store.subscribe(
        "telegram", "5", schedule_kind="daily", schedule_expr="08:00", timezone="UTC"
    )
    sender = RecordingSender()
    assert await digester.enqueue(sub, "2026-03-01T08:00@UTC") is not None  # first: the current state
    await Drainer(store, sender, limits=FAST).run(until_idle=True)
    assert len(sender.sent) == 1
    first = sender.sent[0][1]
    assert first.new and first.sections
    assert await digester.enqueue(sub, "2026-03-02T08:00@UTC") is not None  # the period is recorded...
    await Drainer(store, sender, limits=FAST).run(until_idle=True)
    assert len(sender.sent) == 1  # ...but nothing was sent
    assert await store.outbox_counts() == {SENT: 1, EMPTY: 1}
    assert await digester.enqueue(sub, "manual:1", force=True) is not None  # /digest always answers
    await Drainer(store, sender, limits=FAST).run(until_idle=True)
    assert len(sender.sent) == 2 and not sender.sent[1][1].new


async def test_a_changed_source_reaches_subscribers_as_only_its_changes(
    store: Store, embedder: UseEmbedder
) -> None:
    current = [build([seed_document()], embedder)]
    digester = Digester(store, lambda: current[0], per_source=5)
    a = await store.subscribe("telegram", "1", schedule_kind="daily", schedule_expr="08:00", timezone="UTC")
    await digester.enqueue(a, "d1")
    added = "Am Freitag unterzeichneten beide Präsidenten ein Abkommen über Wasserrechte am Irtysch."
    current[0] = build([seed_document(SEED_TEXT + "\n" + added + "\n")], embedder)
    b = await store.subscribe("telegram", "2", schedule_kind="daily", schedule_expr="08:00", timezone="UTC")
    await digester.enqueue(a, "d2")  # saw the old version: gets the change only
    await digester.enqueue(b, "d2")  # new subscriber: gets the current state
    sender = RecordingSender()
    await Drainer(store, sender, limits=FAST).run(until_idle=True)
    by_chat: dict[str, list[Digest]] = {}
    for target, digest, _ in sender.sent:
        by_chat.setdefault(target.chat_id, []).append(digest)
    change = by_chat["1"][1]
    assert [q.text for s in change.sections for q in s.quotes] == [added]
    assert_exact_spans(change, current[0])
    fresh = by_chat["2"][0]
    assert len([q for s in fresh.sections for q in s.quotes]) > 1
    assert_exact_spans(fresh, current[0])


async def test_sources_left_out_to_fit_the_budget_come_in_the_next_digest(store: Store) -> None:
    names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    index = fake_index(
        *(document(name, f"The {name} council approved a new budget for its schools on Monday.") for name in names)
    )
    # room for two sections per message: each is about 40 + 5 + 63 + 12 characters
    digester = Digester(store, lambda: index, per_source=1, max_chars=250)
    sub = await store.subscribe("telegram", "1", schedule_kind="daily", schedule_expr="08:00", timezone="UTC")
    sender = RecordingSender()
    for day in range(1, 6):
        await digester.enqueue(sub, f"2026-03-0{day}T08:00@UTC")
        await Drainer(store, sender, limits=FAST).run(until_idle=True)
    delivered = [s.source for _, digest, _ in sender.sent for s in digest.sections]
    assert len(sender.sent) == 3 and all(len(d.sections) == 2 for _, d, _ in sender.sent)
    assert sorted(delivered) == sorted(names)  # every source once: none lost, none repeated
    assert await store.seen(sub.id) == {d.id: d.content_hash for d in index.documents}
