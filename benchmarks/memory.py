"""Peak memory of the demo as a multiple of one model's weight bytes (goal: <= 1.3x).

    python benchmarks/memory.py [--limit-per-lang 40] [--langs en,de,fr,es,zh,ru] [--prune wanda:0.5]
                                [--device cpu] [--batch-size 64] [--calibration-samples 64] [--verbose]

The demo's configuration (Makefile DEMO_ARGS) runs in a child process on a fresh cache that holds
only the converted SmolLM2, so it does everything a first ``make demo`` does: probe the reference,
prune, probe the candidate, run the recovery probes (the results store is off). Measured:

* CPU: the child's peak resident set (VmHWM of /proc/self/status; ``ru_maxrss`` elsewhere), less its
  resident set after importing torch, transformers and the project (the runtime, not a model).
  The peak is reset at each phase (writing 5 to /proc/self/clear_refs), so each phase shows its own.
* GPU (``--device cuda``): ``torch.cuda.max_memory_allocated``, reset at each phase.

A phase starts at the session's progress messages: loading a model, pruning, probing, recovery.
To measure another version of the code (e.g. before a change), put it first on PYTHONPATH:
``PYTHONPATH=/path/to/checkout python benchmarks/memory.py ...`` (the child inherits it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO = {"prune": "wanda:0.5", "langs": "en,de,fr,es,zh,ru", "limit_per_lang": 40}  # Makefile DEMO_ARGS
PHASES = (("loading ", "load"), ("converting ", "load"), ("pruning ", "prune"), ("pruned ", "prune"),
          ("probing ", "probe"), ("recovery probes on", "recovery"), ("freed ", "free"))
ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "float32": 4, "bfloat16": 2, "float16": 2}


def phase_of(message: str) -> str | None:
    """The phase a progress message starts (``PHASES``; probing split by side), or None for any other."""
    text = message.removeprefix("[illusion] ")
    phase = next((name for prefix, name in PHASES if text.startswith(prefix)), None)
    if phase == "probe":
        return "probe " + ("reference" if " on the reference" in text else "candidate")
    return phase


def status_kb(field: str) -> int | None:
    """A field of /proc/self/status in kB (None where there is no /proc)."""
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def peak_bytes() -> int:
    hwm = status_kb("VmHWM")
    return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def reset_peak() -> bool:
    """Start a new peak (Linux: clear_refs 5 resets VmHWM to the current resident set)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def checkpoint_params(directory: Path) -> int:
    """Parameter count of a safetensors checkpoint, from its headers (nothing is loaded)."""
    count = 0
    for path in directory.glob("*.safetensors"):
        with path.open("rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        for name, info in header.items():
            if name != "__metadata__":
                start, end = info["data_offsets"]
                count += (end - start) // ITEMSIZE[info["dtype"]]
    return count


class Phases:
    """Peak memory per phase of the run, switched by the session's progress messages."""

    def __init__(self, cuda: bool, verbose: bool = False):
        self.cuda = cuda
        self.verbose = verbose
        self.rows: list[dict] = []
        self.current: str | None = None
        self.started = time.perf_counter()

    def used(self) -> tuple[int, int]:
        """(peak since the phase began, now): GPU allocated bytes, or resident bytes."""
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated(), torch.cuda.memory_allocated()
        return peak_bytes(), (status_kb("VmRSS") or 0) * 1024

    def note(self, message: str) -> None:
        if self.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
        phase = phase_of(message)
        if phase is None:
            return
        if phase != self.current:
            self.switch(phase)

    def switch(self, phase: str | None) -> None:
        if self.current is not None:
            peak, now = self.used()
            self.rows.append({"phase": self.current, "peak": peak, "end": now,
                              "seconds": round(time.perf_counter() - self.started, 1)})
            if self.verbose:
                print(f"phase {self.rows[-1]}", file=sys.stderr, flush=True)
        self.current, self.started = phase, time.perf_counter()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak()


def child(args: argparse.Namespace) -> None:
    """The measured run: one process, the demo's session, figures as JSON on stdout's last line."""
    baseline_rss = (status_kb("VmRSS") or 0) * 1024
    import torch  # noqa: F401  (the runtime's own memory belongs to the baseline)
    import transformers  # noqa: F401

    import illusion
    from illusion.models import converted_gguf_dir, parse_spec, resolve_device, resolve_dtype
    from illusion.session import IllusionSession, RunConfig

    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    dtype = resolve_dtype(args.dtype, device)
    config = RunConfig(prune=args.prune or None, langs=tuple(args.langs.split(",")), limit_per_lang=args.limit_per_lang,
                       device=device, dtype=dtype, batch_size=args.batch_size, use_store=False,
                       calibration_samples=args.calibration_samples)
    directory = converted_gguf_dir(parse_spec(config.model))  # linked in by the parent: nothing converts here
    weight_bytes = checkpoint_params(directory) * ITEMSIZE[dtype]
    phases = Phases(cuda, verbose=args.verbose)
    session = IllusionSession(config, progress=phases.note)
    items = session.items
    session.set_collected(items)
    baseline = (status_kb("VmRSS") or 0) * 1024 if not cuda else 0
    reset_peak()
    started = time.perf_counter()
    phases.switch("start")
    verdicts = session.verdicts(items)
    phases.switch(None)
    print(json.dumps({
        "code": str(Path(illusion.__file__).parent.parent), "config": " ".join(sys.argv[2:]), "device": device, "dtype": dtype, "items": len(items),
        "verdicts": len(verdicts), "weight_bytes": weight_bytes, "baseline": baseline, "python_rss": baseline_rss,
        "seconds": round(time.perf_counter() - started, 1), "phases": phases.rows,
    }))


def fresh_cache(root: Path) -> Path:
    """A cache with only the converted models of ``root`` (linked): no results, no pruned checkpoint."""
    from illusion.models import converted_gguf_dir, parse_spec

    converted_gguf_dir(parse_spec("smollm2-135m"), progress=lambda msg: print(msg, flush=True))
    cache = Path(tempfile.mkdtemp(prefix="illusion-memory-"))
    (cache / "models").symlink_to(root / "models", target_is_directory=True)
    return cache


def report(figures: dict) -> None:
    weights = figures["weight_bytes"]
    unit = "GPU allocated" if figures["device"].startswith("cuda") else "RSS above the baseline"
    print(f"code: {figures['code']}; {figures['config']}")
    print(f"{figures['items']} items on {figures['device']} ({figures['dtype']}), {figures['seconds']} s; "
          f"one model's weights: {weights / 2**20:.0f} MiB; baseline RSS after imports: "
          f"{figures['baseline'] / 2**20:.0f} MiB")
    print(f"{'phase':<18}{'peak ' + unit:>32}{'x weights':>11}{'at its end':>13}{'x weights':>11}")
    for row in figures["phases"]:
        peak, end = row["peak"] - figures["baseline"], row["end"] - figures["baseline"]
        print(f"{row['phase']:<18}{peak / 2**20:>28.0f} MiB{peak / weights:>10.2f}x"
              f"{end / 2**20:>9.0f} MiB{end / weights:>10.2f}x")
    top = max(row["peak"] for row in figures["phases"]) - figures["baseline"]
    print(f"peak of the run: {top / 2**20:.0f} MiB = {top / weights:.2f}x one model's weight bytes "
          f"({(top + figures['baseline']) / 2**20:.0f} MiB resident at the peak, runtime included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-per-lang", type=int, default=DEMO["limit_per_lang"])
    parser.add_argument("--langs", default=DEMO["langs"])
    parser.add_argument("--prune", default=DEMO["prune"], help="the demo's recipe; '' for the dense model only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--calibration-samples", type=int, default=64, help="Wanda's calibration windows (demo: 64)")
    parser.add_argument("--verbose", action="store_true", help="print the run's progress to stderr")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from illusion.paths import cache_root

    cache = fresh_cache(cache_root())
    command = [sys.executable, __file__, "--child", *sys.argv[1:]]
    run = subprocess.run(command, env={**os.environ, "ILLUSION_CACHE": str(cache)}, stdout=subprocess.PIPE, text=True)
    if run.returncode:
        sys.exit(f"the measured run failed (exit {run.returncode}); its cache is kept at {cache}")
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    import shutil

    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
