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
  ``mkqa.answer_kind`` infers from the text; ``illusion.mkqa`` turns the records into item rows.
- ``hf:ID`` or ``hf:ID:SPLIT`` (default ``train``): a hub dataset in the item schema.

Every row goes through ``data.parse_row`` (the schema and its validation live in ``data``; this
module only reads). Origins: ``file:N`` (the line for JSONL and MKQA, the row counting the header
as 1 for CSV, the 1-based row for parquet) or ``ID[index]`` for hub rows.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import mkqa
from .data import DatasetError, Item, alignment_problems, check_keys, parse_row, row_key, select_subset
from .errors import DataError
from .paths import fixtures_dir

FORMS = ("a directory of <lang>.jsonl files; a .jsonl, .csv or .parquet file in the item schema; "
         "mkqa:PATH_OR_ID (an MKQA .jsonl/.jsonl.gz file, a directory of them, or a hub id); "
         "hf:ID[:SPLIT] (a hub dataset in the item schema)")
BUILDERS = {".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


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
        wanted = list(dict.fromkeys(map(mkqa.canonical_lang, wanted))) if wanted else None
        items = _validate(mkqa.item_rows(_mkqa_rows(spec, spec[len("mkqa:"):]), wanted, skipped, picks))
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
