"""SQLite results store: ItemResults keyed by (model fingerprint, item hash, probe-config hash).

The reference's results hardly ever change and the candidate's change only with its weights, so a
rerun reads instead of recomputing, and never needs the model in memory. The key always holds
the model's content fingerprint (a cache keyed by request alone returns one model's answers for
another), the item's content, and everything that changes numbers: prompt format, decoding,
normalisation, dtype, device type, seed, the library versions, remote code, and the batch size where
it changes numbers (bf16/fp16).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Sequence

from .data import Item
from .errors import IllusionError
from .probe import ItemResult

SCHEMA_VERSION = 1
BUSY_SECONDS = 60  # how long to wait for another process's lock before giving up
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL, item TEXT NOT NULL, config TEXT NOT NULL,
    payload TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, item, config)
);
"""


def config_hash(probe_key: dict, *, dtype: str, device: str, seed: int, trust_remote_code: bool = False,
                batch_size: int | None = None) -> str:
    """Hash of everything besides weights and item that decides a result.

    ``trust_remote_code``: the repository's own model class, not the built-in one. ``batch_size``:
    give it where the batch shape changes numbers (bf16/fp16), else None. Each enters the key only
    when set, so the hashes of the default configuration stay what they were.
    """
    import torch
    import transformers

    key = {**probe_key, "dtype": dtype, "device": device.split(":")[0], "seed": seed,
           "torch": torch.__version__, "transformers": transformers.__version__, "schema": SCHEMA_VERSION}
    if trust_remote_code:
        key["trust_remote_code"] = True
    if batch_size is not None:
        key["batch_size"] = batch_size
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class ResultStore:
    """One SQLite file shared by processes (WAL), each write one transaction."""

    def __init__(self, path: Path, *, warn=None):
        self.path = Path(path)
        self.warn = warn or (lambda _msg: None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        """Open or create; a corrupted or foreign file is moved aside and rebuilt, never trusted.

        A busy file is not a corrupted one: xdist workers creating the store at the same moment
        get SQLITE_BUSY from the switch to WAL, which ignores the busy timeout, so that is retried.
        """
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                if _busy(exc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if _busy(exc):
                    raise StoreBusyError(f"results store {self.path} stayed locked for {BUSY_SECONDS} s; another "
                                         "process holds it. Retry, or use --illusion-no-cache") from exc
                return self._rebuild(exc)

    def _rebuild(self, exc: sqlite3.DatabaseError) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        self.path.replace(aside)
        for suffix in ("-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.warn(f"results store {self.path} was unreadable ({exc}); moved it to {aside} and started a "
                  "new one (results will be recomputed)")
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {row[0]}, expected {SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM results").fetchone()  # fails fast on a damaged table
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def get(self, model: str, config: str, items: Sequence[Item]) -> dict[str, ItemResult]:
        """Stored results of ``items`` for one model and config, by item key."""
        found: dict[str, ItemResult] = {}
        for item in items:
            row = self._db.execute("SELECT payload FROM results WHERE model=? AND item=? AND config=?",
                                   (model, item.content_hash(), config)).fetchone()
            if row is None:
                continue
            try:
                found[item.key] = ItemResult(**_decode(json.loads(row[0])))
            except (ValueError, TypeError, KeyError):
                self.warn(f"results store {self.path}: unreadable entry for {item.key}; recomputing it")
        return found

    def put(self, model: str, config: str, pairs: Iterable[tuple[Item, ItemResult]]) -> None:
        """Store results in one transaction: all of them or none."""
        rows = [(model, item.content_hash(), config, json.dumps(asdict(result), ensure_ascii=False), time.time())
                for item, result in pairs]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)", rows)

    def info(self) -> dict:
        count, models = self._db.execute("SELECT count(*), count(DISTINCT model) FROM results").fetchone()
        return {"path": str(self.path), "results": count, "models": models,
                "bytes": self.path.stat().st_size if self.path.exists() else 0}

    def clear(self) -> int:
        with self._db:
            return self._db.execute("DELETE FROM results").rowcount

    def close(self) -> None:
        self._db.close()


class StoreBusyError(IllusionError):
    """The store stayed locked by another process."""


def _busy(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED (another connection holds a lock), as opposed to a bad file."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc) or "busy" in str(exc)


def _decode(data: dict) -> dict:
    """JSON lists back to the tuples ItemResult holds."""
    for name in ("options", "mc_scores", "hedged_with", "recovered_by"):
        data[name] = tuple(data[name])
    return data
