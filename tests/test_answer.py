"""Answers over the seed article: cross-lingual retrieval, verbatim quotes with citations, abstention."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.answer import Answer
from bot.briefing import Briefing, clean_question
from bot.errors import InputError
from bot.segment import paragraphs

SEED_ID = "putin-tokajew"
EXPLAINS_THE_CALL = ("Kommersant", "Daher musste Putin Tokajew beruhigen")


def assert_exact_quotes(briefing: Briefing, answer: Answer) -> None:
    """Every quote is a verbatim span of its document, cited with its title and paragraph."""
    documents = {doc.id: doc for doc in briefing.index.documents}
    assert answer.answered == bool(answer.quotes)
    for quote in answer.quotes:
        doc = documents[quote.source]
        assert doc.text[quote.start : quote.end] == quote.text
        assert quote.title == doc.title
        (containing,) = [p for p in paragraphs(doc.text) if p.start <= quote.start and quote.end <= p.end]
        assert quote.paragraph == containing.number
    scores = [q.score for q in answer.quotes]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "question",
    [
        pytest.param("Why did Putin call Tokayev?", id="en"),
        pytest.param("Warum rief Putin Tokajew an?", id="de"),
        pytest.param("Warum hat Putin Tokajew angerufen?", id="de-perfect"),
        pytest.param("Почему Путин позвонил Токаеву?", id="ru"),
        pytest.param("Зачем Путин звонил Токаеву?", id="ru-2"),
    ],
)
def test_headline_question_is_answered_with_german_quotes_that_explain_it(
    seed_briefing: Briefing, question: str
) -> None:
    answer = seed_briefing.ask(question)
    assert answer.answered
    assert answer.question == question
    assert 1 <= len(answer.quotes) <= seed_briefing.settings.quotes_per_answer
    assert {q.source for q in answer.quotes} == {SEED_ID}
    assert_exact_quotes(seed_briefing, answer)
    assert any(marker in q.text for q in answer.quotes for marker in EXPLAINS_THE_CALL), [
        q.text for q in answer.quotes
    ]


@pytest.mark.parametrize(
    "question",
    [
        "Warum ruft Putin an, schreibt und demonstriert er auf jede erdenkliche Weise seine Wohlgesonnenheit?",
        "Was ist der Grund für die so beharrliche Aufmerksamkeit des russischen Präsidenten auf seinen "
        "kasachischen Kollegen?",
        "Why did Putin call Tokayev?",
        "Warum kann das in Kasachstan nicht geschehen?",
        "Почему Путин позвонил Токаеву?",
    ],
)
def test_a_question_in_the_source_is_never_quoted_as_its_answer(seed_briefing: Briefing, question: str) -> None:
    answer = seed_briefing.ask(question)
    (doc,) = seed_briefing.index.documents
    asked = [s for p in paragraphs(doc.text) for s in p.sentences if s.is_question]
    assert asked
    for quote in answer.quotes:
        assert not quote.text.rstrip(" \"'“”»«)").endswith("?")
        assert not any(s.start < quote.end and quote.start < s.end for s in asked), quote.text


def test_the_source_question_is_answered_by_the_paragraph_that_answers_it(seed_briefing: Briefing) -> None:
    answer = seed_briefing.ask(
        "Warum ruft Putin an, schreibt und demonstriert er auf jede erdenkliche Weise seine Wohlgesonnenheit?"
    )
    assert answer.quotes[0].paragraph == 3
    assert "Kommersant" in answer.quotes[0].text


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of France?",
        "What is the population of Germany?",
        "Was ist die Hauptstadt von Frankreich?",
        "Какая столица Франции?",
    ],
)
def test_unanswerable_questions_abstain_without_quotes(seed_briefing: Briefing, question: str) -> None:
    answer = seed_briefing.ask(question)
    assert answer.answered is False
    assert answer.quotes == []
    assert answer.text
    assert answer.to_dict()["quotes"] == []


@pytest.mark.parametrize(
    ("question", "name"),
    [
        pytest.param("Who is Sergei Tsivilev?", "Tschiwiljow", id="en-Tsivilev"),
        pytest.param("Wer ist Tschiwiljow?", "Tschiwiljow", id="de-Tschiwiljow"),
        pytest.param("Кто такой Цивилёв?", "Tschiwiljow", id="ru-Tsivilev"),
        pytest.param("Who is Lukashenko?", "Lukaschenko", id="en-Lukashenko"),
        pytest.param("Кто такой Сергей Лавров?", "Lawrow", id="ru-Sergei-Lavrov"),
        *(
            pytest.param(
                question,
                name,
                id=ident,
            )
            for question, name, ident in [
                ("Who is Tokayev?", "Tokajew", "en-Tokayev"),
                ("Кто такой Токаев?", "Tokajew", "ru-Tokaev"),
                ("Wer ist Lawrow?", "Lawrow", "de-Lawrow"),
                ("Кто такой Лавров?", "Lawrow", "ru-Lavrov"),
            ]
        ),
    ],
)
def test_who_is_a_person_of_the_article(seed_briefing: Briefing, question: str, name: str) -> None:
    answer = seed_briefing.ask(question)
    assert answer.answered
    assert any(name in q.text for q in answer.quotes)


@pytest.mark.parametrize(
    "question",
    [
        "Why did Putin call Tokayev?",
        "Who is Sergei Tsivilev?",
        "Which territories did Russia annex after Tokayev's speech?",
        "Was sagte Lawrow dem Kommersant?",
        "Что Лавров сказал Коммерсанту?",
        "Wann soll Tokajew Moskau besuchen?",
        "<b>why</b> did **Putin** call `Tokayev`?",
    ],
)
def test_quotes_are_exact_spans_with_their_citation(seed_briefing: Briefing, question: str) -> None:
    answer = seed_briefing.ask(question)
    assert answer.answered
    assert_exact_quotes(seed_briefing, answer)
    assert all(q.title == "Warum Putin Tokajew umwirbt" for q in answer.quotes)


MIXED = st.sampled_from(
    [
        "Putin", "Tokajew", "Токаев", "Lavrov", "why", "warum", "почему", "?", "!", "😀", "👩\u200d👩\u200d👧",
        "\x00", "\x1b[31m", "\u202e", "\u200b", "\ufeff", "שלום", "مرحبا", "<b>", "</b>", "<script>x</script>",
        "**bold**", "`code`", "[x](http://a.b)", "# ", "\n", "\t", " ", "9. Mai", "z. B.", "e\u0301",
    ]
)
QUESTIONS = st.one_of(
    st.just(""),
    st.text(max_size=200),
    st.lists(MIXED, max_size=40).map(" ".join),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1900, max_size=2100),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(QUESTIONS)
def test_any_question_gives_an_input_error_or_exact_quotes(seed_briefing: Briefing, question: str) -> None:
    try:
        answer = seed_briefing.ask(question)
    except InputError as exc:
        assert str(exc)
        return
    assert len(question) <= seed_briefing.settings.max_question_chars
    assert answer.question == question
    assert_exact_quotes(seed_briefing, answer)


@pytest.mark.parametrize("question", ["", "   ", "\n\t", "?!", "\x00\x01", "\u200b\u200f", "😀 😀"])
def test_clean_question_refuses_empty_questions(question: str) -> None:
    with pytest.raises(InputError, match="empty"):
        clean_question(question, 2000)


def test_clean_question_refuses_oversized_questions() -> None:
    assert clean_question("x" * 2000, 2000) == "x" * 2000
    with pytest.raises(InputError, match="too long"):
        clean_question("x" * 2001, 2000)
    with pytest.raises(InputError, match="too long"):
        clean_question("Warum? " * 20_000, 2000)


def test_clean_question_normalises_whitespace_controls_and_unicode() -> None:
    assert clean_question("  Warum\x00 ruft\n\tPutin\u200b an? ", 2000) == "Warum ruft Putin an?"
    assert clean_question("Кто такой Цивиле\u0308в?", 2000) == "Кто такой Цивилёв?"


def test_briefing_ask_raises_input_error_for_bad_questions(seed_briefing: Briefing) -> None:
    with pytest.raises(InputError):
        seed_briefing.ask("  ")
    with pytest.raises(InputError):
        seed_briefing.ask("a" * (seed_briefing.settings.max_question_chars + 1))
