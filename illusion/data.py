"""The item schema and its validation: ``Item``, row checks, alignment, and the fixed seeded subset.

An item is one question in one language; its ``id`` is shared across languages. Every problem
is reported as ``file:line: field 'x' ...; fix`` and all problems of a file are listed at once.
Reading datasets (files, ``mkqa:``, ``hf:``) is ``illusion.sources``'s job; this module reads nothing.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from typing import Sequence

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


def _summarise(problems: Sequence[str], shown: int = 20) -> str:
    more = f"\n... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} problem(s) in the dataset:\n" + "\n".join(problems[:shown]) + more


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


def exemplar_for(item: Item, exemplars: dict[str, list[Item]]) -> Item | None:
    """A fixed exemplar per item (by a hash of its id), never the item itself."""
    import zlib

    pool = [ex for ex in exemplars.get(item.lang, []) if ex.id != item.id]
    return pool[zlib.crc32(item.id.encode()) % len(pool)] if pool else None
