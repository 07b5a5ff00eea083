"""Files written so that a reader or a crash never sees half of one.

``write_atomic`` writes a temp file beside the target and renames it; ``staging_dir`` gives a
fresh directory to build a whole directory in. Both name their leftovers after their owner
(host and pid), so a later run removes what a killed process left and keeps what a live one is
still writing. Caches, snapshots, reports and checkpoints all write through here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

# Crash leftovers carry their owner (host and pid) in their name, so a later run can tell a dead
# process's leftovers (removed) from a live one's (kept). Another host's are never touched.
STAGING_DIR = ".illusion-staging"
_STAGED = re.compile(r"^(?P<name>.+)\.(?P<owner>[A-Za-z0-9-]+-\d+)\.[A-Za-z0-9_]+$")
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<owner>[A-Za-z0-9-]+-\d+)\.[A-Za-z0-9_]+$")


def _owner_tag(pid: int | None = None) -> str:
    """``<host>-<pid>``: who made a staging dir or temp file (the host without dots)."""
    host = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname()).strip("-") or "host"
    return f"{host}-{os.getpid() if pid is None else pid}"


def _owner_gone(owner: str) -> bool:
    """True only when the owner ran on this host and its process no longer exists."""
    pid = int(owner.rpartition("-")[2])
    if owner != _owner_tag(pid) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: alive, another user's
        return False
    return False


def clear_stale(folder: Path, pattern: re.Pattern, *, name: str | None = None) -> list[Path]:
    """Remove the entries of ``folder`` that ``pattern`` names (for ``name`` only, if given) and
    whose owner process is dead; return what was removed. Missing folders and races are fine."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        found = pattern.match(entry.name)
        if not found or (name is not None and found["name"] != name) or not _owner_gone(found["owner"]):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def owned_dir(root: Path, name: str) -> Path:
    """A fresh directory ``<root>/<name>.<host>-<pid>.<rand>`` for this process (the caller removes it);
    those that dead processes left under ``root`` are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    clear_stale(root, _STAGED)
    return Path(tempfile.mkdtemp(prefix=f"{name}.{_owner_tag()}.", dir=root))


@contextmanager
def staging_dir(target: Path, *, inside: bool = False) -> Iterator[Path]:
    """A fresh directory to build ``target`` in: ``<parent>/.illusion-staging/<name>.<host>-<pid>.<rand>``
    (or under ``target`` itself with ``inside``, to replace files of an existing directory on its
    own filesystem). Stale staging of dead processes there is cleared first; this one is removed
    on exit unless it was renamed away, and the staging folder too once it is empty."""
    root = (target if inside else target.parent) / STAGING_DIR
    for attempt in range(3):
        root.mkdir(parents=True, exist_ok=True)
        clear_stale(root, _STAGED)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.{_owner_tag()}.", dir=root))
            break
        except FileNotFoundError:  # another process removed the empty folder just now
            if attempt == 2:
                raise
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            root.rmdir()
        except OSError:
            pass  # not empty: another process is staging there


def replace_files(staging: Path, target: Path, names: Iterable[str]) -> None:
    """Move the files ``names`` from ``staging`` into the existing directory ``target``, each by one
    rename; files of ``target`` with other names are not touched."""
    for name in names:
        os.replace(staging / name, target / name)


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so readers never see a half-written file.

    The temp file is ``.<name>.tmp-<host>-<pid>.<rand>`` beside ``path``; the ones a killed process
    left for the same file are removed here (those of live processes are not).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(path.parent, _TEMP, name=path.name)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{_owner_tag()}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, 0o644)  # mkstemp makes 0600; reports and snapshots are meant to be read
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_json_or_empty(path: Path) -> dict:
    """A JSON object from a file that may be missing or corrupted (a memo, an optional config):
    either is treated as empty, never as an error."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
