"""The Briefing facade: reloads that keep the last good index, and sources added and removed at runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.briefing import Briefing
from bot.config import Settings
from bot.embed import Embedder
from bot.errors import SourceError
from bot.sources import MAX_SOURCE_BYTES, default_manifest

ASTANA = "Tokajew empfing den Energieminister in Astana. Er brachte eine Botschaft von Putin.\n"
ALMATY = "Der Bürgermeister von Almaty heißt Jerassyl Abylkassymow. Er wurde im Jahr 2022 ernannt.\n"


@pytest.fixture
def own_manifest(tmp_path: Path) -> Path:
    """A manifest of two small German texts."""
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "astana.txt").write_text(ASTANA, encoding="utf-8")
    (folder / "almaty.txt").write_text(ALMATY, encoding="utf-8")
    manifest = folder / "sources.toml"
    manifest.write_text(
        '[[source]]\nid = "astana"\nlang = "de"\npath = "astana.txt"\n\n'
        '[[source]]\nid = "almaty"\nlang = "de"\npath = "almaty.txt"\n',
        encoding="utf-8",
    )
    return manifest


@pytest.fixture
def small_briefing(embedder: Embedder, tmp_path: Path, own_manifest: Path) -> Briefing:
    small = Briefing(Settings(data_dir=tmp_path / "data", sources=own_manifest), embedder)
    small.reload()
    return small


def quoted_sources(briefing: Briefing, question: str) -> list[str]:
    answer = briefing.ask(question)
    return [q.source for q in answer.quotes]


def snapshot(briefing: Briefing) -> tuple[object, ...]:
    """What a failed change must leave alone: the index, the sources, the files and the manifest."""
    data = briefing.settings.data_dir
    files = sorted(
        p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file() and "index" not in p.parts
    )
    manifest = briefing.manifest_path.read_text(encoding="utf-8")
    return briefing.index, [s.id for s in briefing.sources()], files, manifest


def test_a_broken_source_keeps_the_last_good_index(small_briefing: Briefing, own_manifest: Path) -> None:
    good = small_briefing.index
    assert "almaty" in quoted_sources(small_briefing, "Wer ist Bürgermeister von Almaty?")
    missing = own_manifest.parent / "almaty.txt"
    missing.unlink()

    with pytest.raises(SourceError, match="file not found") as caught:
        small_briefing.reload()
    assert str(missing) in str(caught.value)

    assert small_briefing.index is good
    assert [s.id for s in small_briefing.sources()] == ["astana", "almaty"]
    answer = small_briefing.ask("Wer ist Bürgermeister von Almaty?")
    assert answer.answered and answer.quotes[0].source == "almaty"
    assert "Abylkassymow" in answer.quotes[0].text


def test_a_fixed_source_is_picked_up_by_the_next_reload(small_briefing: Briefing, own_manifest: Path) -> None:
    path = own_manifest.parent / "almaty.txt"
    path.unlink()
    with pytest.raises(SourceError):
        small_briefing.reload()
    path.write_text(ALMATY.replace("Abylkassymow", "Dossajew"), encoding="utf-8")
    small_briefing.reload()
    answer = small_briefing.ask("Wer ist Bürgermeister von Almaty?")
    assert "Dossajew" in answer.quotes[0].text


def test_indexed_at_changes_only_for_changed_sources(small_briefing: Briefing, own_manifest: Path) -> None:
    before = {s.id: s.indexed_at for s in small_briefing.sources()}
    assert all(before.values())
    (own_manifest.parent / "astana.txt").write_text(ASTANA + "\nEr blieb zwei Tage.\n", encoding="utf-8")
    small_briefing.reload()
    after = {s.id: s.indexed_at for s in small_briefing.sources()}
    assert after["almaty"] == before["almaty"]
    assert after["astana"] > before["astana"]


REPORT_HTML = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Der Bericht</title></head><body>"
    "<nav>Start | Politik</nav><article><h1>Der Bericht</h1><p>Die Zentralbank von Kasachstan hat den "
    "Leitzins am Freitag auf 16,5 Prozent angehoben, um die hohe Inflation im Land zu bremsen.</p>"
    "<p>Analysten hatten diesen Schritt nach den Zahlen vom Frühjahr bereits erwartet.</p></article>"
    "<footer>Impressum</footer></body></html>"
).encode()
UPLOADS = [
    pytest.param(
        "almaty.txt",
        ALMATY.encode(),
        "Wer ist Bürgermeister von Almaty?",
        "Abylkassymow",
        id="txt",
    ),
    pytest.param(
        "Wahl 2026.md",
        "# Wahlen in Kasachstan\n\nDie Parlamentswahl in Kasachstan findet im März 2026 statt, teilte die "
        "Zentrale Wahlkommission in Astana mit.\n".encode(),
        "Wann ist die Parlamentswahl in Kasachstan?",
        "März 2026",
        id="md",
    ),
    pytest.param(
        "bericht.html",
        REPORT_HTML,
        "Auf wie viel Prozent hob die Zentralbank den Leitzins?",
        "16,5 Prozent",
        id="html",
    ),
]


@pytest.mark.parametrize(("filename", "data", "question", "fact"), UPLOADS)
def test_an_uploaded_source_is_answerable(
    briefing: Briefing, embedder: Embedder, filename: str, data: bytes, question: str, fact: str
) -> None:
    doc = briefing.add_source(filename, data)
    assert doc in briefing.sources() and doc.sentences > 0
    assert "putin-tokajew" in [s.id for s in briefing.sources()]
    answer = briefing.ask(question)
    assert answer.answered
    top = answer.quotes[0]
    assert top.source == doc.id and fact in top.text
    (indexed,) = [d for d in briefing.index.documents if d.id == doc.id]
    assert indexed.text[top.start : top.end] == top.text

    restarted = Briefing(briefing.settings, embedder)  # the manifest in the data dir remembers it
    assert [s.id for s in restarted.sources()] == [s.id for s in briefing.sources()]


def test_the_html_title_becomes_the_sources_title(briefing: Briefing) -> None:
    info = briefing.add_source("bericht.html", REPORT_HTML)
    assert info.title == "Der Bericht"
    (doc,) = [d for d in briefing.index.documents if d.id == info.id]
    assert "<p>" not in doc.text and "Impressum" not in doc.text


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("empty.txt", b"", "empty"),
        ("blank.md", b" \n\n\t ", "empty"),
        ("setup.exe", b"MZ\x90\x00\x03", "use a .txt, .md or .html file"),
        ("noext", b"Tokajew schwieg.", "use a .txt, .md or .html file"),
        ("latin1.txt", "Grüße aus Köln".encode("latin-1"), "not UTF-8"),
        ("nothing.html", b"<html><body><script>var x = 1;</script><img src=a.png></body></html>", "no readable text"),
        ("putin-tokajew.txt", b"Ein neuer Text mit derselben Kennung.", "exists already"),
    ],
)
def test_a_bad_upload_changes_nothing(briefing: Briefing, filename: str, data: bytes, message: str) -> None:
    briefing.add_source("almaty.txt", ALMATY.encode())
    before = snapshot(briefing)
    with pytest.raises(SourceError, match=message):
        briefing.add_source(filename, data)
    assert snapshot(briefing) == before


def test_an_upload_while_another_source_is_broken_changes_nothing(
    small_briefing: Briefing, own_manifest: Path
) -> None:
    (own_manifest.parent / "astana.txt").unlink()
    before = snapshot(small_briefing)
    with pytest.raises(SourceError, match="file not found"):
        small_briefing.add_source("wahl.md", b"# Wahl\n\nDie Wahl ist im M\xc3\xa4rz.")
    assert snapshot(small_briefing) == before


def test_remove_source(briefing: Briefing, embedder: Embedder) -> None:
    seeds = default_manifest().read_text(encoding="utf-8")
    briefing.add_source("almaty.txt", ALMATY.encode())
    assert "almaty" in quoted_sources(briefing, "Wer ist Bürgermeister von Almaty?")

    remaining = briefing.remove_source("almaty")
    assert [s.id for s in briefing.sources()] == ["putin-tokajew"]
    assert remaining == len(briefing.index) == briefing.sources()[0].sentences > 0
    assert "almaty" not in quoted_sources(briefing, "Wer ist Bürgermeister von Almaty?")

    assert briefing.remove_source("putin-tokajew") == 0
    assert briefing.sources() == []
    assert not briefing.ask("Warum rief Putin Tokajew an?").answered
    assert [s.id for s in Briefing(briefing.settings, embedder).sources()] == []
    assert default_manifest().read_text(encoding="utf-8") == seeds  # the packaged seeds are never edited


def test_remove_an_unknown_source(briefing: Briefing) -> None:
    briefing.add_source("almaty.txt", ALMATY.encode())
    before = snapshot(briefing)
    with pytest.raises(SourceError, match="no source with id 'nope'"):
        briefing.remove_source("nope")
    assert snapshot(briefing) == before


@pytest.mark.parametrize("refused", ["remove-unknown", "add-duplicate"])
def test_a_refused_first_edit_writes_no_files(briefing: Briefing, refused: str) -> None:
    before = snapshot(briefing)
    with pytest.raises(SourceError):
        if refused == "remove-unknown":
            briefing.remove_source("nope")
        else:
            briefing.add_source("putin-tokajew.txt", b"Ein neuer Text mit derselben Kennung.")
    assert snapshot(briefing) == before


@pytest.mark.parametrize(
    ("filename", "size", "message"),
    [
        ("setup.exe", 10, "unsupported file type '.exe'; use a .txt, .md or .html file"),
        ("noext", 10, r"unsupported file type \(none\)"),
        ("huge.txt", MAX_SOURCE_BYTES + 1, f"huge.txt is too big \\({MAX_SOURCE_BYTES + 1} bytes"),
    ],
)
def test_check_upload_refuses_the_wrong_kind_or_size(filename: str, size: int, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        Briefing.check_upload(filename, size)


@pytest.mark.parametrize(("filename", "size"), [("notes.MD", MAX_SOURCE_BYTES), ("page.htm", None), ("a.txt", 0)])
def test_check_upload_accepts_text_files(filename: str, size: int | None) -> None:
    Briefing.check_upload(filename, size)
