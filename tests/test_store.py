"""The SQLite results store: keys, corruption, concurrent writers, and a rerun that loads no model."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace

import pytest

from illusion.data import Item
from illusion.probe import ItemResult
from illusion.store import ResultStore, config_hash

ITEM = Item(id="q1", lang="en", question="Capital of France?", answer="Paris", aliases=(),
            distractors=("Lyon", "Nice", "Brest"), type="place")
RESULT = ItemResult(lang="en", id="q1", prompt="p", options=("Paris", "Lyon", "Nice", "Brest"),
                    mc_scores=(-1.0, -2.0, -3.0, -4.0), generation="Paris.", gold_rank=1, first_position_rank=3,
                    matched="Paris", recovered_by=("beam",))
KEY = {"prompt_format": "auto", "max_new_tokens": 24, "normalization": 1}


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


def _writer(path: str, worker: int) -> None:
    store = ResultStore(path)
    for n in range(40):
        item = replace(ITEM, id=f"w{worker}-{n}")
        store.put("m", "c", [(item, replace(RESULT, id=item.id))])


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "r.sqlite3")
    ResultStore(path).close()
    workers = [multiprocessing.get_context("spawn").Process(target=_writer, args=(path, w)) for w in range(3)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    assert ResultStore(path).info()["results"] == 120


def _write_forever(path: str) -> None:
    store = ResultStore(path)
    n = 0
    while True:
        batch = [(replace(ITEM, id=f"k{n}-{i}"), replace(RESULT, id=f"k{n}-{i}")) for i in range(50)]
        store.put("m", "c", batch)
        n += 1


def test_a_writer_killed_mid_write_leaves_a_consistent_store(tmp_path):
    import os
    import signal
    import time

    path = str(tmp_path / "r.sqlite3")
    ResultStore(path).close()
    proc = multiprocessing.get_context("spawn").Process(target=_write_forever, args=(path,))
    proc.start()
    deadline = time.time() + 60
    while ResultStore(path).info()["results"] < 200 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup, possibly inside a transaction
    proc.join()
    store = ResultStore(path)
    count = store.info()["results"]
    assert count >= 200 and count % 50 == 0  # whole batches only: each put is one transaction
    item = replace(ITEM, id="k0-7")
    assert store.get("m", "c", [item]) == {"en-k0-7": replace(RESULT, id="k0-7")}


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


def test_config_hash_keys_remote_code_and_batch_size_when_given():
    """A remote-code model's results are not a built-in class's; a batch size changes bf16/fp16
    numbers. Without them (defaults) the hash is what it was, so existing stores stay warm."""
    base = config_hash(KEY, dtype="float32", device="cpu", seed=0)
    assert config_hash(KEY, dtype="float32", device="cpu", seed=0, trust_remote_code=False, batch_size=None) == base
    assert config_hash(KEY, dtype="float32", device="cpu", seed=0, trust_remote_code=True) != base
    half = [config_hash(KEY, dtype="bfloat16", device="cpu", seed=0, batch_size=size) for size in (8, 16, None)]
    assert len(set(half)) == 3
