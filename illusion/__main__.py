"""Command line: ``python -m illusion validate PATH``, ``prune ...``, ``export ...``, ``cache ...`` and ``sweep ...``.

Subcommands print one line per problem (``file:line: field ...; fix``) and exit 1 when any is
found, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import IllusionError
from .sources import check_dataset, default_dataset

if TYPE_CHECKING:
    from .digests import DigestMemo


def run_validate(args: argparse.Namespace) -> int:
    """Every problem the suite would raise or note for the dataset, in its words (``check_dataset``)."""
    problems, notes = check_dataset(args.path)
    for line in notes:
        print(f"note: {line}")
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {args.path}" if problems else f"ok: {args.path}")
    return 1 if problems else 0


def run_prune(args: argparse.Namespace) -> int:
    """Prune a model and write a standard Hugging Face checkpoint (safetensors + tokenizer)."""
    from .models import parse_spec
    from .prune import CalibrationConfig, parse_recipe, prune_checkpoint

    amount = args.sparsity if args.sparsity is not None else args.nm
    option = "--sparsity" if args.sparsity is not None else "--nm"
    recipe = parse_recipe(f"{args.method}:{amount}", option=option)
    langs = {"langs": tuple(x for x in args.calibration_langs.split(",") if x)} if args.calibration_langs else {}
    calibration = CalibrationConfig(samples=args.calibration_samples, seqlen=args.calibration_seqlen,
                                    seed=args.calibration_seed, **langs)
    stats = prune_checkpoint(parse_spec(args.model), recipe, calibration, args.out, device=args.device,
                             trust_remote_code=args.trust_remote_code, force=args.force,
                             progress=terminal_progress())
    print(f"{args.out}: {recipe.spec}, {stats.total:.2%} zeros over {len(stats.layers)} in-scope weight matrices"
          + (f" ({stats.experts} experts, {len(stats.uncalibrated)} pruned by magnitude for want of calibration tokens)"
             if stats.experts else ""))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write a model spec (e.g. the builtin) as a standard Hugging Face checkpoint directory."""
    from .checkpoint import EXPORT_DTYPE, export_checkpoint
    from .models import parse_spec

    names = export_checkpoint(parse_spec(args.model), args.out, trust_remote_code=args.trust_remote_code,
                              force=args.force, progress=terminal_progress())
    print(f"{args.out}: {args.model} as a Hugging Face checkpoint ({EXPORT_DTYPE}, {len(names)} files); "
          f"use it with --illusion-model {args.out}")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    """Inspect or clear the results store under $ILLUSION_CACHE. ``info`` only reads (with an
    integrity check) and fails on a damaged or foreign file; ``clear`` moves such a file aside."""
    from .digests import digest_memo
    from .paths import cache_root
    from .store import ResultStore, StoreError, inspect_store

    path = cache_root() / "results.sqlite3"
    if args.action == "clear":
        store = ResultStore(path, warn=lambda msg: print(msg, file=sys.stderr))
        print(f"removed {store.clear()} results from {store.path}")
        return 0
    info = inspect_store(path)
    if info["problem"]:
        raise StoreError(f"results store {path} {info['problem']}: {info['fix']}")
    mode = " (read-only: results are read, not stored)" if info["mode"] == "read-only" else ""
    print(f"{info['path']}: {info['results']} results for {info['models']} model(s), {info['bytes']} bytes{mode}")
    print(describe_digest_memo(digest_memo()))
    return 0


def describe_digest_memo(memo: DigestMemo) -> str:
    """One line: how many checkpoint files are fingerprinted already, and what the slowest first hash cost."""
    if not memo.files:
        return f"{memo.path}: no file digests memoised yet"
    line = f"{memo.path}: {memo.files} file digest(s) memoised over {memo.bytes} bytes"
    if memo.slowest:
        name, size, seconds = memo.slowest
        line += f"; slowest first hash: {name} ({size} bytes) in {seconds:.2f} s"
    return line


def terminal_progress():
    """Progress of a long command on stderr: bars on a terminal, plain lines in a log (``progress``)."""
    from .progress import ProgressDisplay
    from .terminal import safe_text

    display = ProgressDisplay(sys.stderr, prefix="")
    return lambda message: display.show(safe_text(message))


def run_sweep(args: argparse.Namespace) -> int:
    """Prune at each sparsity, probe, and write sweep.json / sweep.html / sweep.svg."""
    from .session import RunConfig
    from .sweep import SweepSettings, parse_sparsities, sweep

    def codes(text: str) -> tuple[str, ...] | None:
        return tuple(x.strip() for x in text.split(",") if x.strip()) or None

    base = RunConfig(model=args.model, dataset=args.dataset, langs=codes(args.langs),
                     limit_per_lang=args.limit_per_lang, device=args.device, dtype=args.dtype,
                     batch_size=args.batch_size, seed=args.seed, trust_remote_code=args.trust_remote_code,
                     calibration_langs=codes(args.calibration_langs), calibration_samples=args.calibration_samples,
                     calibration_seqlen=args.calibration_seqlen, calibration_seed=args.calibration_seed,
                     recovery=args.recovery)
    settings = SweepSettings(base=base, method=args.method, sparsities=parse_sparsities(args.sparsities, args.method))
    written = sweep(settings, args.out, progress=terminal_progress())
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def add_sweep_parser(commands) -> None:
    sweep = commands.add_parser("sweep", help="prune at several sparsities, probe, plot the illusion against sparsity")
    sweep.add_argument("--model", default="smollm2-135m",
                       help="smollm2-135m, a checkpoint dir, a .gguf file or org/name")
    sweep.add_argument("--method", default="wanda", choices=["magnitude", "wanda", "sparsegpt"])
    sweep.add_argument("--sparsities", default="0.3,0.4,0.5,0.6,0.7", help="comma-separated fractions in (0, 1)")
    sweep.add_argument("--out", required=True, type=Path, help="directory for sweep.json, sweep.html, sweep.svg")
    sweep.add_argument("--dataset", default=None, help="PATH|mkqa:PATH_OR_ID|hf:ID (default: the shipped fixtures)")
    sweep.add_argument("--langs", default="", help="e.g. en,fr (default: every language of the dataset)")
    sweep.add_argument("--limit-per-lang", type=int, default=None)
    sweep.add_argument("--calibration-langs", default="", help="e.g. fr,de (default: all shipped languages)")
    sweep.add_argument("--calibration-samples", type=int, default=64)
    sweep.add_argument("--calibration-seqlen", type=int, default=256)
    sweep.add_argument("--calibration-seed", type=int, default=0, help="seed of the calibration windows")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the item subset and the sampling probes")
    sweep.add_argument("--device", default="auto")
    sweep.add_argument("--dtype", default="auto")
    sweep.add_argument("--batch-size", type=int, default=16)
    sweep.add_argument("--trust-remote-code", action="store_true")
    sweep.add_argument("--recovery", default="induced", choices=["induced", "all", "off"],
                       help="recognition-only items the recovery probes run on: induced (pruning-induced), all, or off")
    sweep.set_defaults(run=run_sweep)


def add_output_arguments(command) -> None:
    """``--out`` and ``--force``, the same for every command that writes a checkpoint (prune, export)."""
    command.add_argument("--out", required=True, type=Path,
                         help="directory to write the checkpoint to: new, empty, or written by prune or export before")
    command.add_argument("--force", action="store_true",
                         help="write into a non-empty --out this project did not write (only the checkpoint's own "
                              "files are replaced; other files are kept)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m illusion", description="benchmark-illusion tools")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="check a dataset as the suite reads it")
    check.add_argument("path", nargs="?", default=str(default_dataset()),
                       help="what --illusion-dataset takes: a directory of <lang>.jsonl files, a .jsonl/.csv/.parquet "
                            "file, mkqa:PATH_OR_ID or hf:ID[:SPLIT] (default: the shipped fixtures)")
    check.set_defaults(run=run_validate)
    prune = commands.add_parser("prune", help="prune a model and write a Hugging Face checkpoint")
    prune.add_argument("--model", required=True, help="smollm2-135m, a checkpoint dir, a .gguf file or org/name")
    prune.add_argument("--method", required=True, choices=["magnitude", "wanda", "sparsegpt"])
    amount = prune.add_mutually_exclusive_group(required=True)
    amount.add_argument("--sparsity", help="unstructured fraction of zeros per row, e.g. 0.5")
    amount.add_argument("--nm", help="semi-structured N:M, e.g. 2:4 (N zeros in every M inputs)")
    add_output_arguments(prune)
    prune.add_argument("--calibration-langs", default="", help="e.g. fr,de (default: all shipped languages)")
    prune.add_argument("--calibration-samples", type=int, default=64)
    prune.add_argument("--calibration-seqlen", type=int, default=256)
    prune.add_argument("--calibration-seed", "--seed", dest="calibration_seed", type=int, default=0,
                       help="seed of the calibration windows")
    prune.add_argument("--device", default="auto")
    prune.add_argument("--trust-remote-code", action="store_true")
    prune.set_defaults(run=run_prune)
    export = commands.add_parser("export", help="write a model (e.g. the builtin) as a Hugging Face checkpoint")
    export.add_argument("model", help="smollm2-135m, a checkpoint dir, a .gguf file or org/name")
    add_output_arguments(export)
    export.add_argument("--trust-remote-code", action="store_true")
    export.set_defaults(run=run_export)
    cache = commands.add_parser("cache", help="inspect or clear the results store")
    cache.add_argument("action", choices=["info", "clear"])
    cache.set_defaults(run=run_cache)
    add_sweep_parser(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except IllusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
