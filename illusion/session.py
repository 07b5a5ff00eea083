"""Run state for one pytest process: which items were collected, and their results on demand.

Models load lazily, the first time a result is needed, and only for the items this process
runs: the whole collection without xdist, one scope (a language block) at a time on an xdist
worker. A candidate identical to the reference is probed once and used for both sides.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

from .data import Item, exemplar_for, load_exemplars, load_items
from .models import LoadedModel, cache_root, fingerprint, load_model, parse_spec
from .probe import ItemResult, ProbeConfig, probe, recover
from .verdict import ItemVerdict

Progress = Callable[[str], None]
SCOPES_PER_LANG = 4  # xdist scopes per language: enough blocks to balance two to eight workers


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
    batch_size: int = 64
    seed: int = 0
    trust_remote_code: bool = False
    prompt_format: str = "auto"
    max_new_tokens: int = 24
    calibration_langs: tuple[str, ...] | None = None  # None: every shipped calibration language
    calibration_samples: int = 64
    calibration_seqlen: int = 256
    use_store: bool = True  # False with --illusion-no-cache
    snapshot_name: str | None = None  # None: a set per configuration (snapshots.set_name)
    alpha: float = 0.05
    max_illusion_rate: float | None = None

    @property
    def probe_config(self) -> ProbeConfig:
        return ProbeConfig(prompt_format=self.prompt_format, max_new_tokens=self.max_new_tokens,  # type: ignore[arg-type]
                           batch_size=self.batch_size)

    @property
    def calibration(self):
        """The calibration settings of ``--illusion-prune`` (wanda/sparsegpt)."""
        from .prune import CalibrationConfig

        extra = {"langs": self.calibration_langs} if self.calibration_langs else {}
        return CalibrationConfig(samples=self.calibration_samples, seqlen=self.calibration_seqlen, seed=self.seed,
                                 **extra)

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
            "batch_size": self.batch_size, "seed": self.seed, "prompt_format": self.prompt_format,
            "max_new_tokens": self.max_new_tokens, "rank_tolerance": self.rank_tolerance,
            "snapshot_name": self.snapshot_name, "alpha": self.alpha, "max_illusion_rate": self.max_illusion_rate,
            "probe": self.probe_config.key(),
            "calibration": {"langs": list(self.calibration_langs) if self.calibration_langs else None,
                            "samples": self.calibration_samples, "seqlen": self.calibration_seqlen}
            if self.prune else None,
        }


def scope_of(lang: str, item_id: str, *, whole_language: bool = False) -> str:
    """The xdist scope of an item: its language plus a stable block number, or the whole
    language when its gate test runs (the gate needs every item of the language)."""
    return lang if whole_language else f"{lang}/{zlib.crc32(item_id.encode()) % SCOPES_PER_LANG}"


class IllusionSession:
    """Items, models and results for one process."""

    def __init__(self, config: RunConfig, *, progress: Progress | None = None, scoped: bool = False):
        self.config = config
        self.progress = progress or (lambda _msg: None)
        self.scoped = scoped  # on an xdist worker: compute one scope at a time
        self._items: list[Item] | None = None
        self._collected: dict[str, Item] = {}
        self._gated: set[str] = set()
        self._results: dict[str, dict[str, ItemResult]] = {"candidate": {}, "reference": {}}
        self._models: dict[str, LoadedModel] = {}
        self._store = None
        self._keys: dict[str, tuple[str, str]] = {}

    @property
    def items(self) -> list[Item]:
        """All items the options select (before pytest's own -k/deselection)."""
        if self._items is None:
            self._items = load_items(self.config.dataset, langs=self.config.langs,
                                     limit_per_lang=self.config.limit_per_lang, seed=self.config.seed,
                                     note=self.progress)
        return self._items

    def set_collected(self, items: Sequence[Item], gated_langs: Sequence[str] = ()) -> None:
        """Exactly the items this run will test (after -k, deselection), and the languages whose
        gate test runs (their items form one xdist scope)."""
        self._collected = {item.key: item for item in items}
        self._gated = set(gated_langs)

    def scope(self, item: Item) -> str:
        return scope_of(item.lang, item.id, whole_language=item.lang in self._gated)

    def verdict(self, item: Item) -> ItemVerdict:
        """The paired result of one item, computing its batch on first need."""
        if item.key not in self._results["candidate"]:
            self._compute(self._pending_for(item))
        candidate = self._results["candidate"][item.key]
        reference = self._results["reference"][item.key]
        return ItemVerdict(candidate=candidate, reference=reference)

    def verdicts(self, items: Sequence[Item]) -> list[ItemVerdict]:
        """Paired results of many items (a language gate), computing the missing ones in one go."""
        missing = [it for it in items if it.key not in self._results["candidate"]]
        if missing:
            self._compute(missing)
        return [self.verdict(it) for it in items]

    def _pending_for(self, item: Item) -> list[Item]:
        pool = list(self._collected.values()) or [item]
        if item.key not in self._collected:
            pool.append(item)
        if self.scoped:
            scope = self.scope(item)
            pool = [it for it in pool if self.scope(it) == scope]
        return [it for it in pool if it.key not in self._results["candidate"]]

    def _compute(self, items: list[Item]) -> None:
        """Results for ``items`` on both sides: from the store where present, else probed and stored."""
        sides = ("candidate",) if self.config.candidate_is_reference else ("reference", "candidate")
        for side in sides:
            model_key, config_key = self._store_keys(side)
            cached = self.store.get(model_key, config_key, items) if self.store else {}
            self._results[side].update(cached)
            missing = [it for it in items if it.key not in cached]
            if cached:
                self.progress(f"{side}: {len(cached)} results from the store, {len(missing)} to compute")
            if not missing:
                continue
            loaded = self._model(side)
            self.progress(f"probing {len(missing)} items on the {side} ({loaded.spec.raw})")
            results = probe(loaded, missing, self.config.probe_config,
                            progress=lambda msg, side=side: self.progress(f"{side}: {msg}"))
            self._results[side].update({r.key: r for r in results})
            if side == "candidate":
                self._recover(missing)
            if self.store:
                self.store.put(model_key, config_key, [(it, self._results[side][it.key]) for it in missing])
        if self.config.candidate_is_reference:
            self._results["reference"].update({k: self._results["candidate"][k] for k in (i.key for i in items)})

    def _recover(self, items: list[Item]) -> None:
        """Recovery probes on the candidate's recognition-only items: demoted or erased."""
        results = self._results["candidate"]
        todo = [it for it in items if results[it.key].recognition_only]
        if not todo:
            return
        exemplars = load_exemplars(sorted({it.lang for it in todo}))
        self.progress(f"recovery probes on {len(todo)} recognition-only items")
        found = recover(self._model("candidate"), [(it, exemplar_for(it, exemplars)) for it in todo],
                        self.config.probe_config, seed=self.config.seed, progress=self.progress)
        for key, probes in found.items():
            results[key] = replace(results[key], recovered_by=probes)

    @property
    def store(self):
        """The results store, opened on first use; None with --illusion-no-cache."""
        if self._store is None and self.config.use_store:
            from .store import ResultStore

            self._store = ResultStore(cache_root() / "results.sqlite3", warn=self.progress)
        return self._store

    def _store_keys(self, side: str) -> tuple[str, str]:
        """(model fingerprint, config hash), both known without loading or pruning anything.

        Computed once per side: they hash checkpoint files, and xdist workers ask per block.
        """
        if side not in self._keys:
            self._keys[side] = self._compute_store_keys(side)
        return self._keys[side]

    def _compute_store_keys(self, side: str) -> tuple[str, str]:
        from .probe import RECOVERY_VERSION
        from .store import config_hash

        if side == "candidate" and self.config.prune:
            model_key = self._pruned_key[1]
        else:
            model_key = fingerprint(parse_spec(self.config.model if side == "candidate" else self.config.reference_spec))
        device, dtype = self._device_dtype
        # Recovery probes run on the candidate only, so its results are a different record.
        probe_key = {**self.config.probe_config.key(),
                     "recovery_probes": RECOVERY_VERSION if side == "candidate" else False}
        return model_key, config_hash(probe_key, dtype=dtype, device=device, seed=self.config.seed)

    @cached_property
    def _device_dtype(self) -> tuple[str, str]:
        """The resolved device and dtype (``auto`` made concrete), without loading a model."""
        from .models import resolve_device, resolve_dtype

        device = resolve_device(self.config.device)
        return device, resolve_dtype(self.config.dtype, device)

    def _model(self, side: str) -> LoadedModel:
        if side not in self._models:
            if side == "candidate" and self.config.prune:
                spec = parse_spec(str(self._pruned_dir()))
            else:
                spec = parse_spec(self.config.model if side == "candidate" else self.config.reference_spec)
            self._models[side] = load_model(spec, dtype=self.config.dtype, device=self.config.device,
                                            trust_remote_code=self.config.trust_remote_code, progress=self.progress)
        return self._models[side]

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
        from .prune import parse_recipe, pruned_fingerprint

        base = parse_spec(self.config.model)
        recipe = parse_recipe(self.config.prune or "")
        calibration = self.config.calibration
        return base, pruned_fingerprint(fingerprint(base), recipe, calibration), recipe, calibration

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
