"""Command line: ``python -m illusion validate PATH``.

Subcommands print one line per problem (``file:line: field ...; fix``) and exit 1 when any is
found, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import json

from .data import available_langs, default_dataset, scan_jsonl
from .errors import IllusionError


def validate(path: Path) -> list[str]:
    """Every problem in a dataset directory: per-row problems, then alignment across languages."""
    langs = available_langs(path) if path.is_dir() else [path.stem]
    files = [path / f"{lang}.jsonl" for lang in langs] if path.is_dir() else [path]
    if not files:
        return [f"{path}: no <lang>.jsonl files"]
    problems: list[str] = []
    ids: dict[str, dict[str, str]] = {}
    for lang, file in zip(langs, files):
        items, found = scan_jsonl(file, lang)
        problems += found
        ids[lang] = {item.id: item.type for item in items} | _raw_ids(file)
    if len(ids) > 1:
        every = set().union(*(set(v) for v in ids.values()))
        for lang, types in ids.items():
            missing = sorted(every - set(types))
            if missing:
                problems.append(f"{path / (lang + '.jsonl')}: ids {', '.join(missing[:10])} are missing; "
                                "every language must hold the same ids")
        first = next(iter(ids))
        for lang, types in ids.items():
            for item_id, item_type in types.items():
                if item_id in ids[first] and ids[first][item_id] != item_type:
                    problems.append(f"{path / (lang + '.jsonl')}: item {item_id} has type {item_type!r} but "
                                    f"{first} has {ids[first][item_id]!r}; types must agree across languages")
    return problems


def _raw_ids(file: Path) -> dict[str, str]:
    """ids (and types) of rows that failed validation, so alignment is still checked."""
    found: dict[str, str] = {}
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            found[row["id"]] = str(row.get("type"))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m illusion", description="benchmark-illusion tools")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="check a dataset directory or .jsonl file")
    check.add_argument("path", nargs="?", type=Path, default=default_dataset())
    args = parser.parse_args(argv)
    try:
        problems = validate(args.path)
    except IllusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {args.path}" if problems else f"ok: {args.path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
