"""One model resident at a time: the reference is freed before the candidate is pruned or loaded,
in one process, on xdist workers and across a sweep's sessions.

Every model ``load_model`` returns is watched through a weak reference. No test calls the garbage
collector itself: a model that is still alive when the next one loads is a model the session (or a
closure, a cached property, an engine) still holds, which is exactly what must not happen.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import pytest

import illusion.models
import illusion.session
from tiny import WORDS, build_model_dir, item, write_items


@dataclass
class Loads:
    """What ``load_model`` loaded, in order, and which earlier models were still alive at each load."""

    models: list[tuple[str, weakref.ref]] = field(default_factory=list)
    alive_at_load: list[tuple[str, list[str]]] = field(default_factory=list)

    def alive(self) -> list[str]:
        return [name for name, ref in self.models if ref() is not None]


@pytest.fixture
def loads(monkeypatch) -> Loads:
    """Watch every load: the session's own and the one pruning makes (prune imports it at call time)."""
    seen = Loads()
    real = illusion.models.load_model

    def watched(spec, **options):
        seen.alive_at_load.append((spec.raw, seen.alive()))
        loaded = real(spec, **options)
        seen.models.append((spec.raw, weakref.ref(loaded.model)))
        return loaded

    monkeypatch.setattr(illusion.models, "load_model", watched)
    monkeypatch.setattr(illusion.session, "load_model", watched)
    return seen


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("residency")
    data = write_items(root / "qa", [item(f"q{i}", lang, "What is the name of the old river?", WORDS[i],
                                          WORDS[i + 1:i + 4]) for lang in ("en", "fr") for i in range(4)])
    return {"reference": build_model_dir(root / "ref", seed=3), "data": data}


def test_the_reference_is_freed_before_pruning_and_the_candidate_load(tiny_dir, world, loads):
    from illusion.session import IllusionSession, RunConfig

    said: list[str] = []
    config = RunConfig(model=str(tiny_dir), prune="magnitude:0.5", dataset=str(world["data"]), dtype="float32",
                       device="cpu")
    session = IllusionSession(config, progress=said.append)
    session.set_collected(session.items)
    verdicts = session.verdicts(session.items)
    assert len(verdicts) == 8
    # reference, the base model pruning loads, the pruned candidate: each loaded once, alone
    assert [alive for _spec, alive in loads.alive_at_load] == [[], [], []]
    assert [spec for spec, _ in loads.models][:2] == [str(tiny_dir)] * 2
    assert loads.models[0][1]() is None  # the reference's model object is gone, not just unused
    assert len(loads.alive()) == 1 and loads.models[-1][1]() is not None  # the candidate stays for recovery
    assert any(msg.startswith("freed the reference model") for msg in said), said
    session.release()
    assert loads.alive() == []
    assert session.verdicts(session.items) == verdicts  # nothing is lost: results stay, models go


def test_xdist_workers_probe_every_reference_block_first_and_load_each_model_once(tmp_path, tiny_dir, world, loads):
    """A worker that ends up doing every block (the other is not there yet) alternates no models."""
    from illusion.session import IllusionSession, RunConfig, WorkerShare

    config = RunConfig(model=str(tiny_dir), reference=str(world["reference"]), dataset=str(world["data"]),
                       dtype="float32", device="cpu", use_store=False)
    (tmp_path / "run").mkdir()
    said: list[str] = []
    session = IllusionSession(config, progress=said.append,
                              share=WorkerShare(run_dir=tmp_path / "run", workers=2, index=0))
    session.set_collected(session.items)
    session.verdicts(session.items)
    assert [spec for spec, _ in loads.models] == [str(world["reference"]), str(tiny_dir)]
    assert [alive for _spec, alive in loads.alive_at_load] == [[], []]
    probed = [m.split(" on the ")[1].split()[0] for m in said if m.startswith("probing ")]
    assert probed == ["reference", "reference", "candidate", "candidate"]  # both blocks, reference first


def test_a_sweep_holds_one_model_at_a_time_across_its_sessions(tiny_dir, world, loads):
    from illusion.session import RunConfig
    from illusion.sweep import SweepSettings, run_sweep

    settings = SweepSettings(base=RunConfig(model=str(tiny_dir), dataset=str(world["data"]), dtype="float32",
                                            device="cpu"), method="magnitude", sparsities=(0.3, 0.6))
    points = run_sweep(settings)
    assert [p.sparsity for p in points] == [0.0, 0.3, 0.6]
    # reference; then per sparsity the base model pruning loads and the pruned candidate
    assert len(loads.alive_at_load) == 5
    assert all(alive == [] for _spec, alive in loads.alive_at_load), loads.alive_at_load
    assert loads.alive() == []  # the last session is released too
