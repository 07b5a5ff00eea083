"""SQLite results store: ItemResults keyed by (model fingerprint, item hash, probe-config hash).

The reference's results hardly ever change and the candidate's change only with its weights, so a
rerun reads instead of recomputing, and never needs the model in memory. The key always holds
the model's content fingerprint (a cache keyed by request alone returns one model's answers for
another), the item's content, and everything that changes numbers: prompt format, decoding,
normalisation, dtype, device type, seed, the library versions, remote code, and the batch size where
it changes numbers (bf16/fp16).

The store is a cache, so no fault in it may break a run: a damaged or foreign file is moved aside
(never written into) and replaced, an unwritable one is only read, and a write that fails mid-run
(disk full, I/O error) is said once and the run goes on without storing. Only a lock that another
process holds past the wait stops the run, with one message.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Sequence

from .data import Item
from .errors import IllusionError
from .results import ItemResult

SCHEMA_VERSION = 1
BUSY_SECONDS = 60  # how long to wait for another process's lock before giving up
TABLES = {"meta", "results"}  # a database with other tables is not ours, whatever else it holds
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL, item TEXT NOT NULL, config TEXT NOT NULL,
    payload TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, item, config)
);
"""


def config_hash(probe_key: dict, *, dtype: str, device: str, seed: int, trust_remote_code: bool = False,
                batch_size: int | None = None, head: str | None = None) -> str:
    """Hash of everything besides weights and item that decides a result.

    ``trust_remote_code``: the repository's own model class, not the built-in one. ``batch_size``:
    give it where the batch shape changes numbers (bf16/fp16), else None. ``head``: how logits are
    computed, where that changes numbers (bf16/fp16: the model's own lm_head at its dtype since the
    engine split, a float32 copy before). Each enters the key only when set, so the hashes of the
    default configuration stay what they were.
    """
    import torch
    import transformers

    key = {**probe_key, "dtype": dtype, "device": device.split(":")[0], "seed": seed,
           "torch": torch.__version__, "transformers": transformers.__version__, "schema": SCHEMA_VERSION}
    if trust_remote_code:
        key["trust_remote_code"] = True
    if head is not None:
        key["head"] = head
    if batch_size is not None:
        key["batch_size"] = batch_size
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class ResultStore:
    """One SQLite file shared by processes (WAL), each write one transaction.

    ``mode`` is "read-write", "read-only" (the file or its directory cannot be written: stored
    results are read, new ones are not stored) or "off" (no usable store: nothing is read or
    stored). ``warn`` hears each fault once.
    """

    def __init__(self, path: Path, *, warn=None):
        self.path = Path(path)
        self.warn = warn or (lambda _msg: None)
        self.mode = "off"
        self._db: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # the file opened: another process may move it aside
        self._said: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # an unwritable parent: _open says so and runs without a store
        self._open()

    def _open(self) -> None:
        """Open or create; a damaged or foreign file is moved aside and replaced, never trusted or
        written into; an unwritable one is opened read-only and never moved.

        A busy file is not a damaged one: xdist workers creating the store at the same moment get
        SQLITE_BUSY from the switch to WAL, which ignores the busy timeout, so that is retried.
        """
        deadline, moves = time.monotonic() + BUSY_SECONDS, 0
        while moves < 3:  # a new file found bad again means something else is wrong: give up below
            if not _writable(self.path):
                return self._open_read_only()
            found = _identity(self.path)
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as exc:
                kind = _kind(exc)
                if kind == "busy" and time.monotonic() < deadline:
                    time.sleep(0.05)
                elif kind == "busy":
                    raise self._busy_error(exc) from exc
                elif kind == "corrupt":
                    moves += 1
                    if not self._move_aside(f"is unreadable ({exc})", found):
                        return
                elif kind == "read-only":
                    return self._open_read_only()
                else:
                    return self._off("open", f"results store {self.path} cannot be opened ({exc}); running without "
                                     "it: results are computed, not stored")
            except _NotOurs as exc:
                moves += 1
                if not self._move_aside(f"is not a results store ({exc})", found, foreign=True):
                    return
            else:
                self.mode, self._file = "read-write", _identity(self.path)
                return
        self._off("open", f"results store {self.path} keeps failing to open; running without it")

    def _connect(self) -> sqlite3.Connection:
        """A read-write connection on our own store, created if the file is new or empty.

        Whether an existing file is ours is read through a read-only connection first: nothing
        (not even the switch to WAL, nor a checkpoint on close) is written into another program's
        database.
        """
        if self.path.exists() and self.path.stat().st_size:
            probe = _read_only(self.path)
            try:
                _ours(probe)
            finally:
                probe.close()
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            if not _ours(db):
                db.execute("BEGIN IMMEDIATE")  # one transaction: another process sees no tables or all
                try:
                    if not _ours(db):
                        for statement in _SCHEMA.split(";")[:2]:
                            db.execute(statement)
                        db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                    db.execute("COMMIT")
                except BaseException:
                    _rollback(db)
                    raise
            db.execute("SELECT count(*) FROM results").fetchone()  # fails fast on a damaged index
        except BaseException:
            db.close()
            raise
        return db

    def _open_read_only(self) -> None:
        """Serve the stored results of a store this process cannot write; never rename it."""
        fix = "make it and its directory writable, or set ILLUSION_CACHE to a writable directory"
        if not self.path.exists() or not self.path.stat().st_size:
            return self._off("open", f"cannot create results store {self.path} (its directory is not writable); "
                             f"running without a store: results are computed, not stored. To keep them, {fix}")
        try:
            db = _read_only(self.path)
            try:
                ours = _ours(db) and db.execute("SELECT count(*) FROM results").fetchone()
            except BaseException:
                db.close()
                raise
        except (sqlite3.DatabaseError, _NotOurs) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and _kind(exc) == "busy":
                raise self._busy_error(exc) from exc
            return self._off("open", f"results store {self.path} is read-only and cannot be used ({exc}); "
                             f"running without it: results are computed, not stored. Delete it, or {fix}")
        if ours is False:
            db.close()
            return self._off("open", f"results store {self.path} is read-only and empty; running without it. To "
                             f"store results, {fix}")
        self._db, self.mode, self._file = db, "read-only", _identity(self.path)
        self._say("read-only", f"results store {self.path} is read-only: stored results are read, new ones are "
                  f"not stored. To store them, {fix}")

    def _move_aside(self, what: str, found: tuple[int, int] | None, *, foreign: bool = False) -> bool:
        """Rename the file with its -wal, -shm or -journal to ``<name>.corrupt-<time>``, and say so.
        Under a lock, and only while the file is still the one found bad: when several processes
        find the damage at once, one moves it and the others use the new store. False when it
        cannot be moved (the store is then off)."""
        from filelock import FileLock, Timeout

        try:
            with FileLock(f"{self.path}.lock", timeout=BUSY_SECONDS):
                if _identity(self.path) != found:
                    self._say("replaced", f"results store {self.path} {what}; another process has moved it "
                              "aside already: using the new one")
                    return True
                aside = _aside_name(self.path)
                self.path.replace(aside)
                for suffix in ("-wal", "-shm", "-journal"):  # a journal left here would be replayed into the new file
                    if Path(f"{self.path}{suffix}").exists():
                        Path(f"{self.path}{suffix}").replace(f"{aside}{suffix}")
        except Timeout as exc:
            raise self._busy_error(exc) from exc
        except OSError as exc:
            self._off("move", f"results store {self.path} {what} and cannot be moved aside ({exc}); running "
                      "without a store: results are computed, not stored. Move or delete the file to start a new one")
            return False
        subject = f"{self.path}" if foreign else f"results store {self.path}"
        kept = ", untouched, and started a new results store" if foreign else \
            " and started a new one (its results will be recomputed)"
        self.warn(f"{subject} {what}: moved it to {aside}{kept}")
        return True

    def _current(self) -> bool:
        """Whether a store is open. A file replaced under this process (moved aside by another
        process that found it damaged, or deleted by the user) is reopened, so that every
        process reads and writes the same store."""
        if self._db is not None and _identity(self.path) != self._file:
            self.close()
            self._open()
        return self._db is not None

    def _failed(self, exc: sqlite3.DatabaseError, doing: str) -> None:
        """A database error in get, put, info or clear: never raised, except a lock held too long.
        Damage: the file is moved aside and a new store started. A failed write (disk full, I/O
        error, the file turned read-only): said once, the store is then only read. A failed read:
        said once, the store is then off."""
        kind = _kind(exc)
        if kind == "busy":
            raise self._busy_error(exc) from exc
        if kind == "corrupt":
            return self._replace(f"is unreadable ({exc})")
        if doing == "write" and self.mode == "read-write":
            self.mode = "read-only"
            return self._say("write", f"results store {self.path}: could not write ({exc}); results are still "
                             "computed but no longer stored in this run. Free disk space or fix the file's "
                             "permissions, or run with --illusion-no-cache")
        self.close()
        self._off("read", f"results store {self.path}: could not read ({exc}); running without it: results are "
                  "computed, not stored")

    def _replace(self, what: str) -> None:
        """Move a damaged store aside and open a new one; a read-only one is only left alone."""
        found, writable = self._file, self.mode == "read-write"
        self.close()
        if not writable:
            return self._off("damaged", f"results store {self.path} {what} and is read-only; running without "
                             "it: results are computed, not stored. Delete it, or make it writable")
        if self._move_aside(what, found):
            self._open()

    def _off(self, key: str, message: str) -> None:
        self.close()
        self.mode = "off"
        self._say(key, message)

    def _say(self, key: str, message: str) -> None:
        """Each kind of fault once per process: a run would otherwise repeat it for every item."""
        if key not in self._said:
            self._said.add(key)
            self.warn(message)

    def _busy_error(self, exc: Exception) -> StoreBusyError:
        return StoreBusyError(f"results store {self.path} stayed locked for {BUSY_SECONDS} s ({exc}); another "
                              "process holds it. Retry, or use --illusion-no-cache")

    def get(self, model: str, config: str, items: Sequence[Item]) -> dict[str, ItemResult]:
        """Stored results of ``items`` for one model and config, by item key (none from a store
        found damaged on the way: nothing in it is trusted)."""
        found: dict[str, ItemResult] = {}
        if not items or not self._current():
            return found
        try:
            for item in items:
                row = self._db.execute("SELECT payload FROM results WHERE model=? AND item=? AND config=?",
                                       (model, item.content_hash(), config)).fetchone()
                if row is None:
                    continue
                try:
                    found[item.key] = ItemResult(**_decode(json.loads(row[0])))
                except (ValueError, TypeError, KeyError):
                    self._say("entry", f"results store {self.path}: unreadable entry for {item.key} (said once, "
                              "for any others too); recomputing it")
        except sqlite3.DatabaseError as exc:
            self._failed(exc, "read")
            return {}
        return found

    def put(self, model: str, config: str, pairs: Iterable[tuple[Item, ItemResult]]) -> None:
        """Store results in one transaction: all of them or none. Never raises for a store fault
        (see ``_failed``): the results are the run's either way."""
        rows = [(model, item.content_hash(), config, json.dumps(asdict(result), ensure_ascii=False), time.time())
                for item, result in pairs]
        for _attempt in range(2):  # a second time into the new store when the old one was found damaged
            if not rows or not self._current() or self.mode != "read-write":
                return
            try:
                return self._write(rows)
            except sqlite3.DatabaseError as exc:
                self._failed(exc, "write")

    def _write(self, rows: list[tuple]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def info(self) -> dict:
        """Counts and size; ``mode`` says whether results are read and stored. Cheap: no integrity
        check (``inspect_store`` does one)."""
        count = models = 0
        if self._current():
            try:
                count, models = self._db.execute("SELECT count(*), count(DISTINCT model) FROM results").fetchone()
            except sqlite3.DatabaseError as exc:
                self._failed(exc, "read")
        return {"path": str(self.path), "results": count, "models": models,
                "bytes": self.path.stat().st_size if self.path.exists() else 0, "mode": self.mode}

    def clear(self) -> int:
        """Delete every result. A damaged store is moved aside instead (0 deleted): deleting rows
        from it would keep the damage."""
        if self.mode == "off" and not self.path.exists():
            return 0
        if not self._current() or self.mode != "read-write":
            raise StoreError(f"results store {self.path} is {self.mode}: cannot clear it. Make it and its "
                             "directory writable, or delete the file")
        try:
            problem = _integrity(self._db, "quick_check")
            if problem is None:
                return self._db.execute("DELETE FROM results").rowcount
            self._replace(f"is damaged ({problem})")
            return 0
        except sqlite3.DatabaseError as exc:
            if _kind(exc) != "corrupt":
                self._failed(exc, "read")  # raises for busy
                raise StoreError(f"results store {self.path}: could not clear it ({exc}); delete the file") from exc
            self._replace(f"is unreadable ({exc})")
            return 0

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def inspect_store(path: Path) -> dict:
    """What ``cache info`` shows, read without writing or moving anything: counts, ``mode``, and
    ``problem`` (None, or what is wrong: damaged, not a results store, unreadable) with ``fix``."""
    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    info = {"path": str(path), "results": 0, "models": 0, "bytes": size, "problem": None, "fix": None,
            "mode": ("read-write" if _writable(path) else "read-only") if size else "absent"}
    if not size:
        return info
    fix = ("run `python -m illusion cache clear` (moves it aside, kept as results.sqlite3.corrupt-<time>, and "
           "starts a new store) or delete the file")
    try:
        db = _read_only(path)
        try:
            if _ours(db):
                info["problem"] = _integrity(db, "integrity_check")
                if info["problem"] is None:
                    info["results"], info["models"] = db.execute(
                        "SELECT count(*), count(DISTINCT model) FROM results").fetchone()
                else:
                    info["problem"] = f"is damaged (integrity check: {info['problem']})"
        finally:
            db.close()
    except _NotOurs as exc:
        info["problem"] = f"is not a results store ({exc}), perhaps another program's database"
        fix = ("the next run, or `python -m illusion cache clear`, moves it aside untouched (as "
               "results.sqlite3.corrupt-<time>) and starts a new store; or move it elsewhere yourself")
    except sqlite3.DatabaseError as exc:
        if _kind(exc) == "busy":
            raise StoreBusyError(f"results store {path} stayed locked for {BUSY_SECONDS} s; retry") from exc
        info["problem"] = f"is damaged ({exc})" if _kind(exc) == "corrupt" else f"cannot be read ({exc})"
    if info["problem"]:
        info["fix"] = fix
    return info


class StoreError(IllusionError):
    """The results store cannot do what was asked; the message says why and how to fix it."""


class StoreBusyError(StoreError):
    """The store stayed locked by another process."""


class _NotOurs(Exception):
    """The file is a database, but not a results store of this schema version."""


def _ours(db: sqlite3.Connection) -> bool:
    """True for a results store of this schema version, False for an empty database (no tables
    yet); raises _NotOurs for anything else. SQLite's own tables (sqlite_stat1 after ANALYZE)
    do not count."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
              if not name.startswith("sqlite_")}
    if not tables:
        return False
    if tables != TABLES:
        raise _NotOurs(f"tables: {', '.join(sorted(tables))}")
    row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if row is None:
        raise _NotOurs("its meta table has no schema marker")
    if row[0] != str(SCHEMA_VERSION):
        raise _NotOurs(f"schema version {row[0]}, this version reads {SCHEMA_VERSION}")
    return True


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write: ``mode=ro``, or where SQLite cannot even create the WAL's
    -shm file next to it (an unwritable directory) ``immutable=1``, which reads the file as it is
    (any results it holds are valid for their keys)."""
    uri = path.resolve().as_uri()
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        db = sqlite3.connect(f"{uri}?{flags}", uri=True, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            db.close()
            if _kind(exc) != "read-only" or "immutable" in flags:
                raise
    raise AssertionError("unreachable")


def _integrity(db: sqlite3.Connection, pragma: str) -> str | None:
    """None when ``PRAGMA integrity_check`` (or ``quick_check``) finds nothing, else its first findings."""
    rows = [row[0] for row in db.execute(f"PRAGMA {pragma}(3)").fetchall()]
    if rows == ["ok"]:
        return None
    return "; ".join(line.strip() for row in rows for line in row.splitlines() if not line.startswith("***"))


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.DatabaseError:
            pass  # SQLite rolls back by itself when the failure already ended the transaction


def _writable(path: Path) -> bool:
    """Whether this process may create or write the store and its -wal/-shm (os.access: root
    passes chmod but not an immutable file or a read-only file system)."""
    directory = path.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _aside_name(path: Path) -> Path:
    """``<name>.corrupt-<time>``, with a counter when that is taken (two moves in one second)."""
    stamp = int(time.time())
    aside, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while aside.exists() or Path(f"{aside}-wal").exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    return aside


def _kind(exc: Exception) -> str:
    """busy (another connection holds a lock), corrupt (a damaged file or not a database),
    read-only (cannot write or create it), or failed (disk full, I/O error, anything else)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return "busy"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return "corrupt"
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")) or \
            "readonly" in text or "unable to open" in text:
        return "read-only"
    return "failed"


def _decode(data: dict) -> dict:
    """JSON lists back to the tuples ItemResult holds."""
    for name in ("options", "mc_scores", "hedged_with", "recovered_by"):
        data[name] = None if data[name] is None else tuple(data[name])  # recovered_by None: not probed
    return data
