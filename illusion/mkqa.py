"""MKQA (apple/ml-mkqa) records -> rows in the item schema, with honest distractors.

MKQA gives each question's answer in every language but no distractors: an id's distractors are
the golds of other ids with the same answer type, chosen by a seeded shuffle so that they are the
same entities in every language, and never mention (or are mentioned by) the gold or its aliases.
Unusable answers (unanswerable, long, yes/no, too few valid distractors) are skipped and counted.

Pure functions over decoded records: ``sources`` reads the files or the hub and validates the rows.
"""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator

from .data import MAX_TEXT, MIN_DISTRACTORS, DatasetError
from .matching import contains_tokens, tokens

# The hub copy of MKQA stores the answer type as a ClassLabel index, in this order.
MKQA_TYPES = ("entity", "long_answer", "unanswerable", "date", "number", "number_with_unit", "short_phrase", "binary")
ITEM_TYPE = {"entity": "entity", "short_phrase": "entity", "number": "number", "number_with_unit": "number",
             "date": "date"}
UNSPACED = ("zh", "ja", "th")  # answer length counts characters there (> 30), elsewhere words (> 5)
NO_ANSWER = "No Answer"  # the MIA 2022 files' gold for an unanswerable question (its scorer skips them)
_NUMBER = re.compile(r"[-+−]?\d+(?:[.,  ]\d{3})*(?:[.,]\d+)?\s?%?")
_YEAR = re.compile(r"1\d{3}|20\d{2}")
_DATE = re.compile(r"\d{4}-\d{1,2}(?:-\d{1,2})?|\d{1,2}[./]\d{1,2}[./]\d{2,4}"  # ISO, 9.11.1989
                   r"|(?:\d{1,4}\s?[年년]\s?)?(?:\d{1,2}\s?[月월]\s?)?(?:\d{1,2}\s?[日일])?")  # 1989年11月9日
# Month names in the MKQA languages that write them in words, by their first three letters.
_MONTHS = frozenset("jan feb mar apr may jun jul aug sep oct nov dec fév avr mai jui aoû déc ene abr ago dic gen mag "
                    "giu lug set ott okt mär dez fev out maa mei maj des tam şub nis haz tem ağu eyl eki kas ara "
                    "янв фев мар апр мая май июн июл авг сен окт ноя дек".split())


@dataclass(frozen=True)
class _Answer:
    """A usable MKQA answer in one language; ``forms`` is the gold, then every accepted form."""

    origin: str
    question: str
    forms: tuple[str, ...]
    kind: str  # the MKQA answer type


def canonical_lang(code: str) -> str:
    """MKQA's code for a language as this project writes it (``zh_cn`` is ``zh``)."""
    return "zh" if code == "zh_cn" else code


def _entries(rows: list[tuple[str, Any]], problems: list[str]) -> Iterable[tuple[str, str, str, Any, Any]]:
    """(origin, id, lang, question, answers) from nested and flat records; bad records go to problems."""
    for origin, row in rows:
        nested = isinstance(row, dict) and ("queries" in row or "example_id" in row)
        ident = row.get("example_id" if nested else "id") if isinstance(row, dict) else None
        queries, answers = (row.get("queries"), row.get("answers")) if isinstance(row, dict) else (None, None)
        if not isinstance(row, dict):
            problems.append(f"{origin}: not an MKQA record ({row}); write one JSON object per line")
        elif not isinstance(ident, (str, int)) or not str(ident).strip():
            problems.append(f"{origin}: field {'example_id' if nested else 'id'!r} is missing; give every record an id")
        elif nested and not (isinstance(queries, dict) and isinstance(answers, dict)):
            problems.append(f"{origin}: fields 'queries' and 'answers' must be objects keyed by language")
        elif nested:
            yield from ((origin, str(ident), lang, queries.get(lang), answers.get(lang)) for lang in sorted({*queries, *answers}))
        else:
            yield origin, _question_id(str(ident), row.get("lang")), row.get("lang"), row.get("question"), answers


def _question_id(ident: str, lang: Any) -> str:
    """A flat record's id without the language suffix the MIA 2022 files add (``-1002689427646740593_en``),
    so that one question aligns across languages: a suffix equal to the row's language, or any
    language-code suffix after a numeric MKQA example id (MIA's Tagalog rows end in ``_en``)."""
    if isinstance(lang, str) and lang and ident.endswith(f"_{lang}") and len(ident) > len(lang) + 1:
        return ident[: -len(lang) - 1]
    match = re.fullmatch(r"(-?\d+)_[a-z]{2,3}(?:_[a-z]{2})?", ident)
    return match.group(1) if match else ident


def item_rows(records: list[tuple[str, Any]], wanted: list[str] | None, skipped: Counter[str],
              picks: dict[str, tuple[str, ...]]) -> list[tuple[str, dict]]:
    """MKQA records -> ``(origin, row)`` in the item schema, for ``data.parse_row``: skip and count
    unusable answers (``skipped``), then give each id 3 honest distractors (their ids in ``picks``)."""
    answers: dict[str, dict[str, _Answer]] = {}
    problems: list[str] = []
    for origin, ident, lang, question, given in _entries(records, problems):
        if not isinstance(lang, str) or not lang.strip():
            problems.append(f"{origin}: field 'lang' must be a language code (got {lang!r})")
            continue
        lang = canonical_lang(lang)
        if lang in answers.get(ident, {}):
            problems.append(f"{origin}: id {ident!r} repeats {answers[ident][lang].origin} for language {lang!r}")
            continue
        usable = _read_answer(origin, question, given, lang, problems)
        if isinstance(usable, _Answer):
            answers.setdefault(ident, {})[lang] = usable
        elif usable and (wanted is None or lang in wanted):
            skipped[usable] += 1
    if problems:
        raise DatasetError(problems)
    toks = lru_cache(maxsize=None)(tokens)  # memoised for this load: ids are compared many times
    kinds = {ident: _majority(a.kind for a in by_lang.values()) for ident, by_lang in answers.items()}
    pools: dict[str, list[str]] = {}
    for ident in sorted(kinds):  # one pool per MKQA answer type: a date never stands in for a number
        pools.setdefault(kinds[ident], []).append(ident)
    rows = []
    for ident, by_lang in sorted(answers.items()):
        order = (other for other in _shuffled(pools[kinds[ident]], zlib.crc32(ident.encode())) if other != ident)
        chosen, kept = _choose(ident, order, answers, wanted, toks)
        for lang, own in sorted(by_lang.items()):
            if wanted is not None and lang not in wanted:
                continue
            if lang not in kept:
                skipped["too_few_distractors"] += 1
                continue
            picks[ident] = tuple(chosen)
            unique: dict[Any, str] = {}  # aliases: each form once after normalisation, none equal to the gold
            for form in own.forms:
                unique.setdefault(toks(form, lang) or form, form)
            rows.append((own.origin, {
                "id": ident, "lang": lang, "question": own.question, "answer": own.forms[0], "source": "mkqa",
                "aliases": list(unique.values())[1:], "type": ITEM_TYPE[kinds[ident]],
                "distractors": [answers[other][lang].forms[0] for other in chosen]}))
    return rows


def answer_kind(text: str) -> str:
    """The MKQA answer type of a plain-string answer: a date (a year, a numeric or CJK date, or day,
    month name and year), a number (digits with grouping, decimals, a sign or %), else an entity."""
    text = text.strip()
    if _YEAR.fullmatch(text) or (_DATE.fullmatch(text) and any(c.isdigit() for c in text)):
        return "date"
    if _NUMBER.fullmatch(text):
        return "number"
    words = re.findall(r"\w+", text.casefold())
    months = [w for w in words if not w.isdigit() and w[:3] in _MONTHS]
    others = [w for w in words if not w.isdigit() and w not in months and w not in ("de", "of", "del", "di", "du")]
    years = [w for w in words if _YEAR.fullmatch(w)]
    days = [w for w in words if w.isdigit() and int(w) <= 31]
    if len(months) == 1 and not others and len(years) == 1 and len(days) <= 1 and len(words) <= 6:
        return "date"
    return "entity"


def _answer_objects(given: list) -> list[dict]:
    """Plain-string answers as ``{type, text}`` objects: the first string's type is the answer's."""
    kind = next((answer_kind(a) for a in given if isinstance(a, str)), "entity")
    return [{"type": kind, "text": a, "aliases": []} if isinstance(a, str) else a for a in given]


def _read_answer(origin: str, question: Any, given: Any, lang: str, problems: list[str]) -> _Answer | str:
    """The usable answer, or the reason to skip it ("" after recording a malformed record)."""
    if given is None or given == [] or (isinstance(given, list) and given[0] == NO_ANSWER):
        return "unanswerable"
    if not isinstance(given, list) or not all(isinstance(a, (dict, str)) for a in given):
        problems.append(f"{origin}: field 'answers' for {lang!r} must be a list of answer strings or "
                        f"{{type, text, aliases}} objects (got {given!r:.80})")
        return ""
    given = _answer_objects(given)
    kinds = [MKQA_TYPES[k] if isinstance(k, int) and 0 <= k < len(MKQA_TYPES) else k
             for k in (a.get("type") for a in given)]
    text = given[0].get("text")
    if kinds[0] in ("long_answer", "binary"):
        return kinds[0]
    if kinds[0] == "unanswerable" or not isinstance(text, str) or not text.strip():
        return "unanswerable"
    if kinds[0] not in ITEM_TYPE:
        return "unknown_type"
    if (len(text.strip()) > 30) if lang.split("_")[0] in UNSPACED else (len(text.split()) > 5):
        return "too_long"
    if not isinstance(question, str) or not question.strip():
        return "no_question"
    # The gold is the first answer's text; its aliases and the other short answers are accepted too.
    forms = [f for a, kind in zip(given, kinds) if kind in ITEM_TYPE for f in (a.get("text"), *(a.get("aliases") or []))]
    forms = [f.strip() for f in forms if isinstance(f, str) and f.strip() and len(f) <= MAX_TEXT]
    return _Answer(origin, question.strip(), tuple(forms), kinds[0])


def _majority(kinds: Iterable[str]) -> str:
    """An id's answer type: the most common over its languages (ties by name): one pool per id."""
    counts = Counter(kinds)
    return min(counts, key=lambda kind: (-counts[kind], kind))


def _shuffled(pool: list[str], seed: int) -> Iterator[str]:
    """A seeded shuffle, drawn lazily (Fisher-Yates): an item pays for the candidates it looks at."""
    pool, rng = list(pool), random.Random(seed)
    for i in range(len(pool)):
        j = rng.randrange(i, len(pool))
        pool[i], pool[j] = pool[j], pool[i]
        yield pool[i]


def _choose(ident: str, order: Iterable[str], answers: dict[str, dict[str, _Answer]], wanted: list[str] | None,
            toks: Callable[[str, str], tuple[str, ...]]) -> tuple[list[str], set[str]]:
    """The first 3 ids of ``order`` whose golds are valid distractors in every kept language of ``ident``.

    Valid: the other id is usable in that language and, in the evaluated languages, its gold
    neither mentions nor is mentioned by a gold/alias form or an already chosen distractor
    (``matching.mentions`` both ways, on memoised tokens). Usability is required in all of the
    id's languages, evaluated or not, so that evaluating fewer languages keeps the same entities
    (only a match found in a language left out can differ). If no 3 fit, the language with the
    fewest valid candidates is dropped (and counted) until they do.
    """
    own = answers[ident]

    def valid(other: str, lang: str, chosen: list[str]) -> bool:
        theirs = answers[other].get(lang)
        if theirs is None or (wanted is not None and lang not in wanted):
            return theirs is not None
        gold = toks(theirs.forms[0], lang)
        taken = [toks(f, lang) for f in (*own[lang].forms, *(answers[c][lang].forms[0] for c in chosen))]
        return not any(contains_tokens(gold, form) or contains_tokens(form, gold) for form in taken)

    kept = set(own)
    while kept:
        chosen: list[str] = []
        tried: list[str] = []
        for other in order:
            tried.append(other)
            if all(valid(other, lang, chosen) for lang in sorted(kept)):
                chosen.append(other)
                if len(chosen) == MIN_DISTRACTORS:
                    return chosen, kept
        order = tried  # the whole pool, now drawn
        kept.remove(min(kept, key=lambda lang: (sum(valid(o, lang, []) for o in order), lang)))
    return [], kept
