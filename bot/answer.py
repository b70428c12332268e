"""Extractive answers: the passages that answer a question, quoted verbatim with their citations.

From the ranked sentences, a sentence that is itself a question in the source ("Warum ruft Putin
an …?") is never quoted as an answer: its relevance is handed to the sentences that follow it, where
the source gives its answer. A chosen sentence is merged with a neighbour in its paragraph when the
neighbour is nearly as relevant, so that a quote reads as a passage. The answer abstains when even
the best passage is not close enough to the question.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bot.index import Hit, Index

ABSTAIN_BELOW = 0.25  # fused score of the best passage under which the sources do not answer ...
ANCHOR_LEXICAL = 0.3  # ... unless a rare question word (a name, a year, a term) was found in a passage
COVERED_FLOOR = 0.15  # ... or every content word of the question is in the sources ("Who is Tokayev?")
KEEP_RATIO = 0.5  # further quotes must score at least this share of the best one
MERGE_RATIO = 0.85  # a neighbour this close to its sentence's score joins the passage
MAX_PASSAGE_CHARS = 700
QUESTION_HANDOFF = 0.95  # share of a source question's score handed to the answer that follows ...
HANDOFF_GATE = 0.55  # ... when the user asks much the same (cosine of the two questions alone)
ONE_QUOTE_PER_PARAGRAPH = False  # True: every quote from another paragraph


@dataclass(frozen=True, slots=True)
class Quote:
    """A verbatim span of a source: `text == document.text[start:end]`."""

    text: str
    source: str
    title: str
    paragraph: int
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class Answer:
    """The core's reply to a question: whether the sources answer it, a short text, and the quotes."""

    question: str
    answered: bool
    text: str
    quotes: list[Quote] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of `briefbot ask --json`."""
        return {
            "question": self.question,
            "answered": self.answered,
            "answer": self.text,
            "quotes": [
                {
                    "text": q.text,
                    "source": q.source,
                    "title": q.title,
                    "paragraph": q.paragraph,
                    "start": q.start,
                    "end": q.end,
                    "score": round(q.score, 4),
                }
                for q in self.quotes
            ],
        }


NOT_ANSWERED = "The sources do not answer this question."


def extract(index: Index, hits: list[Hit], question: str, max_quotes: int = 3) -> Answer:
    """Turn ranked sentences into an Answer of up to max_quotes verbatim passages."""
    if not hits:
        return Answer(question, False, NOT_ANSWERED)
    scores = np.zeros(len(index), dtype=np.float32)
    for hit in hits:
        scores[hit.unit] = hit.score
    statements = [int(i) for i in np.argsort(-scores, kind="stable") if not index.units[int(i)].is_question]
    covered = index.lexical.coverage(question) >= 1.0
    if not statements or not _answerable(hits, float(scores[statements[0]]), covered):
        return Answer(question, False, NOT_ANSWERED)  # judged on the statements' own evidence
    cosines = {hit.unit: hit.cosine for hit in hits}
    scores = _hand_off_questions(index, scores, cosines)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if not index.units[int(i)].is_question]
    best = float(scores[order[0]])
    used: set[int] = set()
    quoted_paragraphs: set[tuple[int, int]] = set()
    quotes: list[Quote] = []
    for unit in order:
        if len(quotes) >= max_quotes or scores[unit] < best * KEEP_RATIO:
            break
        where = (index.units[unit].doc, index.units[unit].paragraph)
        if unit in used or (ONE_QUOTE_PER_PARAGRAPH and where in quoted_paragraphs):
            continue
        quoted_paragraphs.add(where)
        span = _passage(index, scores, unit, used)
        used.update(span)
        quotes.append(_quote(index, span, float(scores[unit])))
    return Answer(question, True, quotes[0].text, quotes)


def _answerable(hits: list[Hit], best: float, covered: bool) -> bool:
    """Whether the best passage is close enough to the question to count as an answer."""
    if best >= ABSTAIN_BELOW or (covered and best >= COVERED_FLOOR):
        return True
    anchored = max((h.lexical for h in hits if h.score >= best * KEEP_RATIO), default=0.0)
    return anchored >= ANCHOR_LEXICAL


def _hand_off_questions(index: Index, scores: np.ndarray, cosines: dict[int, float]) -> np.ndarray:
    """Give the best-matching source questions' scores to the statements that answer them."""
    out = scores.copy()
    units = index.units
    for i, unit in enumerate(units):
        if not unit.is_question or cosines.get(i, 0.0) < HANDOFF_GATE:
            continue
        j = i + 1
        while j < len(units) and units[j].doc == unit.doc and units[j].is_question:
            j += 1
        answer_para = units[j].paragraph if j < len(units) and units[j].doc == unit.doc else None
        for k in range(j, min(j + 2, len(units))):
            if units[k].doc != unit.doc or units[k].paragraph != answer_para:
                break
            out[k] = max(out[k], scores[i] * QUESTION_HANDOFF)
    return out


def _passage(index: Index, scores: np.ndarray, unit: int, used: set[int]) -> list[int]:
    """The unit plus neighbours in its paragraph that are nearly as relevant."""
    units = index.units
    span = [unit]
    threshold = scores[unit] * MERGE_RATIO
    length = units[unit].end - units[unit].start
    for step in (-1, 1):
        j = unit + step
        while 0 <= j < len(units) and j not in used:
            same_para = units[j].doc == units[unit].doc and units[j].paragraph == units[unit].paragraph
            if not same_para or units[j].is_question or scores[j] < threshold:
                break
            length += units[j].end - units[j].start
            if length > MAX_PASSAGE_CHARS:
                break
            span.append(j)
            j += step
    return sorted(span)


def _quote(index: Index, span: list[int], score: float) -> Quote:
    first, last = index.units[span[0]], index.units[span[-1]]
    doc = index.documents[first.doc]
    return Quote(
        text=doc.text[first.start : last.end],
        source=doc.id,
        title=doc.title,
        paragraph=first.paragraph,
        start=first.start,
        end=last.end,
        score=score,
    )
