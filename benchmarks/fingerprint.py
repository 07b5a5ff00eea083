"""Content fingerprint of the demo's SmolLM2: the first (cold, no memo) and the memoised second.

    python benchmarks/fingerprint.py [--repeats 3]

Times ``fingerprint(parse_spec('smollm2-135m'))`` (hashes the shipped GGUF) and
``directory_fingerprint`` of its converted safetensors checkpoint under $ILLUSION_CACHE (converted
first if missing, before any timing). "Cold" means the digest memo ($ILLUSION_CACHE/digests.json)
is removed first, not that the OS page cache is dropped: the file is read from memory when it was
read recently, so the cold figure is the hashing cost (a first read from disk adds the disk's read
time). The memo's entries from before the run are put back at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

from filelock import FileLock

from illusion.digests import DIGEST_MEMO
from illusion.files import write_atomic
from illusion.models import (FINGERPRINT_FILES, builtin_gguf_path, converted_gguf_dir, directory_fingerprint, fingerprint,
                             parse_spec)
from illusion.paths import cache_root

SPEC = "smollm2-135m"


def timed(work: Callable[[], str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def hashed_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file() and FINGERPRINT_FILES.match(p.name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="cold/memoised pairs per target (median shown)")
    args = parser.parse_args()

    spec = parse_spec(SPEC)
    converted = converted_gguf_dir(spec, progress=lambda msg: print(msg, flush=True))
    memo = cache_root() / DIGEST_MEMO
    kept = json.loads(memo.read_text()) if memo.is_file() else {}
    targets = {
        f"GGUF {builtin_gguf_path(SPEC).name}": (lambda: fingerprint(spec), builtin_gguf_path(SPEC).stat().st_size),
        f"safetensors dir {converted.name}": (lambda: directory_fingerprint(converted), hashed_bytes(converted)),
    }
    try:
        for label, (work, size) in targets.items():
            cold, warm = [], []
            for _ in range(args.repeats):
                memo.unlink(missing_ok=True)
                seconds, first = timed(work)
                cold.append(seconds)
                seconds, second = timed(work)
                warm.append(seconds)
                assert first == second, "the memoised fingerprint differs from the computed one"
            cold_s, warm_s = statistics.median(cold), statistics.median(warm)
            print(f"{label}: {size / 1e6:.1f} MB; first (cold) {cold_s:.3f} s ({size / 1e6 / cold_s:.0f} MB/s), "
                  f"memoised {warm_s * 1e3:.2f} ms ({cold_s / warm_s:.0f}x faster); median of {args.repeats}")
    finally:
        with FileLock(str(memo) + ".lock"):
            now = json.loads(memo.read_text()) if memo.is_file() else {}
            write_atomic(memo, json.dumps({**kept, **now}, indent=0, sort_keys=True).encode())


if __name__ == "__main__":
    main()
