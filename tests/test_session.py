"""How xdist workers cut the collection into blocks of work (the pure part of sharing), and store keys."""

from __future__ import annotations

from collections import Counter

import pytest

from hypothesis import given
from hypothesis import strategies as st

from illusion.session import work_blocks


@given(langs=st.lists(st.sampled_from("abcdefghij"), max_size=500), workers=st.integers(1, 16))
def test_one_block_per_worker_with_the_same_language_mix(langs, workers):
    items = [(lang, i) for i, lang in enumerate(sorted(langs))]  # dataset order: language-major
    blocks = work_blocks(items, workers=workers)
    assert sorted(x for block in blocks for x in block) == items  # a partition: each item once
    assert len(blocks) == min(workers, len(items)) and all(blocks)
    sizes = [len(block) for block in blocks]
    assert max(sizes, default=0) - min(sizes, default=0) <= 1
    for lang in set(langs):  # every block gets its share of every language
        counts = [Counter(l for l, _ in block)[lang] for block in blocks]
        assert max(counts) - min(counts) <= 1


def test_a_worker_reads_what_another_computed_and_probes_nothing(tmp_path, tiny_dir, monkeypatch):
    """The first worker finds no one else and does every block; the second only reads them
    (through the run's exchange store, as under --illusion-no-cache)."""
    from illusion.session import IllusionSession, RunConfig, WorkerShare
    from tiny import WORDS, build_model_dir, item, write_items

    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))
    reference = build_model_dir(tmp_path / "ref", seed=3)
    data = write_items(tmp_path / "qa", [item(f"q{i}", lang, "What is the name of the old river?", WORDS[i],
                                              WORDS[i + 1:i + 4]) for lang in ("en", "fr") for i in range(10)])
    config = RunConfig(model=str(tiny_dir), reference=str(reference), dataset=str(data), dtype="float32",
                       device="cpu", use_store=False)
    (tmp_path / "run").mkdir()

    def worker(index: int):
        said: list[str] = []
        session = IllusionSession(config, progress=said.append,
                                  share=WorkerShare(run_dir=tmp_path / "run", workers=2, index=index))
        session.set_collected(session.items)
        return session, said

    first, first_said = worker(0)
    verdicts = first.verdicts(first.items)
    probed = [m for m in first_said if m.startswith("probing ")]
    # both blocks, every reference block first (one model resident at a time: each is loaded once)
    assert [m.split(" on the ")[1].split()[0] for m in probed] == ["reference"] * 2 + ["candidate"] * 2
    assert sum(int(m.split()[1]) for m in probed) == 40
    second, second_said = worker(1)
    assert second.verdicts(list(reversed(second.items))) == list(reversed(verdicts))
    assert not [m for m in second_said if m.startswith(("probing", "recovery", "loading"))], second_said


@given(n=st.integers(0, 500), batch=st.integers(1, 256))
def test_recovery_chunks_are_even_and_within_a_quarter_batch(n, batch):
    from illusion.probes import recovery_chunks

    chunks = recovery_chunks(list(range(n)), batch)
    assert [x for chunk in chunks for x in chunk] == list(range(n))
    sizes = [len(chunk) for chunk in chunks]
    assert all(1 <= size <= max(1, batch // 4) for size in sizes)
    assert max(sizes, default=0) - min(sizes, default=0) <= 1  # 33 at batch 64: 11/11/11, not 16/16/1
    assert len(chunks) == -(-n // max(1, batch // 4))  # no more chunks than the quarter-batch cap needs


@pytest.mark.parametrize("dtype, batch_keyed", [("float32", False), ("auto", False), ("bfloat16", True),
                                                ("float16", True)])
def test_store_keys_hold_remote_code_and_the_batch_size_where_it_changes_numbers(tmp_path, tiny_dir, monkeypatch,
                                                                                 dtype, batch_keyed):
    """auto is float32 on a CPU, where batch shape does not change verdicts, ranks or outputs."""
    from illusion.session import IllusionSession, RunConfig

    monkeypatch.setenv("ILLUSION_CACHE", str(tmp_path / "cache"))

    def keys(**options) -> list[tuple[str, str]]:
        session = IllusionSession(RunConfig(model=str(tiny_dir), dtype=dtype, device="cpu", **options))
        return [session._store_keys(side, recovered=recovered)
                for side, recovered in (("reference", False), ("candidate", False), ("candidate", True))]

    for plain, remote in zip(keys(), keys(trust_remote_code=True)):
        assert plain[0] == remote[0] and plain[1] != remote[1]  # same weights, another result
    for small, large in zip(keys(batch_size=8), keys(batch_size=16)):
        assert (small != large) == batch_keyed


def test_an_xdist_worker_session_shares_through_the_run_dir_and_names_its_worker(tmp_path):
    import torch

    from illusion.session import RUN_DIR_INPUT, RunConfig, WorkerShare, open_session

    said: list[tuple[str, str | None]] = []
    threads = torch.get_num_threads()
    try:
        session = open_session(RunConfig(device="cpu"), say=lambda message, worker: said.append((message, worker)),
                               workerinput={"workerid": "gw1", "workercount": 2, RUN_DIR_INPUT: str(tmp_path)})
    finally:
        torch.set_num_threads(threads)
    assert session.share == WorkerShare(run_dir=tmp_path, workers=2, index=1) and session.config.device == "cpu"
    session.progress("probing")
    assert said == [("probing", "gw1")]
    alone = open_session(RunConfig(), say=lambda message, worker: said.append((message, worker)), workerinput=None)
    alone.progress("loading")
    assert alone.share is None and said[-1] == ("loading", None)

