"""Is -n 2 faster than -n 0 here? The cold demo both ways, and why: one-thread processes alone
and side by side against one two-thread process.

    python benchmarks/xdist.py demo     # make demo's command, --illusion-no-cache, -n 0 then -n 2
    python benchmarks/xdist.py cores    # probing 60 items / recovering 12, 1 thread alone, 2 side by side, 2 threads

``demo`` prints each wall time and checks the outcomes are identical. ``cores`` runs the probe
engine on the cached Wanda 50% candidate (run ``make demo`` once first).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ["--illusion-prune", "wanda:0.5", "--illusion-langs", "en,de,fr,es,zh,ru", "--illusion-limit-per-lang", "40",
        "--illusion-no-cache", "-q", "-p", "no:cacheprovider", "-rfx"]
WORK = {"probe": "probing 60 items", "recover": "recovering 12 items"}


def demo() -> None:
    outcomes = {}
    for n in ("0", "2"):
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", "illusion_tests", *DEMO, "-n", n], cwd=ROOT,
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - start
        outcomes[n] = sorted(re.findall(r"^(FAILED|XFAIL) (\S+)", run.stdout, re.M))
        print(f"-n {n}: {wall:6.1f} s   {run.stdout.strip().splitlines()[-1]}", flush=True)
    print("outcomes identical" if outcomes["0"] == outcomes["2"] else "OUTCOMES DIFFER")


def work(kind: str, threads: int, start_at: float) -> None:
    """One timed job in this process (``cores`` starts these as subprocesses)."""
    import torch

    torch.set_num_threads(threads)
    from illusion.data import exemplar_for
    from illusion.models import load_model, parse_spec
    from illusion.paths import cache_root
    from illusion.probes import ProbeConfig, probe, recover
    from illusion.sources import load_exemplars, load_items

    items = load_items(langs=["en", "de", "fr", "es", "zh", "ru"], limit_per_lang=40)
    pruned = sorted(d for d in (cache_root() / "pruned").glob("smollm2-135m-wanda-0.5-*") if d.is_dir())
    if not pruned:
        sys.exit("no cached Wanda 50% model: run make demo once first")
    loaded = load_model(parse_spec(str(pruned[0])), dtype="float32", device="cpu")
    probe(loaded, items[:4], ProbeConfig())  # warm-up
    while time.time() < start_at:
        time.sleep(0.01)
    clock = time.perf_counter()
    if kind == "probe":
        probe(loaded, items[1::4], ProbeConfig())
    else:
        chosen = items[0::20][:12]
        exemplars = load_exemplars(sorted({it.lang for it in chosen}))
        recover(loaded, [(it, exemplar_for(it, exemplars)) for it in chosen], ProbeConfig(), seed=0)
    print(f"{time.perf_counter() - clock:.1f}")


def timed(kind: str, threads: int, copies: int) -> list[str]:
    start_at = time.time() + 15  # after every copy has loaded its model
    procs = [subprocess.Popen([sys.executable, __file__, "work", kind, str(threads), str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}) for _ in range(copies)]
    return [p.communicate()[0].strip() + " s" for p in procs]


def cores() -> None:
    for kind in WORK:
        alone = timed(kind, 1, 1)
        side = timed(kind, 1, 2)
        both = timed(kind, 2, 1)
        print(f"{WORK[kind]:20s} 1 thread alone {alone[0]:>7s} | two 1-thread side by side {' and '.join(side)} "
              f"| one 2-thread process {both[0]}", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "work":
        work(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("demo", "cores"))
    args = parser.parse_args()
    demo() if args.part == "demo" else cores()


if __name__ == "__main__":
    main()
