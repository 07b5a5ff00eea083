"""Run state for one pytest process: which items were collected, and their results on demand.

Models load lazily, the first time a result is needed. Without xdist, every collected item is
computed in one batched pass. xdist workers share the work through a directory of the run
(:class:`WorkerShare`), whatever pytest-xdist sends each of them: each step (probing, then the
recovery probes) is cut into the same blocks by every worker and claimed under file locks, so
every block is computed exactly once, and results reach the worker whose tests need them through
the results store. A candidate identical to the reference is probed once and used for both sides.

The second part is the pytest run around it: what an xdist worker takes for itself (its share of
the cores, its GPU, the run's shared directory), and how a broken run stops once with exit code 4.

One model is resident at a time (a 70B pair would otherwise need twice the memory): the
reference is probed first and freed before the candidate is pruned or loaded; recovery runs on
the candidate only. xdist workers probe every block on the reference before any on the candidate,
so each worker loads each model once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, NoReturn, Sequence

import pytest

from .data import Item, exemplar_for
from .errors import ModelError
from .models import LoadedModel, fingerprint, free_memory, load_model, parse_spec
from .paths import cache_root
from .probes import ProbeConfig, probe, recover, recovery_chunks
from .progress import ProgressDisplay
from .results import ItemResult
from .sources import load_exemplars, load_items
from .terminal import safe_text
from .verdict import ItemVerdict, RecoveryScope, needs_recovery

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunConfig:
    """The resolved ``--illusion-*`` options."""

    model: str = "smollm2-135m"
    reference: str | None = None  # None: the model before pruning
    prune: str | None = None
    dataset: str | None = None  # None: the shipped fixtures/qa
    langs: tuple[str, ...] | None = None
    limit_per_lang: int | None = None
    report_dir: str | None = None
    rank_tolerance: int = 0
    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None  # auto | balanced | sequential: accelerate's big-model inference
    max_memory: str | None = None  # e.g. 0=70GiB,cpu=200GiB; placement only, so in no cache key
    batch_size: int = 64
    seed: int = 0
    trust_remote_code: bool = False
    prompt_format: str = "auto"
    max_new_tokens: int = 24
    calibration_langs: tuple[str, ...] | None = None  # None: every shipped calibration language
    calibration_samples: int = 64
    calibration_seqlen: int = 256
    calibration_seed: int = 0  # the calibration windows only: --illusion-seed does not re-prune
    use_store: bool = True  # False with --illusion-no-cache
    snapshot_name: str | None = None  # None: a set per configuration (snapshots.set_name)
    alpha: float = 0.05
    max_illusion_rate: float | None = None
    recovery: RecoveryScope = "induced"  # which recognition-only items the recovery probes run on

    @property
    def probe_config(self) -> ProbeConfig:
        return ProbeConfig(prompt_format=self.prompt_format, max_new_tokens=self.max_new_tokens,  # type: ignore[arg-type]
                           batch_size=self.batch_size)

    @property
    def calibration(self):
        """The calibration settings of ``--illusion-prune`` (wanda/sparsegpt)."""
        from .prune import CalibrationConfig

        extra = {"langs": self.calibration_langs} if self.calibration_langs else {}
        return CalibrationConfig(samples=self.calibration_samples, seqlen=self.calibration_seqlen,
                                 seed=self.calibration_seed, **extra)

    @property
    def reference_spec(self) -> str:
        return self.reference or self.model

    @property
    def candidate_is_reference(self) -> bool:
        return self.prune is None and self.reference_spec == self.model

    def as_dict(self) -> dict:
        return {
            "model": self.model, "reference": self.reference_spec, "prune": self.prune,
            "dataset": self.dataset or "fixtures/qa", "langs": list(self.langs) if self.langs else None,
            "limit_per_lang": self.limit_per_lang, "device": self.device, "dtype": self.dtype,
            "device_map": self.device_map, "max_memory": self.max_memory,
            "batch_size": self.batch_size, "seed": self.seed, "prompt_format": self.prompt_format,
            "max_new_tokens": self.max_new_tokens, "rank_tolerance": self.rank_tolerance,
            "snapshot_name": self.snapshot_name, "alpha": self.alpha, "max_illusion_rate": self.max_illusion_rate,
            "recovery": self.recovery,
            "probe": self.probe_config.key(),
            "calibration": {"langs": list(self.calibration_langs) if self.calibration_langs else None,
                            "samples": self.calibration_samples, "seqlen": self.calibration_seqlen,
                            "seed": self.calibration_seed}
            if self.prune else None,
        }


@dataclass(frozen=True)
class WorkerShare:
    """An xdist worker's view of the run: the directory all workers of this run see (block locks,
    and the results exchange under --illusion-no-cache), and how many workers there are."""

    run_dir: Path
    workers: int
    index: int = 0  # this worker's number: it starts claiming at its own block


def work_blocks(items: Sequence[Item], *, workers: int) -> list[list[Item]]:
    """One block of work per worker: every ``workers``-th item, so each block holds the same mix
    of languages (and so of prompt lengths and, roughly, of recovery probes to run).

    Blocks are as large as they can be because batching is where the speed is: one decoding step
    streams every weight whether it serves 8 rows or 64 (measured on one thread: probing blocks
    of 8 items cost 2.7 times as much per item as blocks of 45).
    """
    return [list(items[start::workers]) for start in range(min(workers, len(items)))]


class IllusionSession:
    """Items, models and results for one process."""

    def __init__(self, config: RunConfig, *, progress: Progress | None = None, share: WorkerShare | None = None):
        self.config = config
        self.progress = progress or (lambda _msg: None)
        self.share = share  # on an xdist worker: claim blocks of work with the other workers
        self._items: list[Item] | None = None
        self._collected: dict[str, Item] = {}
        self._blocks: list[list[Item]] | None = None
        # candidate: final results (with recovery); _probed: the candidate's before recovery
        self._results: dict[str, dict[str, ItemResult]] = {"candidate": {}, "reference": {}}
        self._probed: dict[str, ItemResult] = {}
        self._models: dict[str, LoadedModel] = {}
        self._load_errors: dict[str, ModelError] = {}
        self._store = None
        self._keys: dict[tuple[str, bool], tuple[str, str]] = {}

    @property
    def items(self) -> list[Item]:
        """All items the options select (before pytest's own -k/deselection)."""
        if self._items is None:
            self._items = load_items(self.config.dataset, langs=self.config.langs,
                                     limit_per_lang=self.config.limit_per_lang, seed=self.config.seed,
                                     note=self.progress)
        return self._items

    def set_collected(self, items: Sequence[Item]) -> None:
        """Exactly the items this run needs: those its tests use after -k and deselection, and every
        item of a language whose gate test runs."""
        self._collected = {item.key: item for item in items}
        self._blocks = None

    def verdict(self, item: Item) -> ItemVerdict:
        """The paired result of one item, computing it (and its batch) on first need."""
        return self.verdicts([item])[0]

    def verdicts(self, items: Sequence[Item]) -> list[ItemVerdict]:
        """Paired results of items (one, or a language for its gate), computing the missing ones."""
        final = self._results["candidate"]
        missing = [it for it in items if it.key not in final]
        if missing and self.share is not None:
            self._share_work()
        if any(it.key not in final for it in missing):  # one process: everything collected in one pass
            pool = {it.key: it for it in [*self._collected.values(), *missing]}
            self._compute([it for it in pool.values() if it.key not in final])
        reference = final if self.config.candidate_is_reference else self._results["reference"]
        return [ItemVerdict(candidate=final[it.key], reference=reference[it.key]) for it in items]

    def _compute(self, items: list[Item], *, quiet_reads: bool = False) -> None:
        """Results of ``items`` on both sides, read from the store where present, else computed and
        stored. Two steps that xdist workers split separately: probing, then recovery."""
        self._probe(items, quiet_reads=quiet_reads)
        self._recover(items, quiet_reads=quiet_reads)

    def _share_work(self) -> None:
        """On an xdist worker, once: split the collected items with the other workers.

        Two steps, each cut the same way by every worker and claimed under file locks: probing
        (one block per worker), then the recovery probes of the recognition-only items, which are
        only known once every block is probed, and cost about as much again. Recovery goes in
        chunks that any worker takes when free, so the workers finish together.
        """
        if self._blocks is not None:
            return
        assert self.share is not None
        workers = self.share.workers
        ordered = [it for it in self.items if it.key in self._collected]
        listed = {it.key for it in ordered}
        ordered += [it for it in self._collected.values() if it.key not in listed]
        self._blocks = work_blocks(ordered, workers=workers)
        if not self.config.candidate_is_reference:  # every reference block first: one model resident at a time
            self._run_locked("probe-reference", self._blocks, self._probe_reference, start=self.share.index)
        self._run_locked("probe", self._blocks, self._probe_candidate, start=self.share.index)
        final = self._results["candidate"]
        # The same list on every worker: it depends on probe results only, never on what a worker
        # happened to read from the store already.
        pending = [it for it in ordered if self._in_scope(final.get(it.key) or self._probed[it.key])]
        chunks, start = [], 0
        for b, block in enumerate(work_blocks(pending, workers=workers)):
            start = len(chunks) if b == self.share.index else start
            chunks += recovery_chunks(block, self.config.batch_size)
        self._run_locked("recover", chunks, self._recover, start=start)

    def _run_locked(self, step: str, blocks: list[list[Item]], work: Callable[..., None], *, start: int) -> None:
        """Run ``work`` on every block of ``step`` not claimed by another worker (from ``start``,
        this worker's own), then wait for the claimed ones and read them. ``work`` reads what is
        stored and computes the rest, so running it on a finished block just reads."""
        from filelock import FileLock, Timeout

        assert self.share is not None
        order = [(start + i) % len(blocks) for i in range(len(blocks))]
        for wait in (False, True):
            for index in order:
                lock = FileLock(str(self.share.run_dir / f"{step}-{index}.lock"))
                try:
                    lock.acquire(timeout=-1 if wait else 0)
                except Timeout:
                    continue  # another worker is on it
                try:
                    work(blocks[index], quiet_reads=True)
                finally:
                    lock.release()

    def _probe(self, items: list[Item], *, quiet_reads: bool = False) -> None:
        """The reference's results, then the candidate's before recovery (in this order: the
        reference is freed before the candidate loads)."""
        self._probe_reference(items, quiet_reads=quiet_reads)
        self._probe_candidate(items, quiet_reads=quiet_reads)

    def _probe_reference(self, items: list[Item], *, quiet_reads: bool = False) -> None:
        """The reference's results (none to compute when the candidate is the reference)."""
        if not self.config.candidate_is_reference:
            self._fill(self._results["reference"], "reference", items, quiet_reads=quiet_reads)

    def _probe_candidate(self, items: list[Item], *, quiet_reads: bool = False) -> None:
        """The candidate's results before recovery: final at once for items that are not
        recognition-only, and for those the recovery scope leaves out (marked not probed, kept in
        memory only: see ``_read_final``); the others wait in ``_probed`` for ``_recover``."""
        final = self._results["candidate"]
        pending = [it for it in items if it.key not in final]
        self._read_final(pending, quiet=True)
        todo = [it for it in pending if it.key not in final]
        self._read(self._probed, "candidate", [it for it in todo if it.key not in self._probed], recovered=False,
                   quiet=True)
        missing = [it for it in todo if it.key not in self._probed]
        if len(missing) < len(pending) and not quiet_reads:  # an unprobed illusion is final from its probe results
            self.progress(f"candidate: {len(pending) - len(missing)} results from the store, {len(missing)} to compute")
        self._fill(self._probed, "candidate", missing, quiet_reads=quiet_reads)
        self._keep(final, {it.key: self._probed[it.key] for it in todo
                           if not self._probed[it.key].recognition_only}, todo)
        final.update({it.key: replace(self._probed[it.key], recovered_by=None) for it in todo
                      if it.key not in final and not self._in_scope(self._probed[it.key])})

    def _in_scope(self, candidate: ItemResult) -> bool:
        """Whether the recovery probes run on this candidate result (``--illusion-recovery``); the
        reference's result of the item must be known (``_probe`` fills it first)."""
        reference = candidate if self.config.candidate_is_reference else self._results["reference"][candidate.key]
        return needs_recovery(self.config.recovery, ItemVerdict(candidate=candidate, reference=reference))

    def _read_final(self, items: list[Item], *, quiet: bool) -> None:
        """The candidate's stored final results of ``items``, as this run's recovery scope reports them.

        The final store key does not include the scope; instead it only ever holds results that
        are final under every scope: items that are not recognition-only, and recognition-only
        items the probes ran on. An item the scope leaves out is never stored there (its probe
        results are, under the before-recovery key). So an ``all`` run serves an ``induced`` one,
        an ``induced`` run's probes serve part of a later ``all`` run, and nothing unprobed is
        ever read back as "not recovered". Probes found in the store for an item outside this
        run's scope are not reported (``recovered_by`` None), so the report does not depend on
        what earlier runs cached.
        """
        final = self._results["candidate"]
        before = set(final)
        self._read(final, "candidate", items, recovered=True, quiet=quiet)
        for key in set(final) - before:
            if final[key].recognition_only and not self._in_scope(final[key]):
                final[key] = replace(final[key], recovered_by=None)

    def _recover(self, items: list[Item], *, quiet_reads: bool = False) -> None:
        """Recovery probes on the candidate's recognition-only items in the recovery scope
        (``--illusion-recovery``; ``_probe`` already made the others final): demoted or erased."""
        final = self._results["candidate"]
        self._read_final([it for it in items if it.key not in final], quiet=quiet_reads)
        todo = [it for it in items if it.key not in final]
        if not todo:
            return
        exemplars = load_exemplars(sorted({it.lang for it in todo}))
        scope = {"induced": "pruning-induced recognition-only", "all": "recognition-only"}[self.config.recovery]
        self.progress(f"recovery probes on {len(todo)} {scope} items (--illusion-recovery {self.config.recovery})")
        found = recover(self._model("candidate"), [(it, exemplar_for(it, exemplars)) for it in todo],
                        self.config.probe_config, seed=self.config.seed, progress=self.progress)
        self._keep(final, {it.key: replace(self._probed[it.key], recovered_by=found.get(it.key, ()))
                           for it in todo}, todo)

    def _fill(self, target: dict[str, ItemResult], side: str, items: list[Item], *, quiet_reads: bool) -> None:
        """Probe results of ``items`` on ``side`` into ``target``: read, else probed and stored."""
        self._read(target, side, items, recovered=False, quiet=quiet_reads)
        missing = [it for it in items if it.key not in target]
        if not missing:
            return
        loaded = self._model(side)
        self.progress(f"probing {len(missing)} items on the {side} ({loaded.spec.raw})")
        results = probe(loaded, missing, self.config.probe_config,
                        progress=lambda msg: self.progress(f"{side}: {msg}"))
        self._keep(target, {r.key: r for r in results}, missing, side=side, recovered=False)

    def _read(self, target: dict[str, ItemResult], side: str, items: list[Item], *, recovered: bool,
              quiet: bool) -> None:
        """Stored results of ``items`` into ``target`` (nothing without a store)."""
        if not items or self.store is None:
            return
        found = self.store.get(*self._store_keys(side, recovered=recovered), items)
        target.update(found)
        if found and not quiet:
            what = side if side == "reference" or recovered else "candidate (before recovery)"
            self.progress(f"{what}: {len(found)} results from the store, {len(items) - len(found)} to compute")

    def _keep(self, target: dict[str, ItemResult], results: dict[str, ItemResult], items: list[Item], *,
              side: str = "candidate", recovered: bool = True) -> None:
        """Results into ``target`` and, for those of ``items`` they cover, into the store."""
        target.update(results)
        rows = [(it, results[it.key]) for it in items if it.key in results]
        if rows and self.store is not None:
            self.store.put(*self._store_keys(side, recovered=recovered), rows)

    @property
    def store(self):
        """The results store, opened on first use. With --illusion-no-cache: none, or on an xdist
        worker this run's own exchange, which starts empty (so everything is still recomputed)."""
        if self._store is None:
            from .store import ResultStore

            if self.config.use_store:
                self._store = ResultStore(cache_root() / "results.sqlite3", warn=self.progress)
            elif self.share is not None:
                self._store = ResultStore(self.share.run_dir / "results.sqlite3", warn=self.progress)
        return self._store

    def _store_keys(self, side: str, *, recovered: bool) -> tuple[str, str]:
        """(model fingerprint, config hash), both known without loading or pruning anything.

        Computed once per record kind: they hash checkpoint files. The candidate has two kinds:
        probed only (shared between xdist workers before recovery), and final, with recovery.
        """
        if (side, recovered) not in self._keys:
            self._keys[side, recovered] = self._compute_store_keys(side, recovered)
        return self._keys[side, recovered]

    def _compute_store_keys(self, side: str, recovered: bool) -> tuple[str, str]:
        from .probes import RECOVERY_VERSION
        from .store import config_hash

        if side == "candidate" and self.config.prune:
            model_key = self._pruned_key[1]
        else:
            model_key = fingerprint(parse_spec(self.config.model if side == "candidate" else self.config.reference_spec))
        device, dtype = self._device_dtype
        probe_key = {**self.config.probe_config.key(), "recovery_probes": RECOVERY_VERSION if recovered else False}
        # In float32 the batch shape changes no verdict, rank or output (tests/test_batch_invariance.py); in bf16/fp16 it does.
        batch_size = None if dtype == "float32" else self.config.batch_size
        # Logits from the model's own lm_head at its dtype: bf16/fp16 results of the old float32 head differ.
        head = None if dtype == "float32" else "model"
        return model_key, config_hash(probe_key, dtype=dtype, device=device, seed=self.config.seed,
                                      trust_remote_code=self.config.trust_remote_code, batch_size=batch_size,
                                      head=head)

    @cached_property
    def _device_dtype(self) -> tuple[str, str]:
        """The resolved device and dtype (``auto`` made concrete), without loading a model."""
        from .models import resolve_device, resolve_dtype

        device = resolve_device(self.config.device)
        return device, resolve_dtype(self.config.dtype, device)

    def _model(self, side: str) -> LoadedModel:
        """A side's model, loaded on first need after the other side's is freed (one model
        resident at a time, pruning included). A load that failed is not retried: every later test
        that asks gets the same error at once (the plugin stops the run on the first)."""
        if side in self._load_errors:
            raise self._load_errors[side]
        if side not in self._models:
            self.release()
            try:
                if side == "candidate" and self.config.prune:
                    spec = parse_spec(str(self._pruned_dir()))
                    free_memory()  # the pruning run's model, before the pruned one loads
                else:
                    spec = parse_spec(self.config.model if side == "candidate" else self.config.reference_spec)
                self._models[side] = load_model(spec, dtype=self.config.dtype, device=self.config.device,
                                                trust_remote_code=self.config.trust_remote_code, progress=self.progress,
                                                device_map=self.config.device_map, max_memory=self.config.max_memory)
            except ModelError as exc:
                self._load_errors[side] = exc
                raise
        return self._models[side]

    def release(self) -> None:
        """Free the resident model now (its weights, CUDA cache and offload folder), e.g. before
        another session loads its own. A later result that needs it loads it again."""
        if not self._models:
            return
        sides = ", ".join(self._models)
        self._models.clear()  # the session held the only references: no engine outlives a probe call
        free_memory()
        self.progress(f"freed the {sides} model (one model resident at a time)")

    @cached_property
    def snapshot_set(self) -> tuple[str, dict]:
        """The gold-rank baseline set (``--illusion-snapshot-name`` or one per configuration),
        and the configuration it is recorded with. Known without loading a model."""
        from .prune import parse_recipe
        from .snapshots import set_name

        cfg = self.config
        dtype = self._device_dtype[1]
        recipe = parse_recipe(cfg.prune).label if cfg.prune else None
        recorded_with = {"model": cfg.model, "prune": cfg.prune, "dataset": cfg.dataset or "fixtures/qa",
                         "dtype": dtype, "prompt_format": cfg.prompt_format}
        name = cfg.snapshot_name or set_name(model_label=parse_spec(cfg.model).label, recipe_label=recipe,
                                             dataset=cfg.dataset, dtype=dtype, prompt_format=cfg.prompt_format)
        return name, recorded_with

    @cached_property
    def _pruned_key(self):
        """(base spec, pruned fingerprint, recipe, calibration) for the in-process candidate."""
        from .models import resolve_device
        from .prune import PRUNE_DTYPE, parse_recipe, pruned_fingerprint

        base = parse_spec(self.config.model)
        recipe = parse_recipe(self.config.prune or "")
        calibration = self.config.calibration
        key = pruned_fingerprint(fingerprint(base), recipe, calibration, device=resolve_device(self.config.device),
                                 dtype=PRUNE_DTYPE, trust_remote_code=self.config.trust_remote_code)
        return base, key, recipe, calibration

    def _pruned_dir(self) -> Path:
        """The candidate checkpoint: ``--illusion-model`` pruned by the recipe, cached by fingerprint.

        A lock makes xdist workers prune once: the second waits, then loads the first's result.
        """
        from filelock import FileLock

        from .prune import prune_checkpoint

        base, key, recipe, calibration = self._pruned_key
        target = cache_root() / "pruned" / f"{base.label}-{recipe.label}-{key}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not (target / "config.json").is_file():
                prune_checkpoint(base, recipe, calibration, target, device=self.config.device,
                                 trust_remote_code=self.config.trust_remote_code, progress=self.progress)
        return target


# --- the pytest run: xdist workers ------------------------------------------------------------

RUN_DIR_INPUT = "illusion_run_dir"  # workerinput key: the directory the run's workers share


def worker_index(worker_id: str) -> int:
    """``gw3`` -> 3."""
    return int(worker_id.removeprefix("gw") or 0)


def share_cores(workers: int) -> None:
    """Each xdist worker gets its share of the cores, so N workers do not oversubscribe them."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, workers)))


def own_gpu(run: RunConfig, worker_id: str) -> RunConfig:
    """On a machine with several GPUs, xdist worker gwN takes GPU N (mod the count)."""
    if run.device not in ("auto", "cuda"):
        return run
    import torch

    from .models import worker_device

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = worker_device(run.device, worker_index(worker_id), gpus)
    return replace(run, device=device) if device != run.device else run


def open_session(run: RunConfig, *, workerinput: dict | None, say: Callable[[str, str | None], None]) -> IllusionSession:
    """This process's session. On an xdist worker (``workerinput``): its share of the cores, its GPU,
    and the run directory it shares work through; ``say`` then names the worker."""
    share, worker = None, None
    if workerinput is not None:
        worker = workerinput.get("workerid", "gw0")
        workers = int(workerinput.get("workercount", 1))
        share_cores(workers)
        run = own_gpu(run, worker)
        if workerinput.get(RUN_DIR_INPUT):
            share = WorkerShare(run_dir=Path(workerinput[RUN_DIR_INPUT]), workers=workers, index=worker_index(worker))
    return IllusionSession(run, progress=lambda message: say(message, worker), share=share)


def shares_files(node) -> bool:
    """Whether an xdist worker runs on this machine (popen) and so sees the run directory; a remote
    worker cannot: it computes every item it needs itself."""
    return bool(getattr(node.gateway.spec, "popen", False))


def new_run_dir() -> str:
    """The directory this run's workers share work through (block locks, and the results exchange
    under --illusion-no-cache); the controller removes it when the run ends."""
    import tempfile

    return tempfile.mkdtemp(prefix="illusion-run-")


def remove_run_dir(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


DISPLAY_KEY = pytest.StashKey[ProgressDisplay]()


def say(config: pytest.Config, message: str, worker: str | None = None) -> None:
    """Progress on slow steps, shown even while pytest captures output (and by which xdist worker):
    bars with rate and time left on a terminal, one line per worker; plain lines in a log."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        _display(config, worker).show(safe_text(message))
        return
    with capture.global_and_fixture_disabled():  # sys.stderr is the real one here
        _display(config, worker).show(safe_text(message))


def _display(config: pytest.Config, worker: str | None) -> ProgressDisplay:
    """This process's display, on the stderr pytest leaves uncaptured, made on first use."""
    if DISPLAY_KEY not in config.stash:
        config.stash[DISPLAY_KEY] = ProgressDisplay(sys.stderr, prefix=f"[illusion{' ' + worker if worker else ''}]",
                                                    position=worker_index(worker) if worker else 0)
    return config.stash[DISPLAY_KEY]


def close_display(config: pytest.Config) -> None:
    """End any bar still drawn (a run that stopped mid-step)."""
    display = config.stash.get(DISPLAY_KEY, None)
    if display is not None:
        display.close()


# --- the pytest run: a broken run stops once ----------------------------------------------------

BROKEN_PREFIX = "benchmark-illusion: "


def stop_run(session: pytest.Session, problem: Exception) -> NoReturn:
    """The run is broken (a model or dataset file that does not load): say why once and stop
    with exit code 4, so CI tells it from findings (1). Nothing is retried per test.

    On an xdist worker, ``shouldstop`` carries the message to the controller, which stops the
    other workers and prints it once (see ``broken_run_message``)."""
    message = safe_text(BROKEN_PREFIX + str(problem), lines=True)
    if hasattr(session.config, "workerinput"):
        session.shouldstop = message
    pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


def broken_run_message(node) -> str | None:
    """On the xdist controller: the message of a worker that stopped the run (``stop_run``), else None."""
    stop = getattr(node, "workeroutput", {}).get("shouldstop")
    return stop if isinstance(stop, str) and stop.startswith(BROKEN_PREFIX) else None
