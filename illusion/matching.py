"""Decide whether a greedy answer is *generation-correct*.

After normalisation the output must contain the gold or an alias as a contiguous run of tokens
(word boundaries; one token per character in CJK and Thai, which do not separate words by
spaces) and must mention no distractor: a hedge such as "Paris or Lyon" is not an answer.
Both sides of every comparison go through the same `tokens`, so each rule only has to be
consistent, not linguistically perfect. Pure stdlib: the plugin imports this without torch.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Bump whenever a rule below changes: it belongs in the cache key and the snapshot configuration,
# because a different normalisation gives different verdicts for the same generations.
NORMALIZATION_VERSION = 1

# Curly quotes, modifier-letter apostrophe, acute and grave accents all stand for an apostrophe.
# Folded *before* NFKC: NFKC turns U+00B4 into space + combining acute, which would glue onto the
# next word, and U+02BC is a letter that would glue "lʼEverest" into one token.
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2019\u2018\u02bc\u00b4`", "'"))

# Joiners and soft hyphens shape glyphs *inside* a word (ZWJ/ZWNJ in Devanagari and Persian);
# deleting them keeps the word whole instead of splitting it at an invisible character.
_INVISIBLE = re.compile("[\u00ad\u200c\u200d\u2060\ufeff]")

# Decimal digits of any script (Arabic-Indic, Devanagari, Thai, ...) read as ASCII digits, so
# "١٩٦٩" and "1969" are the same year whichever digits the model or the dataset chose.
_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d")

# Scripts written without spaces between words: every letter is its own token, so an answer
# matches per character ("東京" inside "首都は東京です"). Han (unified, extensions, iteration and
# compatibility ideographs), Hiragana, Katakana (incl. ー and half-width forms), Hangul syllables
# and Thai. Punctuation inside these blocks (・, ๏) is still punctuation: categories come first.
_PER_CHAR = re.compile(
    "[\u0e00-\u0e7f\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U000323af]"
)

_DIGITS = re.compile("[0-9]+")

# Articles carry no answer, and models add or drop them freely ("the Nile" vs "Nile"). Only
# whole tokens are removed, and only at the start (see _drop_articles). French keeps de/du/des:
# they are part of names ("de Gaulle"). "l" is the elided article of "l'Everest" once the
# apostrophe has split it off.
_ARTICLES: dict[str, frozenset[str]] = {
    "en": frozenset({"a", "an", "the"}),
    "de": frozenset("der die das den dem des ein eine einen einem einer eines".split()),
    "fr": frozenset({"le", "la", "les", "l", "un", "une"}),
    "es": frozenset({"el", "la", "los", "las", "un", "una", "unos", "unas"}),
    "it": frozenset({"il", "lo", "la", "i", "gli", "le", "l", "un", "uno", "una"}),
    "pt": frozenset({"o", "a", "os", "as", "um", "uma", "uns", "umas"}),
}

# Arabic writes the definite article as the prefix "ال". Only tokens of 4+ letters are stripped,
# so that short words survive; stripping repeats, so "الالتزام" and "التزام" meet at the same form
# and a second normalisation changes nothing.
_AR_ARTICLE = "\u0627\u0644"


def _primary(lang: str) -> str:
    """Region and script subtags ("pt-BR", "zh_Hans") follow their language's rules."""
    return re.split("[-_]", lang.strip().casefold(), maxsplit=1)[0]


def _split(text: str) -> list[str]:
    """Maximal runs of letters (L*), marks (M*) and numbers (N*); per-char scripts split apart.

    Marks must count as word characters: Devanagari and Arabic vowel signs are Mc/Mn and are not
    `str.isalnum()`, so an alnum-based split would cut "दिल्ली" into pieces.
    """
    out: list[str] = []
    run: list[str] = []
    for ch in text:
        # Punctuation (P*), symbols (S*), spaces and controls are not word characters: they
        # only separate tokens. After NFKC this covers full-width 。、「」！？， as well.
        word_char = unicodedata.category(ch)[0] in "LMN"
        if word_char and not _PER_CHAR.match(ch):
            run.append(ch)
            continue
        if run:
            out.append("".join(run))
            run = []
        if word_char:  # a CJK/Thai letter is a token by itself
            out.append(ch)
    if run:
        out.append("".join(run))
    return out


def _drop_articles(toks: list[str], lang: str) -> list[str]:
    """Remove leading article tokens, never all of them: a phrase of only articles stays itself.

    Leading only: an answer that starts with an article ("The Beatles") must match an output
    without it, and an article inside the output cannot hide a contiguous answer anyway. Dropping
    articles everywhere would also drop letters used as names: "Vitamin A" would equal
    "Vitamin D" (both "vitamin") and "The answer is A" would lose its answer.
    """
    if lang == "ar":
        stripped = []
        for tok in toks:
            while len(tok) >= 4 and tok.startswith(_AR_ARTICLE):
                tok = tok[len(_AR_ARTICLE) :]
            stripped.append(tok)
        return stripped
    articles = _ARTICLES.get(lang, frozenset())
    start = next((i for i, tok in enumerate(toks) if tok not in articles), 0)
    return toks[start:]


def _group_thousands(toks: list[str]) -> list[str]:
    """Join digit groups: "1,000", "1 000", "1.000", "1'000" -> "1000"; "3.14" stays 3, 14.

    A 3-digit token joins a preceding number of 1-3 digits (or one already grouped). This is
    decided on tokens, not on the separator character, because `normalize` joins tokens with
    spaces and must be idempotent: "1-000" therefore also reads as 1000. Both sides share the
    rule, so it only has to be consistent; "1999 200" stays two numbers (4-digit lead).
    """
    out: list[str] = []
    grouped = False
    for tok in toks:
        if (
            out
            and len(tok) == 3
            and _DIGITS.fullmatch(tok)
            and _DIGITS.fullmatch(out[-1])
            and (grouped or len(out[-1]) <= 3)
        ):
            out[-1] += tok
            grouped = True
        else:
            out.append(tok)
            grouped = False
    return out


@lru_cache(maxsize=1 << 16)
def tokens(text: str, lang: str) -> tuple[str, ...]:
    """Normalised tokens: runs of letters/marks/digits; each CJK/kana/Thai character is its own token.

    Every comparison goes through here, so answer and output are always normalised alike.
    """
    # Both before NFKC, so that marks around a deleted joiner still compose ("e", ZWJ, U+0301).
    text = _INVISIBLE.sub("", text.translate(_APOSTROPHES))
    # NFKC folds full-width letters, digits and punctuation ("ＰＡＲＩＳ！") and ligatures; casefold
    # is Unicode-aware lowercasing ("Straße" == "STRASSE"). NFKC again because casefold can leave
    # decomposed sequences behind. Diacritics are kept: gold answers are written natively and
    # "é" vs "e" can distinguish words.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    text = _NON_ASCII_DIGIT.sub(lambda m: str(unicodedata.digit(m.group())), text)
    return tuple(_group_thousands(_drop_articles(_split(text), _primary(lang))))


def normalize(text: str, lang: str) -> str:
    """Canonical form used for matching; tokens joined by single spaces."""
    return " ".join(tokens(text, lang))


def contains_tokens(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """True iff ``needle`` occurs as a contiguous run in ``haystack`` (both already ``tokens``);
    for callers that tokenise once and compare many times. An empty needle is never contained."""
    n = len(needle)
    return n > 0 and any(
        tuple(haystack[i : i + n]) == tuple(needle) for i in range(len(haystack) - n + 1)
    )


def mentions(text: str, phrase: str, lang: str) -> bool:
    """True iff phrase's tokens occur as a contiguous run in text's tokens. Empty phrase -> False.

    Token runs give word boundaries: "Paris" is in "The capital is Paris." but not in
    "Parisian"; "7" is not in "17" nor in "7th" (one token).
    """
    return contains_tokens(tokens(text, lang), tokens(phrase, lang))


@dataclass(frozen=True)
class MatchResult:
    """Verdict on one generation, with the evidence a report needs to explain it."""

    correct: bool  # an answer form is mentioned and no distractor is
    matched: str | None  # the first answer form (as given) that the output mentions
    hedged_with: tuple[str, ...]  # distractors (as given, in order) the output also mentions


def _check_forms(name: str, forms: Sequence[str]) -> None:
    if isinstance(forms, str):  # a bare str is a Sequence too, and would match letter by letter
        raise TypeError(f"{name}={forms!r} must be a sequence of strings; use {name}=[{forms!r}]")


def judge(
    output: str, *, answers: Sequence[str], distractors: Sequence[str], lang: str
) -> MatchResult:
    """Match one greedy output against answers (gold + aliases) and distractors."""
    _check_forms("answers", answers)
    _check_forms("distractors", distractors)
    out = tokens(output, lang)
    matched = next((a for a in answers if contains_tokens(out, tokens(a, lang))), None)
    # A distractor mention makes the output a hedge, whatever else it says.
    hedged = tuple(d for d in distractors if contains_tokens(out, tokens(d, lang)))
    return MatchResult(
        correct=matched is not None and not hedged, matched=matched, hedged_with=hedged
    )


def is_generation_correct(
    output: str, *, answers: Sequence[str], distractors: Sequence[str], lang: str
) -> bool:
    """answers = gold + aliases. Correct iff any answer is mentioned and no distractor is."""
    return judge(output, answers=answers, distractors=distractors, lang=lang).correct
