"""Lexical matching: stemmed BM25 plus name and cognate matching across spellings and scripts.

A question in English or Russian about a German text shares few stems with it, but it shares names
and international words: Tokayev / Tokajew / Токаев, Lavrov / Lawrow / Лавров, president / Präsident /
президент. Each word is reduced to a *skeleton*: transliterated to Latin, spelling variants folded
(w→v, tsch/ch/ц→c, sch/sh/ш→s, kh/х→h, z→s, ...) and vowels dropped. A question word whose skeleton
equals a document word's skeleton, and whose folded spelling is close enough, is expanded to that
document word before BM25 scoring; everything else is matched by its Snowball stem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache

import bm25s
import numpy as np
import Stemmer

STEMMER_NAMES = {"de": "german", "en": "english", "ru": "russian", "fr": "french", "es": "spanish"}
WORD = re.compile(r"\w[\w'’-]*\w|\w", re.UNICODE)

_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e io zh z i i k l m n o p r s t u f kh ts ch sh shch - y - e iu ia".split(),
        strict=True,
    )
)
_FOLDS = [
    ("shch", "s"), ("tsch", "c"), ("sch", "s"), ("sh", "s"), ("zh", "s"), ("ch", "h"), ("kh", "h"),
    ("tz", "c"), ("ts", "c"), ("ck", "k"), ("ph", "f"), ("th", "t"), ("qu", "kv"), ("w", "v"),
    ("z", "s"), ("x", "ks"), ("ß", "s"), ("c", "k"), ("j", "i"), ("y", "i"),
]
_VOWELS = re.compile(r"[aeiouäöüéèêáàíóúı]+")
SPELLING_RATIO = 0.75  # folded spellings this similar are one name (Tokayev/Tokajew), not Putin/Potanin
_DIACRITICS = str.maketrans("äöüéèêëáàâíìîóòôúùûçñ", "aoueeeeaaaiiiooouuucn")

STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        """a an the and or but if of to in on at by for with from about into over after before is are was
        were be been being do does did has have had what which who whom whose why how when where there
        this that these those it its he she they them his her their i you we our your me my not no
        so as than then also can could would should will shall may might must very just only""".split()
    ),
    "de": frozenset(
        """der die das den dem des ein eine einer eines einem einen und oder aber wenn von zu in im am an auf
        bei mit aus für über nach vor ist sind war waren sein wird werden hat haben hatte was wer wen
        wem wessen warum wie wann wo welche welcher welches dies diese dieser dieses es er sie wir ihr
        ich du nicht kein keine so als auch noch nur sehr sich man zum zur um durch""".split()
    ),
    "ru": frozenset(
        """и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по ее мне было
        вот от меня о из ему теперь когда даже ну ли если уже или ни быть был него до вас нибудь
        опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для мы тебя их
        чем была сам чтобы без будто чего раз тоже себе под будет ж тогда кто этот того потому
        этого какой совсем ним здесь этом один почти мой тем чтобы нее были куда зачем всех
        никогда можно при наконец два об другой хоть после над больше тот через эти нас про
        всего них какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть
        том нельзя такой им более всегда конечно всю между почему что такое это""".split()
    ),
}
ALL_STOPWORDS = frozenset().union(*STOPWORDS.values())


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return [w.lower() for w in WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Word tokens without stopwords of any supported language, or single characters."""
    return [w for w in words(text) if w not in ALL_STOPWORDS and (len(w) > 1 or w.isdigit())]


@lru_cache(maxsize=16)
def stemmer(lang: str) -> Stemmer.Stemmer:
    """The Snowball stemmer for a language (English when there is none)."""
    return Stemmer.Stemmer(STEMMER_NAMES.get(lang, "english"))


def stem_all(tokens: Iterable[str], lang: str) -> list[str]:
    """Stem tokens with the language's stemmer."""
    return stemmer(lang).stemWords(list(tokens))


@lru_cache(maxsize=65536)
def folded(word: str) -> str:
    """A word transliterated to Latin with spelling variants folded (vowels kept)."""
    out = "".join(_CYRILLIC.get(ch, ch) for ch in word.lower())
    out = out.translate(_DIACRITICS).replace("'", "").replace("’", "").replace("-", "")
    for old, new in _FOLDS:
        out = out.replace(old, new)
    return out


@lru_cache(maxsize=65536)
def skeleton(word: str) -> str:
    """The folded word without vowels, repeated letters collapsed: Lawrow, Lavrov, Лавров -> 'lvrv'."""
    consonants = _VOWELS.sub("", folded(word))
    return re.sub(r"(.)\1+", r"\1", consonants)


def similar_spelling(a: str, b: str) -> bool:
    """True when two words are the same name or cognate in different spellings or scripts."""
    if a == b:
        return True
    sa, sb = skeleton(a), skeleton(b)
    if len(sa) < 3 or sa != sb:
        return False
    return SequenceMatcher(None, folded(a), folded(b)).ratio() >= SPELLING_RATIO


@dataclass
class LexicalIndex:
    """BM25 over stemmed sentences, with question words expanded to matching document words."""

    lang_of: list[str]  # language of each unit
    tokens: list[list[str]]  # stemmed content tokens of each unit
    surface: dict[str, set[str]] = field(default_factory=dict)  # stem -> surface words
    by_skeleton: dict[str, set[str]] = field(default_factory=dict)  # skeleton -> surface words
    stem_of: dict[str, str] = field(default_factory=dict)  # surface word -> stem
    retriever: bm25s.BM25 | None = None
    df: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, texts: list[str], langs: list[str]) -> LexicalIndex:
        """Index unit texts, each stemmed in its own document's language."""
        index = cls(lang_of=list(langs), tokens=[])
        for text, lang in zip(texts, langs, strict=True):
            surface_words = content_words(text)
            stems = stem_all(surface_words, lang)
            for word, stem in zip(surface_words, stems, strict=True):
                index.stem_of[word] = stem
                index.stem_of.setdefault(stem, stem)
                index.surface.setdefault(stem, set()).add(word)
                index.by_skeleton.setdefault(skeleton(word), set()).add(word)
                index.by_skeleton.setdefault(skeleton(stem), set()).add(stem)
            index.tokens.append(stems)
            for stem in set(stems):
                index.df[stem] = index.df.get(stem, 0) + 1
        if any(index.tokens):
            retriever = bm25s.BM25()
            retriever.index([t or ["\0"] for t in index.tokens], show_progress=False)
            index.retriever = retriever
        return index

    def expand(self, question: str) -> list[tuple[str, list[str]]]:
        """Each question content word with the document stems it matches (maybe none)."""
        asked_in = question_language(question)
        langs = [lang for lang in sorted(set(self.lang_of)) if asked_in in (None, lang)] or [asked_in or "en"]
        out = []
        for word in dict.fromkeys(content_words(question)):
            matched = {stem_all([word], lang)[0] for lang in langs} & self.df.keys()
            if len(word) >= 4 or word[:1].isdigit():
                for form in _forms(word):
                    for candidate in self.by_skeleton.get(skeleton(form), ()):
                        if similar_spelling(form, candidate):
                            matched.add(self.stem_of.get(candidate, candidate))
            out.append((word, sorted(matched)))
        return out

    def coverage(self, question: str) -> float:
        """The share of the question's content words that the documents contain (in any spelling)."""
        expansion = self.expand(question)
        return sum(1 for _, stems in expansion if stems) / len(expansion) if expansion else 0.0

    def scores(self, question: str) -> np.ndarray:
        """Lexical evidence per unit: BM25 in units of one rare word's match (1.0 ~ one rare hit)."""
        n = len(self.tokens)
        query = sorted({stem for _, stems in self.expand(question) for stem in stems})
        if not query or self.retriever is None:
            return np.zeros(n, dtype=np.float32)
        scores = np.asarray(self.retriever.get_scores(query), dtype=np.float32)
        # A term in one unit, once, in a unit of average length: idf / (1 + k1) under Lucene's BM25.
        rare = float(np.log(1 + (n - 1 + 0.5) / 1.5)) / (1 + self.retriever.k1) if n > 1 else 1.0
        return scores / rare


def question_language(text: str) -> str | None:
    """The language a question is written in, when its stopwords or script tell; else None."""
    tokens = words(text)
    if any(re.search(r"[а-яё]", t) for t in tokens):
        return "ru"
    counts = {lang: sum(t in STOPWORDS[lang] for t in tokens) for lang in ("de", "en")}
    if counts["de"] == counts["en"]:
        return None
    return max(counts, key=lambda lang: counts[lang])


def _forms(word: str) -> list[str]:
    """A question word and its stems, to match names in other grammatical cases."""
    lang = "ru" if re.search(r"[а-яё]", word) else "en"
    forms = [word, stem_all([word], lang)[0]]
    if lang == "en":
        forms.append(stem_all([word], "de")[0])
    return list(dict.fromkeys(f for f in forms if len(f) >= 3))
