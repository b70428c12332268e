"""Sources: where documents come from (a file, a web page, a feed) and the manifest that lists them.

A `Document` holds the exact text that is indexed and quoted: every quote Briefbot shows is a slice
of `Document.text`. Loading never half-succeeds: it returns a whole document or raises `SourceError`.
"""

from __future__ import annotations

import hashlib
import html
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from bot.errors import SourceError

MAX_SOURCE_BYTES = 20 * 1024 * 1024
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text", ""}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One entry of a manifest: how to get a document, not the document itself."""

    id: str
    title: str | None = None
    lang: str | None = None
    path: Path | None = None
    url: str | None = None
    feed: str | None = None

    @property
    def location(self) -> str:
        """Where the document comes from, for messages."""
        return str(self.path or self.url or self.feed)


@dataclass(frozen=True, slots=True)
class Document:
    """A loaded source: its exact text and what we know about it."""

    id: str
    title: str
    text: str
    lang: str
    origin: str
    content_hash: str = field(default="")

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", content_hash(self.text, self.lang))


def content_hash(text: str, lang: str) -> str:
    """A stable key for a document's content: unchanged text is never re-embedded."""
    return hashlib.sha256(f"{lang}\0{text}".encode()).hexdigest()[:32]


def packaged_dir(name: str) -> Path:
    """The folder `seeds` or `prompts`: inside the wheel, or at the repository root when editable."""
    bundled = resources.files("bot") / "_data" / name
    if bundled.is_dir():
        return Path(str(bundled))
    return Path(__file__).resolve().parent.parent / name


def default_manifest() -> Path:
    """The manifest of the packaged seed sources."""
    return packaged_dir("seeds") / "sources.toml"


def read_manifest(path: Path) -> list[SourceSpec]:
    """Parse a sources.toml manifest into specs; paths are resolved against the manifest's folder."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SourceError(f"sources manifest not found: {path}") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SourceError(f"cannot read sources manifest {path}: {exc}") from exc
    specs = []
    seen: set[str] = set()
    for entry in data.get("source", []):
        spec = _spec_from_entry(entry, path.parent)
        if spec.id in seen:
            raise SourceError(f"{path}: source id {spec.id!r} is listed twice")
        seen.add(spec.id)
        specs.append(spec)
    return specs


def _spec_from_entry(entry: dict[str, object], base: Path) -> SourceSpec:
    source_id = str(entry.get("id", ""))
    if not SOURCE_ID.match(source_id):
        raise SourceError(f"invalid source id {source_id!r}: use letters, digits, '.', '_' or '-'")
    kinds = [key for key in ("path", "url", "feed") if entry.get(key)]
    if len(kinds) != 1:
        raise SourceError(f"source {source_id!r} needs exactly one of path, url, feed")
    path = Path(str(entry["path"])) if "path" in kinds else None
    if path is not None and not path.is_absolute():
        path = base / path
    return SourceSpec(
        id=source_id,
        title=_opt_str(entry.get("title")),
        lang=_opt_str(entry.get("lang")),
        path=path,
        url=_opt_str(entry.get("url")),
        feed=_opt_str(entry.get("feed")),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def write_manifest(path: Path, specs: list[SourceSpec]) -> None:
    """Write specs as a sources.toml manifest (atomically: a temp file, then a rename)."""
    lines = ["# Sources indexed by Briefbot; edited by `briefbot sources` and admin commands.", ""]
    for spec in specs:
        lines.append("[[source]]")
        for key in ("id", "title", "lang"):
            value = getattr(spec, key)
            if value:
                lines.append(f"{key} = {_toml_str(value)}")
        if spec.path is not None:
            lines.append(f"path = {_toml_str(str(spec.path))}")
        for key in ("url", "feed"):
            value = getattr(spec, key)
            if value:
                lines.append(f"{key} = {_toml_str(value)}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(path)


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def decode_text(data: bytes, origin: str) -> str:
    """Decode bytes as UTF-8 text, refusing binary and oversized input."""
    if len(data) > MAX_SOURCE_BYTES:
        raise SourceError(f"{origin}: {len(data)} bytes is more than the {MAX_SOURCE_BYTES} allowed")
    if b"\0" in data[:8192]:
        raise SourceError(f"{origin}: looks like a binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{origin}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not text.strip():
        raise SourceError(f"{origin}: the source is empty")
    return text


def html_to_text(html: str, origin: str) -> tuple[str, str | None]:
    """Extract an article's main text and title from HTML with trafilatura."""
    import trafilatura

    extracted = trafilatura.bare_extraction(html, include_comments=False, with_metadata=True)
    text = getattr(extracted, "text", None) if extracted is not None else None
    if not text or not text.strip():
        raise SourceError(f"{origin}: no readable text found in the HTML")
    title = getattr(extracted, "title", None)
    return text, title


def load_bytes(
    spec_id: str, data: bytes, *, name: str, title: str | None = None, lang: str | None = None
) -> Document:
    """Build a Document from uploaded or read bytes; HTML is reduced to its text."""
    text = decode_text(data, name)
    suffix = Path(name).suffix.lower()
    if suffix in HTML_SUFFIXES or (suffix not in TEXT_SUFFIXES and _looks_like_html(text)):
        text, html_title = html_to_text(text, name)
        title = title or html_title
    elif suffix not in TEXT_SUFFIXES:
        raise SourceError(f"{name}: unsupported file type {suffix!r} (use .txt, .md or .html)")
    return Document(
        id=spec_id,
        title=title or _title_from_text(text, spec_id),
        text=text,
        lang=lang or guess_language(text),
        origin=name,
    )


def _looks_like_html(text: str) -> bool:
    head = text[:2048].lower()
    return "<html" in head or "<!doctype html" in head


def load_file(spec: SourceSpec) -> Document:
    """Read a local file source."""
    assert spec.path is not None
    try:
        data = spec.path.read_bytes()
    except FileNotFoundError as exc:
        raise SourceError(f"source {spec.id!r}: file not found: {spec.path}") from exc
    except IsADirectoryError as exc:
        raise SourceError(f"source {spec.id!r}: {spec.path} is a folder, not a file") from exc
    except OSError as exc:
        raise SourceError(f"source {spec.id!r}: cannot read {spec.path}: {exc.strerror}") from exc
    return load_bytes(spec.id, data, name=str(spec.path), title=spec.title, lang=spec.lang)


def load_url(spec: SourceSpec, *, timeout: float = 20.0) -> Document:
    """Fetch a web page and keep its main text."""
    assert spec.url is not None
    data, content_type = _fetch(spec.url, timeout)
    name = "page.html" if "html" in content_type else (Path(urlsplit(spec.url).path).name or "page.txt")
    doc = load_bytes(spec.id, data, name=name, title=spec.title, lang=spec.lang)
    return Document(id=doc.id, title=doc.title, text=doc.text, lang=doc.lang, origin=spec.url)


def load_feed(spec: SourceSpec, *, timeout: float = 20.0) -> Document:
    """Fetch an RSS/Atom feed; its entries become paragraphs of one document."""
    import feedparser

    assert spec.feed is not None
    data, _ = _fetch(spec.feed, timeout)
    parsed = feedparser.parse(data)
    if parsed.bozo and not parsed.entries:
        raise SourceError(f"source {spec.id!r}: {spec.feed} is not a readable feed ({parsed.bozo_exception})")
    paragraphs = []
    for entry in parsed.entries:
        title = _clean_feed_text(entry.get("title", ""))
        summary = _clean_feed_text(entry.get("summary", ""))
        text = ". ".join(part for part in (title.rstrip("."), summary) if part)
        if text:
            paragraphs.append(text)
    if not paragraphs:
        raise SourceError(f"source {spec.id!r}: the feed {spec.feed} has no entries")
    text = "\n\n".join(paragraphs)
    title = spec.title or _clean_feed_text(parsed.feed.get("title", "")) or spec.id
    return Document(
        id=spec.id, title=title, text=text, lang=spec.lang or guess_language(text), origin=spec.feed
    )


_BLOCK_TAG = re.compile(r"<\s*/?\s*(?:br|p|div|li|ul|ol|h[1-6]|tr|td|blockquote)\b[^>]*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^>]+>")


def _clean_feed_text(value: str) -> str:
    """Feed HTML as plain text: block tags become spaces, inline tags vanish, entities decoded."""
    text = _ANY_TAG.sub("", _BLOCK_TAG.sub(" ", value))
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def _fetch(url: str, timeout: float) -> tuple[bytes, str]:
    import httpx

    if not url.startswith(("http://", "https://")):
        raise SourceError(f"{url}: only http and https URLs can be sources")
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            with client.stream("GET", url, headers={"User-Agent": "briefbot/0.1"}) as response:
                response.raise_for_status()
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_SOURCE_BYTES:
                        raise SourceError(f"{url}: larger than {MAX_SOURCE_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type", "")
    except httpx.HTTPStatusError as exc:
        raise SourceError(f"{url}: the server answered {exc.response.status_code}") from exc
    except httpx.HTTPError as exc:
        raise SourceError(f"{url}: cannot fetch ({type(exc).__name__}: {exc})") from exc


def load(spec: SourceSpec) -> Document:
    """Load any kind of source."""
    if spec.path is not None:
        return load_file(spec)
    if spec.url is not None:
        return load_url(spec)
    if spec.feed is not None:
        return load_feed(spec)
    raise SourceError(f"source {spec.id!r} has no path, url or feed")


def _title_from_text(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 80 else line[:77].rstrip() + "…"
    return fallback


_STOPWORDS = {
    "de": {"der", "die", "das", "und", "nicht", "ist", "ein", "eine", "mit", "auf", "den", "dem", "sich"},
    "en": {"the", "and", "of", "to", "is", "in", "that", "it", "with", "for", "was", "on", "are"},
    "ru": {"и", "в", "не", "на", "что", "с", "он", "как", "это", "по", "но", "из", "к"},
}


def guess_language(text: str) -> str:
    """Guess de, en or ru from stopwords; 'en' when nothing tells."""
    words = re.findall(r"\w+", text[:20000].lower())
    counts = {lang: sum(1 for word in words if word in stop) for lang, stop in _STOPWORDS.items()}
    best = max(counts, key=lambda lang: counts[lang])
    return best if counts[best] else "en"
