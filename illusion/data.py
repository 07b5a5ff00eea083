"""Dataset files -> validated, aligned ``Item`` records, and the fixed seeded subset.

An item is one question in one language; its ``id`` is shared across languages. Every problem
is reported as ``file:line: field 'x' ...; fix`` and all problems of a file are listed at once.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import DataError
from .terminal import has_unsafe

ITEM_TYPES = ("place", "person", "number", "date", "entity")
MIN_DISTRACTORS = 3
MAX_TEXT = 300  # characters; questions and answers are short by design


class DatasetError(DataError):
    """Every problem of a dataset at once. The message shows the first 20; ``problems`` holds all
    (``validate`` prints them), ``items`` the valid rows and ``rejected`` the ``(origin, lang, id)``
    of invalid rows that name both, so alignment can still be checked before the rows are fixed."""

    def __init__(self, problems: Sequence[str], items: Sequence["Item"] = (),
                 rejected: Sequence[tuple[str, str, str]] = ()) -> None:
        super().__init__(_summarise(problems))
        self.problems = list(problems)
        self.items = list(items)
        self.rejected = list(rejected)


@dataclass(frozen=True)
class Item:
    """One question in one language. ``origin`` is ``file:line`` for error messages."""

    id: str
    lang: str
    question: str
    answer: str
    aliases: tuple[str, ...]
    distractors: tuple[str, ...]
    type: str
    source: str | None = None
    origin: str = ""

    @property
    def key(self) -> str:
        """The test id: ``<lang>-<id>``."""
        return f"{self.lang}-{self.id}"

    def content_hash(self) -> str:
        """Hash of everything that decides a result (not ``origin``), for cache keys."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("origin", "source")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def fixtures_dir() -> Path:
    """The shipped fixtures: the source tree's ``fixtures/``, or the copy packaged in the wheel."""
    source = Path(__file__).resolve().parent.parent / "fixtures"
    if (source / "qa").is_dir():
        return source
    from importlib.resources import files

    return Path(str(files("illusion") / "_fixtures"))


def default_dataset() -> Path:
    return fixtures_dir() / "qa"


def parse_row(row: object, *, origin: str, lang: str | None) -> tuple[Item | None, list[str]]:
    """Validate one decoded JSON row; return the item or the list of problems."""
    if not isinstance(row, dict):
        return None, [f"{origin}: expected a JSON object with fields id, lang, question, answer, distractors, type"]
    problems: list[str] = []

    def text(name: str, required: bool = True) -> str:
        value = row.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{origin}: field {name!r} must be a non-empty string (got {value!r})")
            return ""
        if len(value) > MAX_TEXT:
            problems.append(f"{origin}: field {name!r} is {len(value)} characters; keep it under {MAX_TEXT}")
        return value.strip()

    def strings(name: str, minimum: int) -> tuple[str, ...]:
        value = row.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            problems.append(f"{origin}: field {name!r} must be a list of non-empty strings (got {value!r})")
            return ()
        if len(value) < minimum:
            problems.append(f"{origin}: field {name!r} has {len(value)} entries; an item needs at least {minimum}")
        return tuple(v.strip() for v in value)

    item_id = str(row.get("id", "")).strip() if isinstance(row.get("id"), (str, int)) else ""
    if not item_id:
        problems.append(f"{origin}: field 'id' is missing; give every item an id shared across languages")
    elif has_unsafe(item_id):  # an id names tests and is printed on every report line
        problems.append(f"{origin}: field 'id' {item_id!r} contains a control or bidirectional-formatting "
                        "character (tab, newline, escape, direction override, ...); remove it")
    item_lang = text("lang")
    if lang and item_lang and item_lang != lang:
        problems.append(f"{origin}: field 'lang' is {item_lang!r} but the file is for {lang!r}; fix the row or move it")
    item = Item(
        id=item_id, lang=item_lang, question=text("question"), answer=text("answer"),
        aliases=strings("aliases", 0), distractors=strings("distractors", MIN_DISTRACTORS),
        type=text("type"), source=text("source", required=False) or None, origin=origin,
    )
    if item.type and item.type not in ITEM_TYPES:
        problems.append(f"{origin}: field 'type' is {item.type!r}; use one of {', '.join(ITEM_TYPES)}")
    problems += _answer_problems(item)
    return (None, problems) if problems else (item, [])


def row_key(row: object, origin: str) -> tuple[str, str, str] | None:
    """``(origin, lang, id)`` of a row that failed validation but names both, else None."""
    if not isinstance(row, dict) or not isinstance(row.get("lang"), str) or not isinstance(row.get("id"), (str, int)):
        return None
    lang, item_id = row["lang"].strip(), str(row["id"]).strip()
    return (origin, lang, item_id) if lang and item_id else None


def _answer_problems(item: Item) -> list[str]:
    """Distractors must be distinct and must not be (or contain) the gold or an alias."""
    from .matching import mentions, normalize

    problems = []
    golds = [g for g in (item.answer, *item.aliases) if g]
    seen: set[str] = set()
    for distractor in item.distractors:
        norm = normalize(distractor, item.lang)
        if norm in seen:
            problems.append(f"{item.origin}: field 'distractors' repeats {distractor!r}; make distractors distinct")
        seen.add(norm)
        for gold in golds:
            if mentions(distractor, gold, item.lang) or mentions(gold, distractor, item.lang):
                problems.append(
                    f"{item.origin}: field 'distractors' entry {distractor!r} matches the gold form {gold!r} after "
                    "normalisation; a right answer would count as a hedge; replace the distractor"
                )
    return problems


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


def _summarise(problems: Sequence[str], shown: int = 20) -> str:
    more = f"\n... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} problem(s) in the dataset:\n" + "\n".join(problems[:shown]) + more


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
        from .sources import load_source_with_report

        items, report = load_source_with_report(str(dataset), langs=wanted)
        if report.skipped:
            note(f"{dataset}: skipped " + ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())))
    if not items:
        raise DataError(f"{dataset or path}: no items for languages {', '.join(wanted or [])}; check --illusion-langs")
    check_keys(items)
    return items


def alignment_problems(items: Sequence[Item], rejected: Sequence[tuple[str, str, str]] = (), *,
                       where: str) -> list[str]:
    """Per language, the ids other languages have and it lacks; then types that disagree across
    languages. ``rejected`` rows (``row_key``) count as present. Each line names the language's file
    when all its rows come from one, else ``where`` (the dataset spec)."""
    ids: dict[str, set[str]] = {}
    files: dict[str, set[str]] = {}
    for origin, lang, item_id in [(i.origin, i.lang, i.id) for i in items] + list(rejected):
        ids.setdefault(lang, set()).add(item_id)
        files.setdefault(lang, set()).add(origin.rpartition(":")[0] or origin)
    place = {lang: next(iter(found)) if len(found) == 1 else where for lang, found in files.items()}
    every = set().union(*ids.values()) if ids else set()
    problems = []
    for lang in sorted(ids) if len(ids) > 1 else ():
        missing = sorted(every - ids[lang])
        if missing:
            shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
            problems.append(f"{place[lang]}: {len(missing)} of {len(every)} ids missing for {lang!r} ({shown}); "
                            "every language must hold the same ids")
    types: dict[str, tuple[str, str]] = {}
    for item in sorted(items, key=lambda it: (it.lang, it.id)):
        first_lang, first_type = types.setdefault(item.id, (item.lang, item.type))
        if item.type != first_type:
            problems.append(f"{place[item.lang]}: item {item.id} has type {item.type!r} but {first_lang} has "
                            f"{first_type!r}; types must agree across languages")
    return problems


def check_keys(items: Sequence[Item]) -> None:
    """Every item needs its own test id ``<lang>-<id>``: ``pt-BR``/``q1`` and ``pt``/``BR-q1`` share
    one, and would share a test, a stored result and a report row."""
    seen: dict[str, Item] = {}
    problems = []
    for item in items:
        first = seen.setdefault(item.key, item)
        if first is not item:
            problems.append(f"{item.origin or item.lang}: language {item.lang!r}, id {item.id!r} gets the test id "
                            f"{item.key!r}, already taken by language {first.lang!r}, id {first.id!r} "
                            f"({first.origin or 'the same source'}); "
                            "test ids are <lang>-<id>: rename one of the ids")
    if problems:
        raise DataError(_summarise(problems))


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


def select_subset(items: Sequence[Item], limit_per_lang: int | None, seed: int) -> list[Item]:
    """The same ``limit`` ids in every language, chosen by ``seed`` from the ids all languages share."""
    order = {lang: n for n, lang in enumerate(dict.fromkeys(item.lang for item in items))}
    ordered = sorted(items, key=lambda it: (order[it.lang], it.id))
    if limit_per_lang is None:
        return ordered
    if limit_per_lang < 1:
        raise DataError(f"--illusion-limit-per-lang {limit_per_lang}: must be at least 1")
    by_lang: dict[str, set[str]] = {}
    for item in items:
        by_lang.setdefault(item.lang, set()).add(item.id)
    shared = sorted(set.intersection(*by_lang.values()))
    chosen = set(random.Random(seed).sample(shared, min(limit_per_lang, len(shared))))
    return [item for item in ordered if item.id in chosen]


def load_exemplars(langs: Iterable[str], directory: Path | None = None) -> dict[str, list[Item]]:
    """Solved items outside the evaluated set, per language, for the one-shot recovery probe."""
    root = directory or fixtures_dir() / "exemplars"
    return {lang: read_jsonl(root / f"{lang}.jsonl", lang) for lang in langs if (root / f"{lang}.jsonl").is_file()}


def exemplar_for(item: Item, exemplars: dict[str, list[Item]]) -> Item | None:
    """A fixed exemplar per item (by a hash of its id), never the item itself."""
    import zlib

    pool = [ex for ex in exemplars.get(item.lang, []) if ex.id != item.id]
    return pool[zlib.crc32(item.id.encode()) % len(pool)] if pool else None
