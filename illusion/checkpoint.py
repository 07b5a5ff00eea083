"""Checkpoint directories the commands write (``prune``, ``export``): where ``--out`` may point,
how a checkpoint lands there, and ``python -m illusion export``.

Every checkpoint a command writes carries a marker, ``illusion-<command>.json``: what it was made
from and the files the command wrote. A later run of any command recognises a directory the project
wrote by its marker and replaces (or removes) only the files listed there; files the project never
wrote are never removed, and without ``--force`` never overwritten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ConfigError

COMMANDS = ("prune", "export")  # the commands that write checkpoints, each with its own marker
MARKER_VERSION = 1
EXPORT_DTYPE = "float32"  # what the suite loads on CPU; the builtin's conversion is float32 too


def marker_name(command: str) -> str:
    """``illusion-prune.json``, ``illusion-export.json``: the marker a command leaves."""
    return f"illusion-{command}.json"


MARKERS = tuple(marker_name(command) for command in COMMANDS)


@dataclass(frozen=True)
class OutputDir:
    """What ``--out`` holds before writing: the files an earlier command of this project wrote there
    (listed in its marker; they may be replaced or removed), the markers found, and every other
    entry (never removed)."""

    path: Path
    exists: bool
    owned: frozenset[str]
    foreign: frozenset[str]
    markers: frozenset[str] = frozenset()


def _marker_files(path: Path) -> frozenset[str] | None:
    """The plain file names a valid marker at ``path`` lists; None when it is missing or invalid."""
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, list):
        return None
    return frozenset(name for name in files if isinstance(name, str) and _plain_name(name))


def _plain_name(name: str) -> bool:
    """A file name inside the directory, never a path out of it (nor a marker)."""
    return name not in ("", ".", "..", *MARKERS) and "/" not in name and "\\" not in name and "\0" not in name


def inspect_output(out: Path, *, force: bool) -> OutputDir:
    """Check ``out`` can take a checkpoint; raise ConfigError (before any work) if it cannot.

    Absent, empty, or written by a command of this project before: fine. Anything else needs
    ``force``, and even then only the checkpoint's own files are written there; other files are kept.
    """
    from .files import STAGING_DIR

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file, not a directory; give a new or empty directory")
    if not out.exists():
        return OutputDir(out, False, frozenset(), frozenset())
    listed = {name: _marker_files(out / name) for name in MARKERS}
    valid = {name: files for name, files in listed.items() if files is not None}
    owned = frozenset().union(*valid.values())
    entries = {p.name for p in out.iterdir()} - {STAGING_DIR, *MARKERS}
    if not valid and entries and not force:
        shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise ConfigError(
            f"--out {str(out)!r} is not empty ({shown}) and holds no checkpoint written by this project's "
            f"prune or export (no {' or '.join(MARKERS)}); nothing was written. Choose a new or empty "
            "directory, or pass --force to write the checkpoint's own files there (files with other names are kept)"
        )
    return OutputDir(out, True, owned, frozenset(entries - owned), frozenset(valid))


def write_checkpoint(model, tokenizer, out: Path, manifest: dict, *, command: str, force: bool) -> list[str]:
    """Write a checkpoint and the command's marker to ``out``; return the file names written.

    A new directory appears in one rename. Into an existing one, each file is replaced by one
    rename, after a marker listing the old and new files, so a crash at any point leaves a
    directory the next run recognises; then the files an earlier run wrote and this one did not
    are removed, and so are other commands' markers. Files the project never wrote are never removed.
    """
    from .files import replace_files, staging_dir, write_atomic
    from .models import publish_dir, stage_checkpoint

    own = marker_name(command)

    def marker(files, *, complete: bool) -> bytes:
        record = {**manifest, "files": sorted(files), "complete": complete}
        return json.dumps(record, indent=1, sort_keys=True).encode("utf-8")

    plan = inspect_output(out, force=force)  # again: the directory may have changed meanwhile
    if not plan.exists:
        out.parent.mkdir(parents=True, exist_ok=True)
        with staging_dir(out) as staging:
            names = stage_checkpoint(model, tokenizer, staging)
            (staging / own).write_bytes(marker(names, complete=True))
            publish_dir(staging, out)
        return names
    with staging_dir(out, inside=True) as staging:
        names = stage_checkpoint(model, tokenizer, staging)
        clash = sorted(set(names) & plan.foreign)
        if clash and not force:
            raise ConfigError(
                f"--out {str(out)!r}: {', '.join(clash)} would replace files this project did not write "
                "there; nothing was written. Move them away, or pass --force to replace them"
            )
        write_atomic(out / own, marker(plan.owned | set(names), complete=False))
        replace_files(staging, out, names)
        for name in sorted(plan.owned - set(names)):
            old = out / name
            if old.is_file() or old.is_symlink():
                old.unlink()
        for name in sorted(plan.markers - {own}):
            (out / name).unlink(missing_ok=True)
        write_atomic(out / own, marker(names, complete=True))
    return names


def export_checkpoint(spec, out: Path, *, trust_remote_code: bool = False, force: bool = False,
                      progress: Callable[[str], None] | None = None) -> list[str]:
    """Write ``spec`` (the builtin, a .gguf file, a checkpoint dir, a hub id) to ``out`` as a standard
    Hugging Face checkpoint in float32: the weights the suite evaluates for that spec, ready for
    ``--illusion-model DIR`` and for plain ``from_pretrained``. ``out`` is checked before loading."""
    from transformers import AutoTokenizer

    from .models import load_model, local_dir

    out = Path(out)
    inspect_output(out, force=force)
    say = progress or (lambda _msg: None)
    loaded = load_model(spec, dtype=EXPORT_DTYPE, device="cpu", trust_remote_code=trust_remote_code, progress=say)
    # The tokenizer as the source has it: load_model may give it a pad token for batching.
    tokenizer = AutoTokenizer.from_pretrained(local_dir(spec), trust_remote_code=trust_remote_code)
    manifest = {"written_by": "python -m illusion export", "version": MARKER_VERSION, "base": spec.raw,
                "base_fingerprint": loaded.fingerprint, "dtype": EXPORT_DTYPE}
    names = write_checkpoint(loaded.model, tokenizer, out, manifest, command="export", force=force)
    say(f"wrote {out}")
    return names
