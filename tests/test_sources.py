"""Sources: the manifest, local files, and web pages and feeds fetched from a real local HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.errors import SourceError
from bot.segment import paragraphs
from bot.sources import (
    Document,
    SourceSpec,
    load,
    load_feed,
    load_file,
    load_url,
    read_manifest,
    write_manifest,
)

# ---- the manifest ------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_manifest_entries_become_specs(tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "sources.toml",
        """
[[source]]
id = "local"
title = "Ein Artikel"
lang = "de"
path = "texts/artikel.txt"

[[source]]
id = "absolute"
path = "/srv/briefbot/news.md"

[[source]]
id = "page"
url = "https://example.org/article"

[[source]]
id = "ticker"
feed = "https://example.org/feed.xml"
""",
    )
    local, absolute, page, ticker = read_manifest(manifest)
    assert local == SourceSpec("local", "Ein Artikel", "de", tmp_path / "texts" / "artikel.txt")
    assert absolute.path == Path("/srv/briefbot/news.md")
    assert (page.url, page.path, page.feed) == ("https://example.org/article", None, None)
    assert (ticker.feed, ticker.title, ticker.lang) == ("https://example.org/feed.xml", None, None)


def test_a_manifest_without_sources_is_empty(tmp_path: Path) -> None:
    assert read_manifest(write(tmp_path / "sources.toml", "# nothing yet\n")) == []


def test_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="manifest not found") as caught:
        read_manifest(tmp_path / "nowhere.toml")
    assert str(tmp_path / "nowhere.toml") in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('[[source]\nid = "a"\n', "cannot read sources manifest", id="bad-toml"),
        pytest.param('[[source]]\nid = "a"\npath = "a.txt"\n[[source]]\nid = "a"\npath = "b.txt"\n',
                     "listed twice", id="duplicate-id"),
        pytest.param('[[source]]\nid = "a"\ntitle = "Nur ein Titel"\n', "exactly one of path, url, feed",
                     id="no-location"),
        pytest.param('[[source]]\nid = "a"\npath = "a.txt"\nurl = "https://x.org"\n',
                     "exactly one of path, url, feed", id="two-locations"),
        pytest.param('[[source]]\npath = "a.txt"\n', "invalid source id", id="no-id"),
        pytest.param('[[source]]\nid = "../etc"\npath = "a.txt"\n', "invalid source id", id="bad-id"),
    ],
)
def test_manifest_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        read_manifest(write(tmp_path / "sources.toml", text))


def test_a_non_utf8_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "sources.toml"
    manifest.write_bytes('[[source]]\nid = "a"\ntitle = "Grüße"\npath = "a.txt"\n'.encode("latin-1"))
    with pytest.raises(SourceError, match="cannot read sources manifest"):
        read_manifest(manifest)


def test_write_manifest_round_trips(tmp_path: Path) -> None:
    specs = [
        SourceSpec("one", 'Er sagte "nein" \\ und ging', "de", tmp_path / "one.txt"),
        SourceSpec("two", url="https://example.org/a?b=c"),
        SourceSpec("three", title="Лента", lang="ru", feed="https://example.org/rss"),
    ]
    manifest = tmp_path / "out" / "sources.toml"
    write_manifest(manifest, specs)
    assert read_manifest(manifest) == specs
    assert [p.name for p in manifest.parent.iterdir()] == ["sources.toml"]


# ---- local files ---------------------------------------------------------------------------------


def test_load_file_keeps_the_exact_text(tmp_path: Path) -> None:
    text = "# Wahlen\n\nDie Wahl findet am 9. Mai statt.\n"
    path = tmp_path / "wahl.md"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # a byte-order mark is not part of the text
    doc = load_file(SourceSpec("wahl", path=path))
    assert (doc.id, doc.title, doc.text, doc.lang, doc.origin) == ("wahl", "Wahlen", text, "de", str(path))
    assert doc.content_hash == Document("x", "y", text, "de", "z").content_hash


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("missing.txt", None, "file not found"),
        ("folder", "dir", "is a folder"),
        ("empty.txt", b" \n\t\n", "empty"),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
        ("latin1.txt", "Grüße aus Köln".encode("latin-1"), "not UTF-8"),
        ("program.exe", b"MZ just text", "unsupported file type"),
    ],
)
def test_load_file_errors(tmp_path: Path, name: str, data: bytes | str | None, message: str) -> None:
    path = tmp_path / name
    if data == "dir":
        path.mkdir()
    elif isinstance(data, bytes):
        path.write_bytes(data)
    with pytest.raises(SourceError, match=message) as caught:
        load(SourceSpec("doc", path=path))
    assert name in str(caught.value)


# ---- a real local web server -------------------------------------------------------------------

ARTICLE = """<!doctype html>
<html lang="de"><head><meta charset="utf-8"><title>Lawrow im Interview</title></head>
<body>
<nav><a href="/">Start</a> | <a href="/politik">Politik</a> | <a href="/wirtschaft">Wirtschaft</a></nav>
<article>
<h1>Lawrow im Interview</h1>
<p>Der russische Außenminister Sergej Lawrow gab dem Blatt Kommersant ein langes Interview über die
Beziehungen zu Kasachstan und über die Rolle Moskaus in Zentralasien.</p>
<p>Am 9. Mai soll Präsident Tokajew nach Moskau reisen, um an den Feierlichkeiten teilzunehmen, sagte ein
Sprecher des Kremls am Montag vor Journalisten.</p>
</article>
<footer>Impressum · Datenschutz · Kontakt</footer>
</body></html>
"""

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Zentralasien-Ticker</title><link>http://example.org/</link><description>Nachrichten</description>
<item><title>Tokajew empfängt Tschiwiljow</title>
<description>&lt;p&gt;Der Energieminister überbrachte eine persönliche Botschaft.&lt;/p&gt;</description></item>
<item><title>Lawrow spricht mit Kommersant.</title><description>Ein Interview über Kasachstan.</description></item>
</channel></rss>
"""

FEED_WITH_MARKUP = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Ticker</title>
<item><title>Markup</title>
<description>Er nannte AT&amp;amp;T einen &lt;b&gt;Partner&lt;/b&gt;.
Das Wort war &lt;i&gt;Zu&lt;/i&gt;sammenarbeit.</description>
</item></channel></rss>
"""

ROUTES = {
    "/article.html": (ARTICLE, "text/html; charset=utf-8"),
    "/feed.xml": (FEED, "application/rss+xml; charset=utf-8"),
    "/markup.xml": (FEED_WITH_MARKUP, "application/rss+xml; charset=utf-8"),
    "/notes.txt": ("Tokajew schwieg.\n\nLawrow sprach.", "text/plain; charset=utf-8"),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path not in ROUTES:
            self.send_error(404, "Not Found")
            return
        body, content_type = ROUTES[self.path]
        data = body.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 and a random port; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_load_url_keeps_the_articles_text_and_title(server: str) -> None:
    doc = load_url(SourceSpec("lawrow", url=f"{server}/article.html"))
    assert doc.title == "Lawrow im Interview"
    assert doc.origin == f"{server}/article.html"
    assert doc.lang == "de"
    assert "Sergej Lawrow gab dem Blatt Kommersant ein langes Interview" in doc.text
    assert "Am 9. Mai soll Präsident Tokajew nach Moskau reisen" in doc.text
    assert "Impressum" not in doc.text
    assert "<p>" not in doc.text
    assert any("Kommersant" in s.text for p in paragraphs(doc.text) for s in p.sentences)


def test_load_url_prefers_the_manifests_title_and_language(server: str) -> None:
    doc = load(SourceSpec("lawrow", title="Mein Titel", lang="ru", url=f"{server}/article.html"))
    assert (doc.title, doc.lang) == ("Mein Titel", "ru")


def test_load_url_of_plain_text(server: str) -> None:
    doc = load(SourceSpec("notes", url=f"{server}/notes.txt"))
    assert doc.text == "Tokajew schwieg.\n\nLawrow sprach."


def test_load_feed_makes_each_entry_a_paragraph(server: str) -> None:
    doc = load_feed(SourceSpec("ticker", feed=f"{server}/feed.xml"))
    assert doc.title == "Zentralasien-Ticker"
    assert doc.origin == f"{server}/feed.xml"
    assert doc.lang == "de"
    assert [p.text for p in paragraphs(doc.text)] == [
        "Tokajew empfängt Tschiwiljow. Der Energieminister überbrachte eine persönliche Botschaft.",
        "Lawrow spricht mit Kommersant. Ein Interview über Kasachstan.",
    ]


def test_feed_markup_becomes_plain_text(server: str) -> None:
    doc = load_feed(SourceSpec("ticker", feed=f"{server}/markup.xml"))
    assert doc.text == "Markup. Er nannte AT&T einen Partner. Das Wort war Zusammenarbeit."


@pytest.mark.parametrize("kind", ["url", "feed"])
def test_a_404_is_a_source_error(server: str, kind: str) -> None:
    url = f"{server}/gone.html"
    with pytest.raises(SourceError, match="answered 404") as caught:
        load(SourceSpec("gone", **{kind: url}))
    assert url in str(caught.value)


def test_an_html_page_is_not_a_feed(server: str) -> None:
    with pytest.raises(SourceError, match="not a readable feed"):
        load_feed(SourceSpec("page", feed=f"{server}/article.html"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["url", "feed"])
def test_an_unreachable_server_is_a_source_error(kind: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/article.html"
    with pytest.raises(SourceError, match="cannot fetch") as caught:
        load(SourceSpec("away", **{kind: url}))
    assert url in str(caught.value)


def test_only_http_urls_are_sources(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="only http and https"):
        load(SourceSpec("local", url=(tmp_path / "a.html").as_uri()))
