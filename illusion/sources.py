"""Dataset specs -> validated ``Item`` records: ``load_items`` reads every form ``--illusion-dataset`` takes.

- a directory of ``<lang>.jsonl`` files in the item schema (DESIGN.md; default: the shipped
  ``fixtures/qa``), read line by line here.

The other forms are read through ``datasets``:

- ``PATH.jsonl`` / ``PATH.csv`` / ``PATH.parquet``: rows in the item schema (DESIGN.md). A CSV cell
  cannot hold a list, so there ``aliases`` and ``distractors`` are JSON-encoded lists, e.g.
  ``["Lyon","Nice","Brest"]`` (an empty ``aliases`` cell means none).
- ``mkqa:PATH_OR_ID``: MKQA (apple/ml-mkqa), nested (``example_id``, ``queries`` and ``answers``
  keyed by language) or flat (``id``, ``lang``, ``question``, ``answers``; the MIA 2022 shared
  task's ``mkqa-<lang>.jsonl``, whose ids end in ``_<lang>`` and whose answers are plain strings):
  a local ``.jsonl`` / ``.jsonl.gz`` file or a directory of them, else a hub id (the only network
  path). An answer is a ``{type, text, aliases}`` object or a plain string, whose type
  ``answer_kind`` infers from the text.
- ``hf:ID`` or ``hf:ID:SPLIT`` (default ``train``): a hub dataset in the item schema.

Every row goes through ``data.parse_row`` (the schema and its validation live in ``data``; this
module only reads). Origins: ``file:N`` (the line for JSONL and MKQA, the row counting the header
as 1 for CSV, the 1-based row for parquet) or ``ID[index]`` for hub rows.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .data import (MAX_TEXT, MIN_DISTRACTORS, DatasetError, Item, alignment_problems, check_keys, parse_row, row_key,
                   select_subset)
from .errors import DataError
from .matching import contains_tokens, tokens
from .paths import fixtures_dir

FORMS = ("a directory of <lang>.jsonl files; a .jsonl, .csv or .parquet file in the item schema; "
         "mkqa:PATH_OR_ID (an MKQA .jsonl/.jsonl.gz file, a directory of them, or a hub id); "
         "hf:ID[:SPLIT] (a hub dataset in the item schema)")
BUILDERS = {".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
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
class SourceReport:
    """What a source gave: the item count, skipped (id, language) pairs by reason, and for each
    MKQA id the ids whose golds are its distractors (the same entities in every language)."""

    spec: str
    items: int
    skipped: dict[str, int] = field(default_factory=dict)
    distractor_ids: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Cells:
    """A CSV row whose list columns did not decode as JSON: the row, and per column what is wrong."""

    row: dict
    bad: dict[str, str]


@dataclass(frozen=True)
class _Answer:
    """A usable MKQA answer in one language; ``forms`` is the gold, then every accepted form."""

    origin: str
    question: str
    forms: tuple[str, ...]
    kind: str  # the MKQA answer type


def default_dataset() -> Path:
    return fixtures_dir() / "qa"


def read_jsonl(path: Path, lang: str | None = None) -> list[Item]:
    """Read one ``<lang>.jsonl`` file; raise one DataError listing every bad row."""
    items, problems, rejected = scan_jsonl(path, lang)
    if problems:
        raise DatasetError(problems, items, rejected)
    return items


def scan_jsonl(path: Path, lang: str | None = None) -> tuple[list[Item], list[str], list[tuple[str, str, str]]]:
    """The valid items of a file, the problems of the others, and the keys of those (``row_key``)."""
    items: list[Item] = []
    problems: list[str] = []
    rejected: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check the --illusion-dataset path") from None
    if not any(line.strip() for line in lines):
        problems.append(f"{path}: no items (the file is empty); add items in the item schema or remove the file")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        origin = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{origin}: invalid JSON ({exc.msg} at column {exc.colno}); one JSON object per line")
            continue
        item, row_problems = parse_row(row, origin=origin, lang=lang)
        problems += row_problems
        if item is None:
            rejected += [key] if (key := row_key(row, origin)) else []
            continue
        if item.id in seen:
            problems.append(f"{origin}: field 'id' {item.id!r} repeats {seen[item.id]}; ids must be unique per language")
            continue
        seen[item.id] = origin
        items.append(item)
    return items, problems, rejected


def available_langs(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.jsonl"))


def load_items(
    dataset: str | Path | None = None,
    *,
    langs: Iterable[str] | None = None,
    limit_per_lang: int | None = None,
    seed: int = 0,
    note: Callable[[str], None] | None = None,
) -> list[Item]:
    """Load items of the chosen languages, ordered by language then id.

    ``dataset`` is a directory of ``<lang>.jsonl`` files (default: the shipped fixtures), or any
    spec ``illusion.sources`` reads: a .jsonl/.csv/.parquet file, ``mkqa:PATH_OR_ID``, ``hf:ID``.
    ``note`` hears what a source skipped (MKQA rows without a short answer, ...) and which ids some
    languages lack (``alignment_problems``: those items run without their counterparts).
    """
    wanted = list(dict.fromkeys(langs)) if langs else None
    items = _read_dataset(dataset, wanted, note or (lambda _msg: None))
    for line in alignment_problems(items, where=str(dataset or default_dataset())) if note else ():
        note(line)
    return select_subset(items, limit_per_lang, seed)


def check_dataset(dataset: str | Path | None = None) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` for ``python -m illusion validate``: what ``load_items`` raises or notes
    for every language of ``dataset``, in its words. Unaligned ids are problems, except for MKQA,
    whose gaps are the answers the loader skipped (counted in a note) and stay notes."""
    notes: list[str] = []
    try:
        items, problems, rejected = _read_dataset(dataset, None, notes.append), [], []
    except DatasetError as exc:
        items, problems, rejected = exc.items, exc.problems, exc.rejected
    except DataError as exc:
        return [str(exc)], notes
    misaligned = alignment_problems(items, rejected, where=str(dataset or default_dataset()))
    if str(dataset or "").startswith("mkqa:"):
        return problems, notes + misaligned
    return problems + misaligned, notes


def _read_dataset(dataset: str | Path | None, wanted: list[str] | None, note: Callable[[str], None]) -> list[Item]:
    """The items of ``dataset`` in ``wanted`` (None: all): the one reader of load_items and validate."""
    path = Path(dataset) if dataset else default_dataset()
    if path.is_dir() and not str(dataset or "").startswith(("mkqa:", "hf:")):
        items = _load_directory(path, wanted)
    else:
        items, report = load_source_with_report(str(dataset), langs=wanted)
        if report.skipped:
            note(f"{dataset}: skipped " + ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())))
    if not items:
        raise DataError(f"{dataset or path}: no items for languages {', '.join(wanted or [])}; check --illusion-langs")
    check_keys(items)
    return items


def _load_directory(path: Path, wanted: list[str] | None) -> list[Item]:
    present = available_langs(path)
    if not present:
        raise DataError(f"{path}: no <lang>.jsonl files; point --illusion-dataset at a directory of them")
    missing = [lang for lang in (wanted or []) if lang not in present]
    if missing:
        raise DataError(
            f"--illusion-langs asks for {', '.join(missing)} but {path} has only {', '.join(present)}; "
            "drop those languages or add the files"
        )
    items, problems, rejected = [], [], []
    for lang in wanted or present:  # every file's problems at once, not the first file's
        found = scan_jsonl(path / f"{lang}.jsonl", lang)
        items, problems, rejected = items + found[0], problems + found[1], rejected + found[2]
    if problems:
        raise DatasetError(problems, items, rejected)
    return items


def load_exemplars(langs: Iterable[str], directory: Path | None = None) -> dict[str, list[Item]]:
    """Solved items outside the evaluated set, per language, for the one-shot recovery probe."""
    root = directory or fixtures_dir() / "exemplars"
    return {lang: read_jsonl(root / f"{lang}.jsonl", lang) for lang in langs if (root / f"{lang}.jsonl").is_file()}


def load_source(spec: str, *, langs: Sequence[str] | None) -> list[Item]:
    """Validated items of ``spec`` in ``langs`` (None: all present), ordered by language then id."""
    return load_source_with_report(spec, langs=langs)[0]


def load_source_with_report(spec: str, *, langs: Sequence[str] | None) -> tuple[list[Item], SourceReport]:
    """Like ``load_source``, plus what was skipped and why, so a report can say what MKQA lost."""
    wanted = list(dict.fromkeys(langs)) if langs else None
    skipped: Counter[str] = Counter()
    picks: dict[str, tuple[str, ...]] = {}
    path = Path(spec)
    if spec.startswith("mkqa:"):
        wanted = list(dict.fromkeys(map(_lang, wanted))) if wanted else None
        items = _mkqa(_mkqa_rows(spec, spec[len("mkqa:"):]), wanted, skipped, picks)
    elif spec.startswith("hf:"):
        ident, _, split = spec[len("hf:"):].partition(":")
        items = _validate((origin, _tidy(row, csv_cells=False)) for origin, row in _hub(spec, ident, split or "train"))
    elif path.is_file() and path.suffix in BUILDERS:
        items = _read_file(path)
    else:
        problem = "not a form this option reads" if path.exists() else "no such file"
        raise DataError(f"--illusion-dataset {spec!r}: {problem}; accepted forms: {FORMS}")
    present = list(dict.fromkeys(item.lang for item in items))
    missing = [lang for lang in wanted or [] if lang not in present]
    if missing or not items:
        raise DataError(f"--illusion-dataset {spec!r}: no items for {', '.join(missing) or 'any language'} "
                        f"(it has {', '.join(present) or 'none'}); drop those languages or pick another dataset")
    order = {lang: n for n, lang in enumerate(wanted or sorted(present))}
    items = select_subset(sorted((i for i in items if i.lang in order), key=lambda i: order[i.lang]), None, 0)
    return items, SourceReport(spec, len(items), dict(sorted(skipped.items())), picks)


def _validate(rows: Iterable[tuple[str, Any]]) -> list[Item]:
    """parse_row every row; one DatasetError listing every bad row and every repeated (id, lang)."""
    items, problems, seen, rejected = [], [], {}, []
    for origin, row in rows:
        if isinstance(row, json.JSONDecodeError):
            problems.append(f"{origin}: invalid JSON ({row.msg} at column {row.colno}); one JSON object per line")
            continue
        bad = {}
        if isinstance(row, _Cells):  # the cell's own problem replaces parse_row's about that field
            row, bad = row.row, row.bad
            problems += [f"{origin}: {problem}" for problem in bad.values()]
        item, row_problems = parse_row(row, origin=origin, lang=None)
        problems += [p for p in row_problems if not any(p.startswith(f"{origin}: field {name!r}") for name in bad)]
        if item is None or bad:
            rejected += [key] if (key := row_key(row, origin)) else []
        elif (item.id, item.lang) in seen:
            problems.append(f"{origin}: field 'id' {item.id!r} repeats {seen[item.id, item.lang]} for language "
                            f"{item.lang!r}; ids must be unique per language")
        else:
            seen[item.id, item.lang] = origin
            items.append(item)
    if problems:
        raise DatasetError(problems, items, rejected)
    return items


def _read_file(path: Path) -> list[Item]:
    """An item-schema file through ``datasets``; JSONL that Arrow cannot type is read line by line."""
    builder, options = BUILDERS[path.suffix], {}
    try:
        if builder == "csv":  # every column as text: ids like "007" stay strings, empty cells stay ""
            from datasets import Features, Value

            with path.open(newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), [])
            options = {"features": Features({name: Value("string") for name in header}), "na_filter": False}
        rows = _load(builder, data_files=str(path), split="train", **options).to_list()
    except Exception as exc:  # datasets and pyarrow raise many types; the user needs one clear message
        if builder == "json":  # bad JSON or mixed types: the line reader names the line and the field
            return _validate(_json_lines(path))
        raise DataError(f"{path}: cannot read as {builder} ({type(exc).__name__}: {str(exc)[:200]}); "
                        f"save it as valid {builder} in the item schema") from None
    if builder == "json":  # datasets skips blank lines: map rows back to line numbers
        lines = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    else:
        lines = [index + (2 if builder == "csv" else 1) for index in range(len(rows))]
    return _validate((f"{path}:{n}", _tidy(row, csv_cells=builder == "csv")) for n, row in zip(lines, rows))


def _tidy(row: dict, *, csv_cells: bool) -> dict | _Cells:
    """Absent values (Arrow's None, empty CSV cells) are missing fields; CSV list cells are JSON."""
    row = {k: v for k, v in row.items() if v is not None and not (csv_cells and v == "")}
    bad = {}
    for name in ("aliases", "distractors") if csv_cells else ():
        try:
            row[name] = json.loads(row[name])
        except KeyError:
            pass  # parse_row names a missing field
        except json.JSONDecodeError as exc:
            bad[name] = (f"column {name!r} is not a JSON list ({exc.msg} at character {exc.pos + 1} of "
                         f"{row[name]!r:.80}); write the cell as a JSON list of strings, e.g. "
                         '["Lyon", "Nice", "Brest"], or leave it empty for none')
    return _Cells(row, bad) if bad else row


def _json_lines(path: Path) -> list[tuple[str, Any]]:
    """(file:line, decoded object or its JSONDecodeError) per non-blank line; .gz is decompressed."""
    rows: list[tuple[str, Any]] = []
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")) as fh:
            for number, line in enumerate(fh, 1):
                try:
                    rows += [(f"{path}:{number}", json.loads(line))] if line.strip() else []
                except json.JSONDecodeError as exc:
                    rows.append((f"{path}:{number}", exc))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); give a UTF-8 .jsonl or .jsonl.gz file") from None
    return rows


def _load(*args: Any, **kwargs: Any) -> Any:
    import datasets  # imported late: the plugin must start without it

    return datasets.load_dataset(*args, **kwargs)


def _hub(spec: str, ident: str, split: str) -> list[tuple[str, Any]]:
    """Rows of a hub dataset (the only network path), each with its ``ID[index]`` origin."""
    try:
        return [(f"{ident}[{i}]", row) for i, row in enumerate(_load(ident, split=split))]
    except Exception as exc:
        raise DataError(f"--illusion-dataset {spec!r}: cannot load hub dataset {ident!r} split {split!r} "
                        f"({type(exc).__name__}: {str(exc)[:200]}); check the id, the split and the network, "
                        f"or pass a local file. Accepted forms: {FORMS}") from None


def _lang(code: str) -> str:
    return "zh" if code == "zh_cn" else code


def _mkqa_rows(spec: str, target: str) -> list[tuple[str, Any]]:
    """MKQA records from a local file or directory; a bare ``owner/name`` is a hub id."""
    path = Path(target)
    if not path.exists():
        if path.suffix in (".jsonl", ".gz", ".json") or target.count("/") > 1 or target.startswith((".", "/", "~")):
            raise DataError(f"--illusion-dataset {spec!r}: no such file or directory; accepted forms: {FORMS}")
        return _hub(spec, target, "train")
    files = sorted(p for p in path.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz"))) if path.is_dir() else [path]
    if not files:
        raise DataError(f"--illusion-dataset {spec!r}: the directory has no .jsonl or .jsonl.gz files")
    return [row for file in files for row in _json_lines(file)]


def _mkqa_entries(rows: list[tuple[str, Any]], problems: list[str]) -> Iterable[tuple[str, str, str, Any, Any]]:
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


def _mkqa(rows: list[tuple[str, Any]], wanted: list[str] | None, skipped: Counter[str],
          picks: dict[str, tuple[str, ...]]) -> list[Item]:
    """MKQA -> items: skip and count unusable answers, then give each id 3 honest distractors."""
    answers: dict[str, dict[str, _Answer]] = {}
    problems: list[str] = []
    for origin, ident, lang, question, given in _mkqa_entries(rows, problems):
        if not isinstance(lang, str) or not lang.strip():
            problems.append(f"{origin}: field 'lang' must be a language code (got {lang!r})")
            continue
        lang = _lang(lang)
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
    return _validate(rows)


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
