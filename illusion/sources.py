"""Items from dataset specs other than the shipped ``<lang>.jsonl`` directory, through ``datasets``.

Spec forms (``--illusion-dataset``):

- ``PATH.jsonl`` / ``PATH.csv`` / ``PATH.parquet``: rows in the item schema (DESIGN.md). A CSV cell
  cannot hold a list, so there ``aliases`` and ``distractors`` are JSON-encoded lists, e.g.
  ``["Lyon","Nice","Brest"]`` (an empty ``aliases`` cell means none).
- ``mkqa:PATH_OR_ID``: MKQA (apple/ml-mkqa) in its own format, nested
  (``example_id``, ``queries`` and ``answers`` keyed by language) or flat
  (``id``, ``lang``, ``question``, ``answers``); a local ``.jsonl``/``.jsonl.gz`` file or a directory
  of them, else a hub id (the only network path).
- ``hf:ID`` or ``hf:ID:SPLIT`` (default ``train``): a hub dataset in the item schema.

Every row goes through ``data.parse_row``. Origins are ``file:N`` (N = line for JSONL and MKQA,
row counting the header as 1 for CSV, 1-based row for parquet) or ``ID[index]`` for hub rows.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .data import MAX_TEXT, MIN_DISTRACTORS, Item, _summarise, parse_row, select_subset
from .errors import DataError
from .matching import mentions, normalize

FORMS = ("a directory of <lang>.jsonl files; a .jsonl, .csv or .parquet file in the item schema; "
         "mkqa:PATH_OR_ID (MKQA .jsonl/.jsonl.gz file, directory or hub id); hf:ID[:SPLIT] (hub dataset "
         "in the item schema)")
BUILDERS = {".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# The hub copy of MKQA stores the answer type as a ClassLabel index, in this order.
MKQA_TYPES = ("entity", "long_answer", "unanswerable", "date", "number", "number_with_unit", "short_phrase", "binary")
ITEM_TYPE = {"entity": "entity", "short_phrase": "entity", "number": "number", "number_with_unit": "number",
             "date": "date"}
UNSPACED = ("zh", "ja", "th")  # answer length is counted in characters there, not words


@dataclass(frozen=True)
class SourceReport:
    """What a source gave: the item count, skipped (id, language) pairs by reason, and for each
    MKQA id the source ids whose golds became its distractors (the same in every language)."""

    spec: str
    items: int
    skipped: dict[str, int] = field(default_factory=dict)
    distractor_ids: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Answer:
    """One usable MKQA answer: a question and its short gold in one language."""

    origin: str
    question: str
    gold: str
    aliases: tuple[str, ...]
    kind: str  # the MKQA answer type


def load_source(spec: str, *, langs: Sequence[str] | None) -> list[Item]:
    """Validated items of ``spec`` in ``langs`` (None: all present), ordered by language then id."""
    return load_source_with_report(spec, langs=langs)[0]


def load_source_with_report(spec: str, *, langs: Sequence[str] | None) -> tuple[list[Item], SourceReport]:
    """Like ``load_source``, plus what was skipped and why, so reports can say what MKQA lost."""
    wanted = list(dict.fromkeys(_lang(lang) for lang in langs)) if langs else None
    skipped: Counter[str] = Counter()
    picks: dict[str, tuple[str, ...]] = {}
    if spec.startswith("mkqa:"):
        items = _mkqa(spec, spec[len("mkqa:"):], wanted, skipped, picks)
    elif spec.startswith("hf:"):
        ident, _, split = spec[len("hf:"):].partition(":")
        items = _validate(_hub(spec, ident, split or "train"))
    elif Path(spec).is_file() and Path(spec).suffix in BUILDERS:
        items = _read_file(Path(spec))
    else:
        problem = "no such file" if not Path(spec).exists() else "not a form this option reads"
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
    """parse_row every row; one DataError listing every bad row and repeated (id, lang)."""
    items, problems, seen = [], [], {}
    for origin, row in rows:
        if isinstance(row, json.JSONDecodeError):
            problems.append(f"{origin}: invalid JSON ({row.msg} at column {row.colno}); one JSON object per line")
            continue
        item, row_problems = parse_row(row, origin=origin, lang=None)
        problems += row_problems
        if item is not None and (item.id, item.lang) in seen:
            problems.append(f"{origin}: field 'id' {item.id!r} repeats {seen[item.id, item.lang]} for language "
                            f"{item.lang!r}; ids must be unique per language")
        elif item is not None:
            seen[item.id, item.lang] = origin
            items.append(item)
    if problems:
        raise DataError(_summarise(problems))
    return items


def _read_file(path: Path) -> list[Item]:
    """A local item-schema file through ``datasets``; JSONL it cannot type falls back to the line reader."""
    builder, options = BUILDERS[path.suffix], {}
    try:
        if builder == "csv":  # every column as text: ids like "007" stay strings, empty cells stay ""
            with path.open(newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), [])
            from datasets import Features, Value

            options = {"features": Features({name: Value("string") for name in header}), "na_filter": False}
        rows = _load(builder, data_files=str(path), split="train", **options).to_list()
    except Exception as exc:  # datasets/pyarrow raise many types; the user needs one clear message
        if builder == "json":  # bad JSON or mixed types: read line by line to name the line and field
            return _validate(_json_lines(path))
        raise DataError(f"{path}: cannot read as {builder} ({type(exc).__name__}: {str(exc)[:200]}); "
                        f"check the file is valid {builder} in the item schema") from None
    if builder == "json":  # datasets skips blank lines: map row index back to the line number
        lines = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    else:
        lines = [index + (2 if builder == "csv" else 1) for index in range(len(rows))]
    return _validate((f"{path}:{n}", _tidy(row, csv_cells=builder == "csv")) for n, row in zip(lines, rows))


def _tidy(row: dict, *, csv_cells: bool) -> dict:
    """Absent values (Arrow None, empty CSV cells) count as missing; CSV list cells are JSON."""
    row = {k: v for k, v in row.items() if v is not None and not (csv_cells and v == "")}
    for name in ("aliases", "distractors") if csv_cells else ():
        if name in row:
            try:
                row[name] = json.loads(row[name])
            except json.JSONDecodeError:
                pass  # parse_row then names the field: "must be a list of non-empty strings (got '...')"
    return row


def _json_lines(path: Path) -> list[tuple[str, Any]]:
    """(file:line, decoded object or its JSONDecodeError) for each non-blank line; .gz allowed."""
    rows: list[tuple[str, Any]] = []
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")) as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append((f"{path}:{number}", json.loads(line)))
                    except json.JSONDecodeError as exc:
                        rows.append((f"{path}:{number}", exc))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); give a UTF-8 .jsonl or .jsonl.gz file") from None
    return rows


def _load(*args: Any, **kwargs: Any) -> Any:
    import datasets

    return datasets.load_dataset(*args, **kwargs)


def _hub(spec: str, ident: str, split: str) -> list[tuple[str, Any]]:
    try:
        return [(f"{ident}[{i}]", row) for i, row in enumerate(_load(ident, split=split))]
    except Exception as exc:
        raise DataError(f"--illusion-dataset {spec!r}: cannot load hub dataset {ident!r} split {split!r} "
                        f"({type(exc).__name__}: {str(exc)[:200]}); check the id, the split and the network, "
                        f"or pass a local file. Accepted forms: {FORMS}") from None


def _lang(code: str) -> str:
    return "zh" if code == "zh_cn" else code


def _mkqa_rows(spec: str, target: str) -> Iterable[tuple[str, Any]]:
    """(origin, decoded row or the JSON error) from local MKQA files, else from the hub."""
    path = Path(target)
    files = sorted(p for p in path.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz"))) if path.is_dir() else [path]
    if not path.exists():
        if path.suffix in (".jsonl", ".gz", ".json") or target.count("/") > 1 or target.startswith((".", "/", "~")):
            raise DataError(f"--illusion-dataset {spec!r}: no such file or directory {target!r}; accepted forms: {FORMS}")
        return _hub(spec, target, "train")
    if not files:
        raise DataError(f"--illusion-dataset {spec!r}: {target} has no .jsonl or .jsonl.gz files")
    return [row for file in files for row in _json_lines(file)]


def _mkqa(spec: str, target: str, wanted: list[str] | None, skipped: Counter[str],
          picks: dict[str, tuple[str, ...]]) -> list[Item]:
    """MKQA -> items: skip unusable answers, then give each id 3 honest distractors."""
    answers: dict[str, dict[str, _Answer]] = {}
    problems: list[str] = []
    for origin, row in _mkqa_rows(spec, target):
        if not isinstance(row, dict):
            problems.append(f"{origin}: not an MKQA record ({row}); write one JSON object per line with example_id, "
                            "queries and answers (or id, lang, question, answers)")
            continue
        nested = "queries" in row or "example_id" in row
        ident = row.get("example_id" if nested else "id")
        queries, per_lang = row.get("queries"), row.get("answers")
        if nested and not (isinstance(queries, dict) and isinstance(per_lang, dict)):
            problems.append(f"{origin}: fields 'queries' and 'answers' must be objects keyed by language")
            continue
        entries = ([(lang, queries.get(lang), per_lang.get(lang)) for lang in sorted({*queries, *per_lang})]
                   if nested else [(row.get("lang"), row.get("question"), per_lang)])
        if not isinstance(ident, (str, int)) or not str(ident).strip():
            problems.append(f"{origin}: field {'example_id' if nested else 'id'!r} is missing; give every record an id")
            continue
        ident = str(ident).strip()
        for lang, question, given in entries:
            if not isinstance(lang, str) or not lang.strip():
                problems.append(f"{origin}: field 'lang' must be a language code (got {lang!r})")
                continue
            lang = _lang(lang)
            if lang in answers.get(ident, {}):
                problems.append(f"{origin}: id {ident!r} repeats {answers[ident][lang].origin} for language {lang!r}")
                continue
            try:
                usable = _read_answer(origin, question, given, lang)
            except DataError as exc:
                problems.append(str(exc))
                continue
            if isinstance(usable, _Answer):
                answers.setdefault(ident, {})[lang] = usable
            elif wanted is None or lang in wanted:
                skipped[usable] += 1
    if problems:
        raise DataError(_summarise(problems))

    kinds = {i: _majority(a.kind for a in by_lang.values()) for i, by_lang in answers.items()}
    pools: dict[str, list[str]] = {}
    for ident in sorted(kinds):
        pools.setdefault(kinds[ident], []).append(ident)
    rows = []
    for ident, by_lang in sorted(answers.items()):
        order = [other for other in pools[kinds[ident]] if other != ident]
        random.Random(zlib.crc32(ident.encode())).shuffle(order)
        chosen, kept = _choose(by_lang, order, answers)
        for lang, own in sorted(by_lang.items()):
            if wanted is not None and lang not in wanted:
                continue
            if lang not in kept:
                skipped["too_few_distractors"] += 1
                continue
            picks[ident] = tuple(chosen)
            rows.append((own.origin, {"id": ident, "lang": lang, "question": own.question, "answer": own.gold,
                                      "aliases": list(own.aliases), "type": ITEM_TYPE[kinds[ident]], "source": "mkqa",
                                      "distractors": [answers[other][lang].gold for other in chosen]}))
    return _validate(rows)


def _read_answer(origin: str, question: Any, given: Any, lang: str) -> _Answer | str:
    """The usable answer or the reason to skip it; DataError if the record is malformed."""
    if given is None or given == []:
        return "unanswerable"
    if not isinstance(given, list) or not all(isinstance(a, dict) for a in given):
        raise DataError(f"{origin}: field 'answers' for {lang!r} must be a list of {{type, text, aliases}} objects "
                        f"(got {given!r:.80}); fix the record")
    kinds = [_kind(a.get("type")) for a in given]
    text = given[0].get("text")
    if kinds[0] in ("long_answer", "binary"):
        return kinds[0]
    if kinds[0] == "unanswerable" or not isinstance(text, str) or not text.strip():
        return "unanswerable"
    if kinds[0] not in ITEM_TYPE:
        return "unknown_type"
    if (len(text) > 30) if lang.split("_")[0] in UNSPACED else (len(text.split()) > 5):
        return "too_long"
    if not isinstance(question, str) or not question.strip():
        return "no_question"
    # The gold is the first answer; the others and all their aliases are accepted forms too.
    forms = [text, *(given[0].get("aliases") or [])]
    forms += [f for a, k in zip(given[1:], kinds[1:]) if k in ITEM_TYPE for f in (a.get("text"), *(a.get("aliases") or []))]
    unique: dict[str, str] = {}
    for form in forms:
        if isinstance(form, str) and form.strip() and len(form) <= MAX_TEXT:
            unique.setdefault(normalize(form, lang) or form.strip(), form.strip())
    aliases = tuple(list(unique.values())[1:])
    return _Answer(origin, question.strip(), text.strip(), aliases, kinds[0])


def _kind(value: Any) -> Any:
    """MKQA answer type by name; the hub copy stores its ClassLabel index instead."""
    return MKQA_TYPES[value] if isinstance(value, int) and 0 <= value < len(MKQA_TYPES) else value


def _majority(kinds: Iterable[str]) -> str:
    """An id's answer type: the most common across its languages (ties by name), so one pool per id."""
    counts = Counter(kinds)
    return min(counts, key=lambda kind: (-counts[kind], kind))


def _choose(own: dict[str, _Answer], order: list[str],
            answers: dict[str, dict[str, _Answer]]) -> tuple[list[str], set[str]]:
    """3 other ids whose golds are valid distractors in every kept language of this id.

    Valid: the other id answers in that language, and its gold neither mentions nor is mentioned
    by this item's gold/aliases or an already chosen distractor. If no 3 work in all languages,
    the language with the fewest valid candidates is dropped (and counted) until they do.
    """

    def valid(other: str, lang: str, chosen: list[str]) -> bool:
        theirs = answers[other].get(lang)
        if theirs is None:
            return False
        taken = [own[lang].gold, *own[lang].aliases, *(answers[c][lang].gold for c in chosen)]
        return not any(mentions(theirs.gold, f, lang) or mentions(f, theirs.gold, lang) for f in taken)

    kept = set(own)
    while kept:
        chosen: list[str] = []
        for other in order:
            if all(valid(other, lang, chosen) for lang in sorted(kept)):
                chosen.append(other)
                if len(chosen) == MIN_DISTRACTORS:
                    return chosen, kept
        kept.remove(min(kept, key=lambda lang: (sum(valid(o, lang, []) for o in order), lang)))
    return [], kept
