"""Segmentation: German-aware sentence ends, paragraphs, and offsets that slice the source exactly."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.segment import paragraphs, sentence_spans, sentences
from bot.sources import default_manifest, load, read_manifest


def split(text: str) -> list[str]:
    """The sentence texts of a document, in order."""
    return [s.text for s in sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "Er kommt am 9. Mai nach Moskau. Dann fährt er weiter.",
            ["Er kommt am 9. Mai nach Moskau.", "Dann fährt er weiter."],
            id="ordinal-date",
        ),
        pytest.param(
            "Im 20. Jahrhundert war das anders. Heute nicht.",
            ["Im 20. Jahrhundert war das anders.", "Heute nicht."],
            id="ordinal-century",
        ),
        pytest.param(
            "Das geschah im Jahr 2022. Danach kam alles anders.",
            ["Das geschah im Jahr 2022.", "Danach kam alles anders."],
            id="year-ends-sentence",
        ),
        pytest.param(
            "Das gilt z. B. für Kasachstan. Und für Belarus.",
            ["Das gilt z. B. für Kasachstan.", "Und für Belarus."],
            id="z. B.",
        ),
        pytest.param(
            "Das gilt z.B. für Astana. Und für Almaty.",
            ["Das gilt z.B. für Astana.", "Und für Almaty."],
            id="z.B.",
        ),
        pytest.param(
            "Dr. Müller kam mit Prof. Schmidt. Sie sprachen lange.",
            ["Dr. Müller kam mit Prof. Schmidt.", "Sie sprachen lange."],
            id="Dr.-Prof.",
        ),
        pytest.param(
            "Äpfel, Birnen usw. sind gesund. Das weiß jeder.",
            ["Äpfel, Birnen usw. sind gesund.", "Das weiß jeder."],
            id="usw.",
        ),
        pytest.param(
            "Это т. е. главное. Дальше идёт другое.",
            ["Это т. е. главное.", "Дальше идёт другое."],
            id="т. е.",
        ),
        pytest.param(
            "W. Putin traf K. Tokajew in Astana. Dann sprachen sie.",
            ["W. Putin traf K. Tokajew in Astana.", "Dann sprachen sie."],
            id="initials",
        ),
        pytest.param(
            "Das sagte Sergej W. Lawrow gestern. Niemand widersprach.",
            ["Das sagte Sergej W. Lawrow gestern.", "Niemand widersprach."],
            id="middle-initial",
        ),
        pytest.param(
            "Er sagte: „Das ist gut. Sehr gut. Wirklich.“ Dann ging er.",
            ["Er sagte: „Das ist gut. Sehr gut. Wirklich.“", "Dann ging er."],
            id="german-quote",
        ),
        pytest.param(
            "Он сказал: «Это хорошо. Очень хорошо.» Потом ушёл.",
            ["Он сказал: «Это хорошо. Очень хорошо.»", "Потом ушёл."],
            id="guillemets",
        ),
        pytest.param(
            "Sie schrieb „Wir kommen am 9. Mai. Sicher.“ und legte auf. Später rief sie an.",
            ["Sie schrieb „Wir kommen am 9. Mai. Sicher.“ und legte auf.", "Später rief sie an."],
            id="quote-inside-sentence",
        ),
        pytest.param(
            "Er sagte: „Wir kommen.“ Dann legte er auf.",
            ["Er sagte: „Wir kommen.“", "Dann legte er auf."],
            id="quote-ends-sentence",
        ),
        pytest.param(
            "Lawrow sagte: «Мы не забыли.» Tokajew schwieg.",
            ["Lawrow sagte: «Мы не забыли.»", "Tokajew schwieg."],
            id="guillemet-ends-sentence",
        ),
        pytest.param(
            "Warum ruft Putin an? Niemand weiß es! Vielleicht … Wer weiß.",
            ["Warum ruft Putin an?", "Niemand weiß es!", "Vielleicht …", "Wer weiß."],
            id="question-exclamation",
        ),
    ],
)
def test_sentences(text: str, expected: list[str]) -> None:
    assert split(text) == expected


def test_question_sentences_are_flagged() -> None:
    asked, told, quoted = sentences("Warum ruft Putin an? Er will Ruhe. Dann fragte er: „Warum nicht?“")
    assert asked.is_question
    assert not told.is_question
    assert quoted.is_question  # a trailing closing quote does not hide the question mark


def test_paragraphs_by_blank_lines_keep_single_newlines_inside() -> None:
    text = "Erste Zeile\nzweite Zeile. Noch ein Satz.\n\n\nZweiter Absatz.\n \t\nDritter Absatz."
    paras = paragraphs(text)
    assert [p.text for p in paras] == [
        "Erste Zeile\nzweite Zeile. Noch ein Satz.",
        "Zweiter Absatz.",
        "Dritter Absatz.",
    ]
    assert [p.number for p in paras] == [1, 2, 3]
    assert [s.text for s in paras[0].sentences] == ["Erste Zeile\nzweite Zeile.", "Noch ein Satz."]


def test_paragraphs_by_single_newlines_when_there_is_no_blank_line() -> None:
    text = "Eins. Noch eins.\nZwei.\n   \nDrei"  # a whitespace-only line is a blank line...
    assert [p.text for p in paragraphs(text)] == ["Eins. Noch eins.\nZwei.", "Drei"]
    text = "Eins. Noch eins.\nZwei.\nDrei"  # ...without one, every line is a paragraph
    assert [p.text for p in paragraphs(text)] == ["Eins. Noch eins.", "Zwei.", "Drei"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Erster Satz. Zweiter Satz.\r\n\r\nZweiter Absatz.\r\n", ["Erster Satz. Zweiter Satz.", "Zweiter Absatz."]),
        ("Zeile eins.\r\nZeile zwei.\r\nZeile drei.", ["Zeile eins.", "Zeile zwei.", "Zeile drei."]),
    ],
    ids=["blank-lines", "single-lines"],
)
def test_crlf_text(text: str, expected: list[str]) -> None:
    paras = paragraphs(text)
    assert [p.text for p in paras] == expected
    for p in paras:
        assert "\r" not in p.text
        assert text[p.start : p.end] == p.text


def test_empty_and_blank_text_have_no_paragraphs() -> None:
    assert paragraphs("") == []
    assert paragraphs(" \n\r\n\t ") == []
    assert sentence_spans("   ") == []


def test_seed_article() -> None:
    (spec,) = read_manifest(default_manifest())
    text = load(spec).text
    paras = paragraphs(text)
    assert len(paras) == 18
    assert [s.is_question for s in paras[1].sentences] == [True, True]
    assert paras[1].sentences[1].text.startswith("Warum ruft Putin an")
    assert not any(s.is_question for s in paras[2].sentences)  # the answer that follows
    assert any("am 9. Mai zu erinnern." in s.text and s.text.startswith("Zuvor") for s in paras[0].sentences)
    for p in paras:
        assert text[p.start : p.end] == p.text
        for s in p.sentences:
            assert text[s.start : s.end] == s.text


TRICKY = st.sampled_from(
    [
        "a", "B", " ", "  ", ".", "?", "!", "…", "\n", "\n\n", "\r\n", "\t", "\u00a0", "\u2028", "\x85",
        "„", "“", "”", "«", "»", '"', "'", "(", ")", "9. ", "2022. ", "z. B. ", "Dr. ", "usw. ", "т. е. ",
        "W. ", "Mai", "Это", "😀", "👩\u200d👩\u200d👧", "\x00", "\x1c", "\x7f", "\u200f", "\u202e",
        "שלום", "مرحبا", "<b>", "</b>", "**", "# ", "[x](http://a.b)", "`", "\ufeff", "e\u0301",
    ]
)
ANY_TEXT = st.one_of(st.text(), st.lists(TRICKY, max_size=60).map("".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ANY_TEXT)
def test_offsets_slice_the_original_text(text: str) -> None:
    paras = paragraphs(text)
    previous_end = 0
    kept: list[str] = []
    for number, para in enumerate(paras, 1):
        assert para.number == number
        assert text[para.start : para.end] == para.text
        assert para.text and para.text == para.text.strip()
        assert para.start >= previous_end
        previous_end = para.end
        assert para.sentences
        cursor = para.start
        for position, sent in enumerate(para.sentences):
            assert (sent.paragraph, sent.index) == (number, position)
            assert text[sent.start : sent.end] == sent.text
            assert sent.text and sent.text == sent.text.strip()
            assert cursor <= sent.start < sent.end <= para.end
            cursor = sent.end
            kept.append(sent.text)
    # Only whitespace is dropped between paragraphs and sentences: nothing is lost or invented.
    assert "".join("".join(kept).split()) == "".join(text.split())
    assert [s.text for s in sentences(text)] == kept
