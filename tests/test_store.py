"""The SQLite results store: keys, corruption, foreign and read-only files, failing writes, a
writer that waits for another's lock, and a writer killed inside its transaction."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from illusion import store as store_module
from illusion.data import Item
from illusion.results import ItemResult
from illusion.store import ResultStore, StoreBusyError, config_hash, inspect_store

ITEM = Item(id="q1", lang="en", question="Capital of France?", answer="Paris", aliases=(),
            distractors=("Lyon", "Nice", "Brest"), type="place")
RESULT = ItemResult(lang="en", id="q1", prompt="p", options=("Paris", "Lyon", "Nice", "Brest"),
                    mc_scores=(-1.0, -2.0, -3.0, -4.0), generation="Paris.", gold_rank=1, first_position_rank=3,
                    matched="Paris", recovered_by=("beam",))
KEY = {"prompt_format": "auto", "max_new_tokens": 24, "normalization": 1}
OTHER = replace(ITEM, id="q2")
OTHER_RESULT = replace(RESULT, id="q2")


def _batch(prefix: str, size: int) -> list[tuple[Item, ItemResult]]:
    return [(replace(ITEM, id=f"{prefix}-{i}"), replace(RESULT, id=f"{prefix}-{i}")) for i in range(size)]


def _asides(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.corrupt-*"))


def test_round_trip_and_misses_on_every_key_part(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite3")
    config = config_hash(KEY, dtype="float32", device="cpu", seed=0)
    store.put("model-a", config, [(ITEM, RESULT)])
    assert store.get("model-a", config, [ITEM]) == {"en-q1": RESULT}
    assert store.get("model-b", config, [ITEM]) == {}  # another model's weights
    assert store.get("model-a", config, [replace(ITEM, answer="Paris, France")]) == {}  # item content changed
    assert store.get("model-a", config_hash(KEY, dtype="bfloat16", device="cpu", seed=0), [ITEM]) == {}
    assert store.get("model-a", config_hash({**KEY, "max_new_tokens": 32}, dtype="float32", device="cpu",
                                            seed=0), [ITEM]) == {}
    assert store.get("model-a", config, [replace(ITEM, origin="elsewhere.jsonl:9")]) == {"en-q1": RESULT}
    assert store.info()["results"] == 1


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\x01" * 300])
def test_corrupted_store_is_moved_aside_and_rebuilt(tmp_path, content):
    path = tmp_path / "r.sqlite3"
    path.write_bytes(content)
    warnings: list[str] = []
    store = ResultStore(path, warn=warnings.append)
    assert store.get("m", "c", [ITEM]) == {}
    store.put("m", "c", [(ITEM, RESULT)])
    assert store.get("m", "c", [ITEM]) == {"en-q1": RESULT}
    assert warnings and "unreadable" in warnings[0] and "moved it to" in warnings[0]
    assert list(tmp_path.glob("r.sqlite3.corrupt-*"))


def test_unreadable_entries_are_recomputed_and_said_once(tmp_path):
    path = tmp_path / "r.sqlite3"
    rows = _batch("q", 3)
    ResultStore(path).put("m", "c", rows)
    with sqlite3.connect(path) as db:  # damage no page can show: the payloads themselves
        db.execute("UPDATE results SET payload = '{\"not\": \"a result\"}'")
    db.close()
    warnings: list[str] = []
    store = ResultStore(path, warn=warnings.append)
    assert store.get("m", "c", [item for item, _ in rows]) == {}
    assert len(warnings) == 1 and "unreadable entry" in warnings[0], warnings


def filled_store(path: Path, size: int = 600) -> list[Item]:
    """A real store with ``size`` results (a few hundred KB), closed, so its WAL is checkpointed."""
    rows = _batch("q", size)
    store = ResultStore(path)
    store.put("m", "c", rows)
    store.close()
    assert not Path(f"{path}-wal").exists()
    return [item for item, _ in rows]


def damage(path: Path, where: str) -> None:
    """Overwrite pages with junk, keeping the SQLite header on page 1 intact: three in the middle
    of the file (found when the store opens or on a later lookup, depending on what they held), or
    the root page of the results table, which ``count(*)`` over the primary-key index never reads,
    so only a lookup finds it."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself, none in the WAL
    db.close()
    if where == "middle":
        offset, pages = path.stat().st_size // 2 // 4096 * 4096, 3
    else:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name='results'").fetchone()
        db.close()
        offset, pages = (root - 1) * 4096, 1
    assert offset >= 4096
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xab" * pages * 4096)


@pytest.mark.parametrize("where", ["middle", "results table"])
@pytest.mark.parametrize("first", ["get", "put", "info", "clear"])
def test_a_store_with_damaged_pages_is_moved_aside_once_and_never_raises(tmp_path, where, first):
    path = tmp_path / "r.sqlite3"
    items = filled_store(path)
    damage(path, where)
    assert inspect_store(path)["problem"]  # what `cache info` reports
    warnings: list[str] = []
    store = ResultStore(path, warn=warnings.append)
    operations = {"get": lambda: store.get("m", "c", items), "info": store.info, "clear": store.clear,
                  "put": lambda: store.put("m", "c", [(OTHER, OTHER_RESULT)])}
    operations[first]()
    for name in ("get", "put", "get", "info"):  # every later call on the same store works
        operations[name]()
    assert store.get("m", "c", [OTHER]) == {"en-q2": OTHER_RESULT}
    assert len(warnings) == 1 and "moved it to" in warnings[0] and "recomputed" in warnings[0], warnings
    [aside] = [p for p in _asides(tmp_path) if not p.name.endswith(("-wal", "-shm"))]
    assert inspect_store(aside)["problem"]  # the damaged file is kept for inspection, not repaired
    store.close()
    later: list[str] = []
    rerun = ResultStore(path, warn=later.append)  # the next run finds a healthy store and says nothing
    assert rerun.get("m", "c", [OTHER]) == {"en-q2": OTHER_RESULT} and not later
    assert inspect_store(path)["problem"] is None


FOREIGN = {
    "another program's tables": ["CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
                                 "INSERT INTO users (name) VALUES ('ada'), ('grace')"],
    "a meta table without our marker": ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                                        "INSERT INTO meta VALUES ('owner', 'someone else')"],
    "our tables and another": [*store_module._SCHEMA.strip().split(";")[:2],
                               "INSERT INTO meta VALUES ('schema', '1')",
                               "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
                               "INSERT INTO users (name) VALUES ('ada')"],
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_a_foreign_database_is_moved_aside_byte_for_byte(tmp_path, kind):
    path = tmp_path / "r.sqlite3"
    with sqlite3.connect(path) as db:
        for statement in FOREIGN[kind]:
            db.execute(statement)
    db.close()
    original = path.read_bytes()
    warnings: list[str] = []
    store = ResultStore(path, warn=warnings.append)
    store.put("m", "c", [(ITEM, RESULT)])
    assert store.get("m", "c", [ITEM]) == {"en-q1": RESULT}
    assert len(warnings) == 1 and "not a results store" in warnings[0] and "moved it to" in warnings[0], warnings
    [aside] = _asides(tmp_path)  # no -wal or -shm: nothing was ever opened for writing on it
    assert aside.read_bytes() == original
    assert inspect_store(path)["problem"] is None


@contextmanager
def frozen(path: Path):
    """Make ``path`` (a file or a directory) unwritable even for root: ``chattr +i``, since the
    tests run as root where chmod stops nothing. Skips where the file system or the missing
    CAP_LINUX_IMMUTABLE does not allow it (the chmod variant covers non-root runs)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"chattr +i is not allowed here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextmanager
def read_only(path: Path, how: str):
    """The store file or its directory made unwritable: ``chattr +i`` (root-proof) or chmod
    (which binds only a non-root user, so that variant runs only as one)."""
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("chmod does not stop root from writing")
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
    else:
        with frozen(path):
            yield


@pytest.mark.parametrize("how", ["chattr", "chmod"])
@pytest.mark.parametrize("target", ["file", "directory"])
def test_a_read_only_store_serves_its_results_and_is_never_written(tmp_path, target, how):
    directory = tmp_path / "cache"
    directory.mkdir()
    path = directory / "r.sqlite3"
    store = ResultStore(path)
    store.put("m", "c", [(ITEM, RESULT)])
    store.close()
    before = path.read_bytes()
    warnings: list[str] = []
    with read_only(path if target == "file" else directory, how):
        store = ResultStore(path, warn=warnings.append)
        assert store.get("m", "c", [ITEM]) == {"en-q1": RESULT}
        store.put("m", "c", [(OTHER, OTHER_RESULT)])  # computed results are kept by the run, not stored
        store.put("m", "c", [(OTHER, OTHER_RESULT)])
        assert store.get("m", "c", [OTHER]) == {}
        assert store.info()["results"] == 1 and store.info()["mode"] == "read-only"
        with pytest.raises(store_module.StoreError, match="read-only"):
            store.clear()
        store.close()
        assert inspect_store(path)["problem"] is None and inspect_store(path)["mode"] == "read-only"
    assert len(warnings) == 1 and "read-only" in warnings[0] and "ILLUSION_CACHE" in warnings[0], warnings
    assert path.read_bytes() == before and not _asides(directory)


@pytest.mark.parametrize("how", ["chattr", "chmod"])
def test_a_store_that_cannot_be_created_runs_without_one(tmp_path, how):
    directory = tmp_path / "cache"
    directory.mkdir()
    warnings: list[str] = []
    with read_only(directory, how):
        store = ResultStore(directory / "r.sqlite3", warn=warnings.append)
        store.put("m", "c", [(ITEM, RESULT)])
        assert store.get("m", "c", [ITEM]) == {} and store.info()["mode"] == "off"
        store.close()
    assert len(warnings) == 1 and "cannot create" in warnings[0], warnings
    assert not list(directory.iterdir())


def _write_past_a_file_size_limit(path: str, out: str) -> None:
    """Fill the store until the process's file-size limit makes SQLite's writes fail (EFBIG:
    SQLITE_IOERR_WRITE), as a full disk or a failing one would mid-run."""
    import resource

    warnings: list[str] = []
    store = ResultStore(path, warn=warnings.append)
    store.put("m", "c", [(ITEM, RESULT)])
    used = sum(Path(path + suffix).stat().st_size for suffix in ("", "-wal") if Path(path + suffix).exists())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (used + 8192, resource.RLIM_INFINITY))
    for prefix in ("big", "bigger"):
        store.put("m", "c", _batch(prefix, 2000))
    found = store.get("m", "c", [ITEM, replace(ITEM, id="big-0")])
    Path(out).write_text(json.dumps({"warnings": warnings, "found": sorted(found)}))


def test_writes_that_fail_mid_run_warn_once_and_the_run_goes_on(tmp_path):
    path, out = tmp_path / "r.sqlite3", tmp_path / "out.json"
    proc = multiprocessing.get_context("spawn").Process(target=_write_past_a_file_size_limit,
                                                        args=(str(path), str(out)))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0  # no traceback from put
    said = json.loads(out.read_text())
    assert said["found"] == ["en-q1"]  # what was stored is still read; the failed batch is absent, not half there
    [warning] = said["warnings"]
    assert "could not write" in warning and "no longer stored" in warning
    assert not _asides(tmp_path) and inspect_store(path)["problem"] is None


def test_a_lock_held_past_the_wait_stops_with_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_SECONDS", 0.2)
    path = tmp_path / "r.sqlite3"
    store = ResultStore(path)
    store.put("m", "c", [(ITEM, RESULT)])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert store.get("m", "c", [ITEM]) == {"en-q1": RESULT}  # readers never wait for a writer (WAL)
        with pytest.raises(StoreBusyError, match="stayed locked"):
            store.put("m", "c", [(OTHER, OTHER_RESULT)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.put("m", "c", [(OTHER, OTHER_RESULT)])  # busy is not a failure: the store is still written
    assert store.get("m", "c", [OTHER]) == {"en-q2": OTHER_RESULT} and not _asides(tmp_path)


def _on_statement(store: ResultStore, prefix: str, action) -> None:
    """Run ``action`` when the store's connection starts a statement beginning with ``prefix``:
    the only way to stop a process at a chosen point inside ``put``."""
    store._db.set_trace_callback(lambda sql: action() if sql.startswith(prefix) else None)


def _hold_the_write_lock(path: str, holding, release) -> None:
    """Put a batch, and stop just before its COMMIT (rows written, write lock held) until released."""
    store = ResultStore(path)

    def pause() -> None:
        holding.set()
        release.wait(30)

    _on_statement(store, "COMMIT", pause)
    store.put("m", "c", _batch("held", 20))


def _write_when_locked(path: str, attempting) -> None:
    store = ResultStore(path)
    _on_statement(store, "BEGIN IMMEDIATE", attempting.set)
    store.put("m", "c", _batch("waited", 20))


def test_a_writer_waits_for_another_process_holding_the_write_lock(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    ResultStore(path).close()
    context = multiprocessing.get_context("spawn")
    holding, release, attempting = context.Event(), context.Event(), context.Event()
    holder = context.Process(target=_hold_the_write_lock, args=(path, holding, release))
    writer = context.Process(target=_write_when_locked, args=(path, attempting))
    holder.start()
    try:
        assert holding.wait(30)
        writer.start()
        assert attempting.wait(30)  # the writer has started its transaction while the lock is held...
        assert writer.is_alive()  # ...so it cannot have finished: it waits (or it failed, below)
        release.set()
        for proc in (holder, writer):
            proc.join(timeout=30)
            assert proc.exitcode == 0
    finally:
        release.set()
    store = ResultStore(path)
    assert store.info()["results"] == 40
    assert [*store.get("m", "c", [replace(ITEM, id="held-0"), replace(ITEM, id="waited-19")])] == \
        ["en-held-0", "en-waited-19"]


def _killed_inside_a_put(path: str, inside) -> None:
    """Three committed batches, then a fourth stopped after 29 of its 50 rows, never committed."""
    store = ResultStore(path)
    for n in range(3):
        store.put("m", "c", _batch(f"done{n}", 50))
    rows: list[None] = []

    def count() -> None:
        rows.append(None)
        if len(rows) == 30:
            inside.set()
            time.sleep(60)  # killed here

    _on_statement(store, "INSERT", count)
    store.put("m", "c", _batch("open", 50))


def test_a_writer_killed_inside_its_transaction_leaves_only_committed_batches(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    ResultStore(path).close()
    context = multiprocessing.get_context("spawn")
    inside = context.Event()
    proc = context.Process(target=_killed_inside_a_put, args=(path, inside))
    proc.start()
    try:
        assert inside.wait(30)
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # proof: it holds the write lock
            sqlite3.connect(path, timeout=0, isolation_level=None).execute("BEGIN IMMEDIATE")
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no rollback
        proc.join()
    warnings: list[str] = []
    store = ResultStore(path, warn=warnings.append)
    assert store.info()["results"] == 150 and not warnings and not _asides(tmp_path)
    assert store.get("m", "c", [replace(ITEM, id=f"open-{i}") for i in range(50)]) == {}
    assert store.get("m", "c", [replace(ITEM, id="done2-49")]) == {"en-done2-49": replace(RESULT, id="done2-49")}
    store.put("m", "c", [(OTHER, OTHER_RESULT)])  # and it is writable afterwards
    assert inspect_store(Path(path))["problem"] is None


def _open_at_once(path: str, barrier, worker: int) -> None:
    barrier.wait()
    warnings: list[str] = []
    store = ResultStore(path, warn=warnings.append)
    item = replace(ITEM, id=f"o{worker}")
    store.put("m", "c", [(item, replace(RESULT, id=item.id))])
    raise SystemExit(3 if warnings else 0)  # a warning here means a healthy store was moved aside


def test_workers_creating_the_store_at_once_all_use_it(tmp_path):
    """xdist workers open a fresh store at the same moment: a busy lock is not corruption."""
    context = multiprocessing.get_context("spawn")
    for attempt in range(4):
        path = str(tmp_path / f"r{attempt}.sqlite3")
        barrier = context.Barrier(4)
        workers = [context.Process(target=_open_at_once, args=(path, barrier, w)) for w in range(4)]
        for proc in workers:
            proc.start()
        for proc in workers:
            proc.join(timeout=120)
        assert [proc.exitcode for proc in workers] == [0, 0, 0, 0]
        assert ResultStore(path).info()["results"] == 4 and not list(tmp_path.glob("*.corrupt-*"))


def _open_damaged_at_once(path: str, barrier, worker: int, out: str) -> None:
    barrier.wait()
    warnings: list[str] = []
    store = ResultStore(path, warn=warnings.append)
    store.get("m", "c", [replace(ITEM, id=f"q-{i}") for i in range(600)])
    item = replace(ITEM, id=f"o{worker}")
    store.put("m", "c", [(item, replace(RESULT, id=item.id))])
    Path(out).write_text(json.dumps(warnings))


def test_workers_finding_a_damaged_store_at_once_move_it_aside_once(tmp_path):
    """Each worker sees the damage; one moves the file aside, the others use the new store."""
    path = tmp_path / "r.sqlite3"
    filled_store(path)
    damage(path, "results table")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    workers = [context.Process(target=_open_damaged_at_once, args=(str(path), barrier, w, str(tmp_path / f"w{w}")))
               for w in range(3)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in workers] == [0, 0, 0]
    said = [json.loads((tmp_path / f"w{w}").read_text()) for w in range(3)]
    assert sum("moved it to" in w for ws in said for w in ws) == 1, said
    assert len([p for p in _asides(tmp_path) if not p.name.endswith(("-wal", "-shm"))]) == 1
    assert ResultStore(path).info()["results"] == 3


def test_config_hash_keys_remote_code_and_batch_size_when_given():
    """A remote-code model's results are not a built-in class's; a batch size changes bf16/fp16
    numbers. Without them (defaults) the hash is what it was, so existing stores stay warm."""
    base = config_hash(KEY, dtype="float32", device="cpu", seed=0)
    assert config_hash(KEY, dtype="float32", device="cpu", seed=0, trust_remote_code=False, batch_size=None) == base
    assert config_hash(KEY, dtype="float32", device="cpu", seed=0, trust_remote_code=True) != base
    half = [config_hash(KEY, dtype="bfloat16", device="cpu", seed=0, batch_size=size) for size in (8, 16, None)]
    assert len(set(half)) == 3


def test_half_precision_results_of_the_old_float32_head_are_not_served():
    """Since the engine computes logits with the model's own lm_head, bf16/fp16 numbers differ from
    the old float32 head's: their store key says so; float32 keys stay as they were."""
    from illusion.session import IllusionSession, RunConfig

    def key(dtype: str) -> str:
        session = IllusionSession(RunConfig(dtype=dtype, device="cpu", use_store=False))
        return session._compute_store_keys("reference", False)[1]

    old_bf16 = config_hash({**RunConfig().probe_config.key(), "recovery_probes": False}, dtype="bfloat16",
                           device="cpu", seed=0, batch_size=64)
    assert key("bfloat16") != old_bf16
    assert key("float32") == config_hash({**RunConfig().probe_config.key(), "recovery_probes": False},
                                         dtype="float32", device="cpu", seed=0)
