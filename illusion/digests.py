"""sha256 of checkpoint files, memoised in ``$ILLUSION_CACHE/digests.json``.

Model fingerprints hash file contents, and a 70B checkpoint is hundreds of GB: each file is hashed
once and its digest reused while the file is unchanged. ``cache info`` shows what the memo holds.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .files import read_json_or_empty, write_atomic
from .paths import cache_root

DIGEST_MEMO = "digests.json"


def file_digest(path: Path) -> str:
    """sha256 of a file's content, memoised in ``$ILLUSION_CACHE/digests.json`` so a big checkpoint
    is hashed once. An entry holds only while the file's (path, size, mtime_ns, inode) are unchanged:
    a file replaced by another of the same size and mtime (a copy, an unpacked archive) is hashed
    again. The memo is updated under a lock, so concurrent processes keep each other's entries."""
    stat = path.stat()
    memo_path = cache_root() / DIGEST_MEMO
    key = str(path.resolve())
    identity = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
    entry = read_json_or_empty(memo_path).get(key)
    if isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and \
            all(entry.get(field) == value for field, value in identity.items()):
        return entry["sha256"]
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    entry = {**identity, "sha256": digest.hexdigest(), "seconds": round(time.perf_counter() - started, 3)}
    _memoise(memo_path, key, entry)
    return entry["sha256"]


def _memoise(memo_path: Path, key: str, entry: dict) -> None:
    """Add one entry to the memo: read, change and write it under its lock (another process may
    have added entries since it was read). A memo that cannot be written is skipped: it is only a memo."""
    from filelock import FileLock

    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(memo_path) + ".lock"):
            memo = {k: v for k, v in read_json_or_empty(memo_path).items() if isinstance(v, dict)}  # drop the old format
            memo[key] = entry
            write_atomic(memo_path, json.dumps(memo, indent=0, sort_keys=True).encode())
    except OSError:
        pass


@dataclass(frozen=True)
class DigestMemo:
    """What ``cache info`` shows of the digest memo: files memoised, their bytes, the slowest first hash."""

    path: Path
    files: int
    bytes: int
    slowest: tuple[str, int, float] | None  # (file, bytes, seconds of its first hash)


def digest_memo() -> DigestMemo:
    """The digest memo under the current cache, read without writing anything."""
    path = cache_root() / DIGEST_MEMO
    entries = {k: v for k, v in read_json_or_empty(path).items() if isinstance(v, dict)}
    sizes = [v.get("size") if isinstance(v.get("size"), int) else 0 for v in entries.values()]
    timed = [(k, v["size"], float(v["seconds"])) for k, v in entries.items()
             if isinstance(v.get("size"), int) and isinstance(v.get("seconds"), (int, float))]
    return DigestMemo(path, len(entries), sum(sizes), max(timed, key=lambda row: row[2], default=None))
