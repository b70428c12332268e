"""An optional language model behind any OpenAI-compatible API, that may improve an answer's wording.

The model sees only the passages the offline retrieval found, numbered, and must reply with JSON:
an answer and quotes copied from those passages. Every quote is checked against the source: only
exact spans of a document survive (located and given their real offsets and paragraph). Any failure
(unreachable server, wrong key, timeout, malformed reply, no quote surviving the check) falls back to
the offline answer, which is computed first and always available.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from string import Template
from typing import Protocol

from bot.answer import NOT_ANSWERED, Answer, Quote
from bot.config import Settings
from bot.errors import ConfigError, LLMError
from bot.index import Hit, Index
from bot.sources import packaged_dir

log = logging.getLogger(__name__)

CANDIDATE_PASSAGES = 8


class LLM(Protocol):
    """A chat model: messages in, the reply's text out (raises LLMError)."""

    def complete(self, messages: list[dict[str, str]]) -> str:
        """Return the assistant's reply to the messages."""
        ...


class OpenAIChat:
    """Chat completions through the `openai` client, against OpenAI or any compatible server."""

    def __init__(
        self, model: str, *, api_key: str | None, base_url: str | None, timeout: float = 30.0
    ) -> None:
        import openai

        self.model = model
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, max_retries=1
        )

    def complete(self, messages: list[dict[str, str]]) -> str:
        """One chat completion; library errors become LLMError without any secret in the message."""
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=0  # type: ignore[arg-type]
            )
        except self._openai.APIStatusError as exc:
            raise LLMError(f"the model server answered {exc.status_code}") from exc
        except self._openai.APITimeoutError as exc:
            raise LLMError("the model server did not answer in time") from exc
        except self._openai.APIConnectionError as exc:
            raise LLMError("cannot reach the model server") from exc
        except self._openai.OpenAIError as exc:
            raise LLMError(f"the model call failed ({type(exc).__name__})") from exc
        if not response.choices or not response.choices[0].message.content:
            raise LLMError("the model returned an empty reply")
        return response.choices[0].message.content


def render_prompt(name: str, **values: object) -> str:
    """Load prompts/NAME.md and fill its $placeholders."""
    path = packaged_dir("prompts") / f"{name}.md"
    try:
        template = Template(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LLMError(f"prompt {name!r} not found at {path}") from exc
    return template.substitute({key: str(value) for key, value in values.items()})


@dataclass(frozen=True, slots=True)
class Passage:
    """A candidate passage shown to the model: a paragraph of a document."""

    doc: int
    paragraph: int
    start: int
    end: int


def candidate_passages(
    index: Index, hits: list[Hit], offline: Answer, limit: int = CANDIDATE_PASSAGES
) -> list[Passage]:
    """The paragraphs of the offline answer's quotes, then of the best-scoring sentences, no repeats."""
    doc_of = {d.id: i for i, d in enumerate(index.documents)}
    keys = [(doc_of[q.source], q.paragraph) for q in offline.quotes if q.source in doc_of]
    keys += [(index.units[h.unit].doc, index.units[h.unit].paragraph) for h in hits]
    seen: set[tuple[int, int]] = set()
    out = []
    for key in keys:
        if key in seen:
            continue
        seen.add(key)
        para = index.paragraphs_of[key[0]][key[1] - 1]
        out.append(Passage(key[0], key[1], para.start, para.end))
        if len(out) >= limit:
            break
    return out


def improve(
    llm: LLM, index: Index, hits: list[Hit], offline: Answer, question: str, max_quotes: int
) -> Answer:
    """Ask the model for a better-worded answer; return the offline one if anything fails."""
    passages = candidate_passages(index, hits, offline)
    if not passages:
        return offline
    listing = "\n\n".join(
        f"[{n}] ({index.documents[p.doc].title}, ¶{p.paragraph})\n{index.documents[p.doc].text[p.start:p.end]}"
        for n, p in enumerate(passages, 1)
    )
    prompt = render_prompt("answer", question=question, passages=listing, max_quotes=max_quotes)
    try:
        reply = llm.complete([{"role": "user", "content": prompt}])
        scores = {h.unit: h.score for h in hits}
        return _parse(reply, index, passages, scores, question, max_quotes)
    except LLMError as exc:
        log.warning("language model not used, answering offline: %s", exc)
        return offline


def _parse(
    reply: str, index: Index, passages: list[Passage], scores: dict[int, float], question: str, max_quotes: int
) -> Answer:
    data = _json_object(reply)
    if data.get("answered") is False:
        return Answer(question, False, NOT_ANSWERED, [])
    text = data.get("answer")
    raw_quotes = data.get("quotes")
    if not isinstance(text, str) or not text.strip() or not isinstance(raw_quotes, list):
        raise LLMError("the model's reply lacks an answer or quotes")
    quotes: list[Quote] = []
    for item in raw_quotes:
        quote = _verified(item, index, passages, scores)
        if quote is None:
            log.info("dropped a model quote that is not in the source: %r", str(item)[:120])
        elif all(q.start != quote.start or q.source != quote.source for q in quotes):
            quotes.append(quote)
    if not quotes:
        raise LLMError("none of the model's quotes is an exact span of a source")
    return Answer(question, True, text.strip(), quotes[:max_quotes])


def _json_object(reply: str) -> dict[str, object]:
    match = re.search(r"\{.*\}", reply, re.DOTALL)
    if match is None:
        raise LLMError("the model did not reply with JSON")
    try:
        data = json.loads(match.group(0))
    except ValueError as exc:
        raise LLMError("the model's JSON does not parse") from exc
    if not isinstance(data, dict):
        raise LLMError("the model's JSON is not an object")
    return data


def _verified(item: object, index: Index, passages: list[Passage], scores: dict[int, float]) -> Quote | None:
    """The quote as an exact span of its passage (or of any shown passage), else None."""
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        return None
    text = item["text"].strip().strip("\"„“”«»").strip()
    if len(text) < 8:
        return None
    number = item.get("passage")
    ordered = list(passages)
    if isinstance(number, int) and 1 <= number <= len(passages):
        ordered.insert(0, passages[number - 1])
    for passage in ordered:
        doc = index.documents[passage.doc]
        found = doc.text.find(text, passage.start, passage.end)
        if found != -1:
            end = found + len(text)
            score = max(
                (scores.get(i, 0.0) for i, u in enumerate(index.units)
                 if u.doc == passage.doc and u.start < end and u.end > found),
                default=0.0,
            )
            return Quote(text, doc.id, doc.title, passage.paragraph, found, end, score)
    return None


def from_settings(settings: Settings) -> LLM | None:
    """The configured model, or None when no model is configured (the offline default)."""
    if not settings.llm_model:
        return None
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key is None and settings.openai_base_url is None:
        raise ConfigError("BRIEFBOT_LLM_MODEL is set but neither OPENAI_API_KEY nor OPENAI_BASE_URL is")
    return OpenAIChat(
        settings.llm_model, api_key=key, base_url=settings.openai_base_url, timeout=settings.llm_timeout
    )
