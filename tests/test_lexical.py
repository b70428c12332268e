"""Lexical matching: names across spellings and scripts, and BM25 evidence for the words a question shares."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from bot.lexical import LexicalIndex, content_words, question_language, similar_spelling, skeleton

SAME_NAME = [
    ("Tokayev", "Tokajew", "Токаев"),
    ("Lavrov", "Lawrow", "Лавров"),
    ("Tsivilev", "Tschiwiljow", "Цивилёв"),
    ("Lukashenko", "Lukaschenko", "Лукашенко"),
    ("Kommersant", "Kommersant", "Коммерсант"),
]


@pytest.mark.parametrize("spellings", SAME_NAME, ids=lambda names: names[0])
def test_one_name_in_every_spelling_and_script(spellings: tuple[str, str, str]) -> None:
    for a, b in permutations(spellings, 2):
        assert similar_spelling(a, b), (a, b)
        assert similar_spelling(a.lower(), b.upper()), (a, b)
    assert len({skeleton(name) for name in spellings}) == 1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Tokayev", "Lavrov"),
        ("Tokajew", "Tokio"),
        ("Putin", "Patent"),
        ("Lawrow", "Leber"),
        ("Лавров", "Луганск"),
        ("Moskau", "Minsk"),
        ("Kasachstan", "Kosovo"),
        ("Kreml", "Krim"),
        ("Präsident", "Parlament"),
        ("ab", "ob"),  # too short to be a name
    ],
)
def test_unrelated_words_do_not_match(a: str, b: str) -> None:
    assert not similar_spelling(a, b)
    assert not similar_spelling(b, a)


@pytest.mark.parametrize(("a", "b"), [("Potanin", "Putin"), ("water", "weiter"), ("most", "musste")])
def test_false_friends_do_not_match(a: str, b: str) -> None:
    assert not similar_spelling(a, b)


DOC = [
    "Und selbst wenn man annimmt, dass diese Äußerungen mit dem russischen Ribbentrop im Kreml abgestimmt wurden.",
    "Der russische Außenminister Sergej Lawrow gab dem Blatt Kommersant ein Interview.",
    "Tokajew empfing den Energieminister Sergej Tschiwiljow in Astana.",
    "Kasachstan bewahrte die Möglichkeit, zwischen Russland und anderen Staaten zu manövrieren.",
]


@pytest.fixture(scope="module")
def lexical() -> LexicalIndex:
    return LexicalIndex.build(DOC, ["de"] * len(DOC))


def expanded(index: LexicalIndex, question: str) -> dict[str, list[str]]:
    return dict(index.expand(question))


@pytest.mark.parametrize(
    ("question", "word", "document_word"),
    [
        ("Кем был Риббентроп?", "риббентроп", "ribbentrop"),
        ("Кого называют Риббентропом?", "риббентропом", "ribbentrop"),
        ("Что сказал Лавров?", "лавров", "lawrow"),
        ("Что ответили Лаврову?", "лаврову", "lawrow"),
        ("Почему Путин позвонил Токаеву?", "токаеву", "tokajew"),
        ("Кто такой Цивилёв?", "цивилёв", "tschiwiljow"),
        ("Who is Lavrov?", "lavrov", "lawrow"),
        ("What did Tokayev's minister bring?", "tokayev's", "tokajew"),
        ("Who is Tsivilev?", "tsivilev", "tschiwiljow"),
    ],
)
def test_question_names_expand_to_the_documents_word(
    lexical: LexicalIndex, question: str, word: str, document_word: str
) -> None:
    assert lexical.stem_of[document_word] in expanded(lexical, question)[word]


@pytest.mark.parametrize(
    ("question", "unit"),
    [("Кого называют Риббентропом?", 0), ("Who is Lavrov?", 1), ("Кто такой Цивилёв?", 2)],
)
def test_a_name_in_another_script_scores_its_sentence(lexical: LexicalIndex, question: str, unit: int) -> None:
    scores = lexical.scores(question)
    assert scores.shape == (len(DOC),)
    assert int(np.argmax(scores)) == unit
    assert scores[unit] > 0.5
    assert np.count_nonzero(scores) == 1


def test_unrelated_question_has_no_lexical_evidence(lexical: LexicalIndex) -> None:
    assert expanded(lexical, "What is the capital of France?") == {"capital": [], "france": []}
    assert not lexical.scores("What is the capital of France?").any()
    assert not lexical.scores("").any()


def test_german_words_match_by_stem(lexical: LexicalIndex) -> None:
    assert expanded(lexical, "Was gab der Außenminister?")["außenminister"]
    assert int(np.argmax(lexical.scores("Welche Staaten manövrieren?"))) == 3


def test_stopwords_of_every_language_are_not_content() -> None:
    assert content_words("Why did Putin call Tokayev?") == ["putin", "call", "tokayev"]
    assert content_words("Warum hat Putin Tokajew angerufen?") == ["putin", "tokajew", "angerufen"]
    assert content_words("Почему Путин позвонил Токаеву?") == ["путин", "позвонил", "токаеву"]


@pytest.mark.parametrize(
    ("question", "lang"),
    [
        ("Why did Putin call Tokayev?", "en"),
        ("Warum hat Putin Tokajew angerufen?", "de"),
        ("Почему Путин позвонил Токаеву?", "ru"),
        ("Tokajew?", None),
    ],
)
def test_question_language(question: str, lang: str | None) -> None:
    assert question_language(question) == lang


def test_an_empty_index_scores_nothing() -> None:
    index = LexicalIndex.build([], [])
    assert index.scores("Who is Lavrov?").shape == (0,)
