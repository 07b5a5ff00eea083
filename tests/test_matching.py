"""Tests for illusion.matching: examples per language, then Hypothesis properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from illusion.matching import (
    MatchResult,
    is_generation_correct,
    judge,
    mentions,
    normalize,
    tokens,
)

NBSP, NNBSP = "\u00a0", "\u202f"
LANGS = ["en", "de", "fr", "es", "it", "pt", "ru", "zh", "ja", "ar", "hi", "sw", "th", "xx"]
LATIN_LANGS = ["en", "de", "fr", "es", "it", "pt", "sw", "xx"]


# --- examples: (lang, text, phrase, expected) ---------------------------------------------------

MENTIONS = [
    ("en", "The capital is Paris.", "Paris", True),
    ("en", "ＰＡＲＩＳ！", "Paris", True),  # full-width letters and punctuation
    ("en", "Parisian cuisine", "Paris", False),
    ("en", "It has 7 days", "7", True),
    ("en", "It has 17 days", "7", False),
    ("en", "the 7th day", "7", False),  # "7th" is one token
    ("en", "It is the Nile.", "The Nile", True),
    ("en", "Beatles", "The Beatles", True),  # a leading article is optional
    ("en", "Vitamin A is needed", "Vitamin A", True),
    ("en", "Vitamin D", "Vitamin A", False),  # only leading articles go: "a" here is a name
    ("en", "The answer is A", "A", True),
    ("de", "Der Rhein fließt nach Norden.", "Rhein", True),
    ("de", "Das Rheinland", "Rhein", False),
    ("de", "STRASSE", "Straße", True),  # casefold: ß -> ss
    ("fr", "C'est l’Everest.", "Everest", True),  # curly apostrophe, elided article
    ("fr", "Charles de Gaulle", "de Gaulle", True),
    ("fr", "Charles Gaulle", "de Gaulle", False),  # "de" is kept: part of names
    ("fr", "Il est lyonnais", "Lyon", False),
    ("es", "Es el Nilo.", "Nilo", True),
    ("es", "La capital es BOGOTÁ", "Bogotá", True),
    ("es", "La capital es Bogota", "Bogotá", False),  # diacritics are kept
    ("it", "È il Tevere.", "Tevere", True),
    ("pt", "É o Tejo.", "Tejo", True),
    ("ru", "Столица России — Москва.", "Москва", True),
    ("ru", "СТОЛИЦА — МОСКВА", "Москва", True),
    ("ru", "Московский университет", "Москва", False),
    ("zh", "中国的首都是北京。", "北京", True),
    ("zh", "中国的首都是北京。", "南京", False),
    ("zh", "成立于１９４９年。", "1949", True),  # full-width digits next to Han
    ("ja", "日本の首都は東京です", "東京", True),
    ("ja", "日本の首都は東京です", "大阪", False),
    ("ja", "首都はﾊﾟﾘです", "パリ", True),  # half-width katakana with a combining mark
    ("ja", "1969年に", "1969", True),
    ("ja", "1969年に", "969", False),
    ("ar", "عاصمة مصر هي القاهرة.", "القاهرة", True),
    ("ar", "عاصمة مصر هي القاهرة.", "قاهرة", True),  # the article prefix is stripped
    ("ar", "عاصمة مصر هي القاهرة.", "الإسكندرية", False),
    ("ar", "في سنة ١٩٦٩", "1969", True),  # Arabic-Indic digits
    ("ar", "الالتزام", "التزام", True),  # repeated stripping: both meet at the same form
    ("hi", "भारत की राजधानी नई दिल्ली है।", "नई दिल्ली", True),
    ("hi", "भारत की राजधानी नई दिल्ली है।", "मुंबई", False),
    ("hi", "वह दिल्लीवाला है", "दिल्ली", False),  # vowel signs keep the word whole
    ("sw", "Mji mkuu wa Kenya ni Nairobi.", "Nairobi", True),
    ("sw", "Mji mkuu wa Tanzania ni Dodoma.", "Nairobi", False),
    ("th", "เมืองหลวงของประเทศไทยคือกรุงเทพมหานคร", "กรุงเทพ", True),
    ("th", "เมืองหลวงคือเชียงใหม่", "กรุงเทพ", False),
    ("en", "about 1,000 people", "1000", True),
    ("en", "about 1000 people", "1,000", True),
    ("fr", f"environ 1{NBSP}000 personnes", "1000", True),
    ("fr", f"environ 1{NNBSP}000 personnes", "1 000", True),
    ("de", "etwa 1.000 Menschen", "1000", True),
    ("de", "etwa 1'000 Menschen", "1000", True),
    ("en", "10,000 people", "1000", False),
    ("en", "pi is 3.14", "3.14", True),
    ("en", "pi is 3.14", "314", False),  # a decimal point is not a thousands separator
]


@pytest.mark.parametrize(("lang", "text", "phrase", "expected"), MENTIONS)
def test_mentions_examples(lang: str, text: str, phrase: str, expected: bool) -> None:
    assert mentions(text, phrase, lang) is expected


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("1,000,000", "en", ("1000000",)),
        ("3.14", "en", ("3", "14")),
        ("1969年", "ja", ("1969", "年")),
        ("ไทย", "th", ("ไ", "ท", "ย")),  # each Thai code point is its own token
        ("दिल्ली", "hi", ("दिल्ली",)),  # Mc/Mn vowel signs are word characters
        ("l´Everest", "fr", ("everest",)),  # U+00B4 is folded before NFKC could split it
        ("The", "en", ("the",)),  # only articles: kept, never emptied
        ("The Nile", "en", ("nile",)),
        ("Alexander the Great", "en", ("alexander", "the", "great")),  # leading articles only
        ("The Nile", "xx", ("the", "nile")),  # unknown language: no articles
        ("O Tejo", "pt-BR", ("tejo",)),  # region subtags use the language's rules
        ("1-000", "en", ("1000",)),  # grouping is decided on tokens (idempotence)
        ("1999 200", "en", ("1999", "200")),  # a 4-digit lead is not a thousands group
        ("!!! ... 。", "en", ()),
    ],
)
def test_tokens_examples(text: str, lang: str, expected: tuple[str, ...]) -> None:
    assert tokens(text, lang) == expected


def test_normalize_joins_tokens_with_single_spaces() -> None:
    assert normalize("  The Capital,\tis  PARIS! ", "en") == "capital is paris"


def test_empty_phrase_is_never_mentioned() -> None:
    assert not mentions("anything at all", "", "en")
    assert not mentions("anything at all", " !? ", "en")


def test_hedge_is_not_an_answer() -> None:
    result = judge("Paris or Lyon", answers=["Paris"], distractors=["Lyon", "Marseille"], lang="en")
    assert result == MatchResult(correct=False, matched="Paris", hedged_with=("Lyon",))
    result = judge("Lyon, Paris or Nice", answers=["Paris"], distractors=["Nice", "Metz", "Lyon"],
                   lang="en")
    assert result.hedged_with == ("Nice", "Lyon")  # in the order the distractors were given


def test_alias_match_is_reported() -> None:
    result = judge("It is NYC.", answers=["New York City", "NYC"], distractors=["LA"], lang="en")
    assert result == MatchResult(correct=True, matched="NYC", hedged_with=())
    both = judge("New York City (NYC)", answers=["New York City", "NYC"], distractors=[], lang="en")
    assert both.matched == "New York City"  # the first form in the order given
    assert is_generation_correct("It is NYC.", answers=["NYC"], distractors=["LA"], lang="en")


def test_longer_word_is_not_the_answer() -> None:
    result = judge("Parisian", answers=["Paris"], distractors=["Lyon"], lang="en")
    assert result == MatchResult(correct=False, matched=None, hedged_with=())


def test_a_bare_string_of_answers_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"answers='Paris' must be a sequence.*\['Paris'\]"):
        judge("Paris", answers="Paris", distractors=["Lyon"], lang="en")


# --- properties ----------------------------------------------------------------------------------

# Fragments that exercise the rules (articles, separators, digit groups, scripts, marks, joiners)
# mixed with arbitrary text, so that Hypothesis reaches the interesting cases quickly.
FRAGMENTS = [
    "the", "The ", "der", "l'", "l’", "la", "el", "o", "ال", "القاهرة", "الالتزام", "1", "000",
    "1,000", f"1{NBSP}000", f"2{NNBSP}500", "3.14", "١٩", "๑", "१", " ", ",", ".", "'", "´", "ʼ",
    "`", "-", "!", "。", "、", "ＰＡＲＩＳ", "１２", "ﾊﾟ", "ー", "東京", "の", "กรุงเทพ", "दिल्ली",
    "\u200d", "\u0301", "ß", "ẞ", "İ", "ﬁ", "ǅ", "ΐ", "ﷺ", "㍿",
]
any_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=8).map(
    "".join
)
separators = st.sampled_from([" ", ". ", ", ", "!", "?", "。", "、", "(", ")", "\n", " - "])
ascii_letters = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1)
han = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF) | st.characters(
    min_codepoint=0x20000, max_codepoint=0x2A6DF
)


def _has_content(phrase: str, lang: str) -> bool:
    """The phrase has a token that is not an article.

    A phrase of only articles keeps them, but loses them all as soon as a content word ("zq")
    follows; any other phrase keeps at least one token.
    """
    return bool(tokens(phrase, lang)) and tokens(phrase + " zq", lang) != ("zq",)


def _digit_junction(left: str, right: str, lang: str) -> bool:
    """Both sides meet at digits, where thousands grouping may legitimately join them."""
    a, b = tokens(left, lang), tokens(right, lang)
    return bool(a and b and re.fullmatch("[0-9]+", a[-1]) and re.fullmatch("[0-9]+", b[0]))


def _fullwidth(text: str) -> str:
    return "".join(
        "\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text
    )


@pytest.mark.parametrize("lang", LANGS)
@given(text=any_text)
@example(text="the\u200d\u0301")  # a joiner between a letter and its accent
@example(text="الالتزام")  # the Arabic article twice
@example(text="the 1 the 000")  # digit groups around articles
def test_normalize_is_idempotent(lang: str, text: str) -> None:
    once = normalize(text, lang)
    assert normalize(once, lang) == once


@pytest.mark.parametrize("lang", LANGS)
@given(phrase=any_text)
def test_a_phrase_mentions_itself(lang: str, phrase: str) -> None:
    # Stronger than "has a non-article token": a phrase of only articles must match itself too.
    assume(tokens(phrase, "xx"))
    assert mentions(phrase, phrase, lang)


@pytest.mark.parametrize("lang", LANGS)
@given(
    phrase=any_text, x=any_text, y=any_text, left=any_text, right=any_text,
    s1=separators, s2=separators, s3=separators, s4=separators,
)
def test_added_context_keeps_a_mention(
    lang: str, phrase: str, x: str, y: str, left: str, right: str,
    s1: str, s2: str, s3: str, s4: str,
) -> None:
    text = x + s1 + phrase + s2 + y
    assume(_has_content(phrase, lang) and mentions(text, phrase, lang))
    # The one documented exception: digits on both sides of the seam may form a thousands group.
    assume(not _digit_junction(left, text, lang) and not _digit_junction(text, right, lang))
    assert mentions(left + s3 + text + s4 + right, phrase, lang)


@pytest.mark.parametrize("lang", LATIN_LANGS)
@given(
    text=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)),
    phrase=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1),
    embed=st.booleans(),
)
def test_case_and_fullwidth_do_not_matter(lang: str, text: str, phrase: str, embed: bool) -> None:
    # ASCII only: casefold(upper(s)) == casefold(s) does not hold for all of Unicode (e.g. ǅ).
    if embed:
        text = text + " " + phrase
    expected = mentions(text, phrase, lang)
    assert mentions(text.upper(), phrase, lang) is expected
    assert mentions(_fullwidth(text), phrase.upper(), lang) is expected
    assert mentions(text.lower(), _fullwidth(phrase.upper()), lang) is expected


@pytest.mark.parametrize("lang", LANGS)
@given(a=any_text, b=any_text)
def test_a_prefix_phrase_is_mentioned(lang: str, a: str, b: str) -> None:
    assume(_has_content(a, lang) and not _digit_junction(a, b, lang))
    assert mentions(a + " " + b, a, lang)


@pytest.mark.parametrize("lang", LANGS)
@given(word=ascii_letters, suffix=ascii_letters)
def test_a_word_never_matches_inside_a_longer_word(lang: str, word: str, suffix: str) -> None:
    assert not mentions(word + suffix, word, lang)
    assert not mentions(suffix + word, word, lang)


@pytest.mark.parametrize("lang", LANGS)
@given(
    x=any_text, y=any_text, distractor=any_text, sep=separators,
    answers=st.lists(any_text, max_size=3), others=st.lists(any_text, max_size=3),
)
def test_a_mentioned_distractor_means_not_correct(
    lang: str, x: str, y: str, distractor: str, sep: str, answers: list[str], others: list[str]
) -> None:
    output = x + sep + distractor + sep + y
    assume(mentions(output, distractor, lang))
    answers = [*answers, output, distractor]  # even the output itself as gold does not help
    result = judge(output, answers=answers, distractors=[*others, distractor], lang=lang)
    assert distractor in result.hedged_with
    assert not result.correct
    assert not is_generation_correct(
        output, answers=answers, distractors=[*others, distractor], lang=lang
    )


@pytest.mark.parametrize("lang", LANGS)
@given(x=any_text, y=any_text, answer=any_text, distractors=st.lists(any_text, max_size=3))
def test_a_mentioned_answer_without_distractors_is_correct(
    lang: str, x: str, y: str, answer: str, distractors: list[str]
) -> None:
    output = x + " " + answer + " " + y
    assume(mentions(output, answer, lang))
    assume(not any(mentions(output, d, lang) for d in distractors))
    result = judge(output, answers=["", answer], distractors=distractors, lang=lang)
    assert result == MatchResult(correct=True, matched=answer, hedged_with=())


@pytest.mark.parametrize("lang", ["zh", "ja", "xx"])
@given(h=st.text(han, min_size=1), x=st.text(han), y=st.text(han))
def test_han_matches_per_character(lang: str, h: str, x: str, y: str) -> None:
    assert mentions(x + h + y, h, lang)
