"""Paragraphs and sentences with character offsets into the exact source text.

Paragraphs are separated by blank lines; a text without any blank line (one paragraph a line, as
many articles are saved) is split at every line break. Sentences end at '.', '!', '?' or '…' followed
by space, except where German, English and Russian writing uses the period otherwise: ordinals
("am 9. Mai"), abbreviations ("z. B.", "Dr.", "т. е."), initials ("W. Putin"), and anything inside
a quotation („…“, “…”, «…»). Offsets always slice the original text: `text[s.start:s.end] == s.text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sentence:
    """A sentence: its text is exactly `document[start:end]`."""

    start: int
    end: int
    text: str
    paragraph: int  # 1-based
    index: int  # 0-based position within the paragraph

    @property
    def is_question(self) -> bool:
        """True when the sentence asks rather than tells."""
        return self.text.rstrip(" \"'“”»«)").endswith(("?", "？"))


@dataclass(frozen=True, slots=True)
class Paragraph:
    """A paragraph: `document[start:end]`, numbered from 1, with its sentences."""

    number: int
    start: int
    end: int
    text: str
    sentences: tuple[Sentence, ...]


ABBREVIATIONS = frozenset(
    """
    z.b d.h u.a u.ä o.ä bzw ca dr prof nr st usw vgl etc mr mrs ms jr sr e.g i.e vs jh jhd mio mrd
    sog ggf inkl evtl bspw hr fr abs art s.o s.u u.v.m z.t d.i a.d gen no fig approx dept est
    corp inc ltd co mt u.s u.k jan feb mar apr jun jul aug sep sept oct okt nov dec dez
    т.е т.д т.п т.к г гг им ул др пр см напр тыс млн млрд руб ст
    """.split()
)
_ENDERS = ".!?…"
_CLOSERS = "\"'“”»’)]"
_OPEN_QUOTES = {"„": "“", "«": "»", "‹": "›", "“": "”", "‚": "‘"}
_BOUNDARY = re.compile(r"[.!?…]+[\"'“”»’)\]]*(?=\s+)")
_PARA_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_LINE_BREAK = re.compile(r"\s*\n\s*")
_WORD_BEFORE = re.compile(r"([\w.]+)$")
MAX_QUOTED_SPAN = 1500


def paragraphs(text: str) -> list[Paragraph]:
    """Split a document into numbered paragraphs with their sentences."""
    breaker = _PARA_BREAK if _PARA_BREAK.search(text) else _LINE_BREAK
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in breaker.finditer(text):
        spans.append((pos, match.start()))
        pos = match.end()
    spans.append((pos, len(text)))
    result: list[Paragraph] = []
    for start, end in spans:
        start, end = _strip(text, start, end)
        if start >= end:
            continue
        number = len(result) + 1
        sentences = tuple(
            Sentence(s, e, text[s:e], number, i) for i, (s, e) in enumerate(sentence_spans(text, start, end))
        )
        result.append(Paragraph(number, start, end, text[start:end], sentences))
    return result


def sentences(text: str) -> list[Sentence]:
    """All sentences of a document, in order."""
    return [s for p in paragraphs(text) for s in p.sentences]


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence (start, end) offsets within text[start:end], whitespace trimmed."""
    end = len(text) if end is None else end
    quoted = _quoted_ranges(text, start, end)
    spans: list[tuple[int, int]] = []
    pos = start
    for match in _BOUNDARY.finditer(text, start, end):
        cut = match.end()
        if _inside(quoted, cut - 1) or not _is_boundary(text, match.start(), cut, end):
            continue
        spans.append(_strip(text, pos, cut))
        pos = cut
    spans.append(_strip(text, pos, end))
    return [(s, e) for s, e in spans if s < e]


def _is_boundary(text: str, dot: int, cut: int, end: int) -> bool:
    """Decide whether the punctuation at `dot` ends a sentence."""
    nxt = _next_visible(text, cut, end)
    if nxt is None:
        return True
    if text[dot] != ".":
        return not nxt.islower()
    if nxt.islower() or nxt in ",;:":
        return False
    word = _WORD_BEFORE.search(text, max(0, dot - 40), dot)
    if word is None:
        return True
    token = word.group(1)
    bare = token.strip(".").lower()
    if token.isdigit():
        # "am 9. Mai", "im 20. Jahrhundert": ordinals; a four-digit year may end a sentence.
        return len(token) >= 4
    if bare in ABBREVIATIONS or (len(bare) == 1 and bare.isalpha()):
        return False
    if "." in bare and len(bare) <= 6:  # "z.B.", "U.S.", "т.е." written without spaces
        return False
    return True


def _next_visible(text: str, pos: int, end: int) -> str | None:
    while pos < end and text[pos].isspace():
        pos += 1
    if pos >= end:
        return None
    while pos < end and text[pos] in "„“”«»\"'‚‘(":
        pos += 1
    return text[pos] if pos < end else None


def _quoted_ranges(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Ranges inside paired quotation marks, where sentence ends are not split."""
    ranges: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        ch = text[pos]
        closer = _OPEN_QUOTES.get(ch)
        if closer is None and ch == '"':
            closer = '"'
        if closer is not None:
            limit = min(end, pos + MAX_QUOTED_SPAN)
            close = _find_closer(text, pos + 1, limit, ch, closer)
            if close != -1:
                ranges.append((pos, close))
                pos = close + 1
                continue
        pos += 1
    return ranges


def _find_closer(text: str, pos: int, limit: int, opener: str, closer: str) -> int:
    if opener == "„":  # German „…“ (or „…” in some typesetting)
        candidates = [text.find(c, pos, limit) for c in ("“", "”")]
        found = [c for c in candidates if c != -1]
        return min(found) if found else -1
    return text.find(closer, pos, limit)


def _inside(ranges: list[tuple[int, int]], pos: int) -> bool:
    return any(s < pos < e for s, e in ranges)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
