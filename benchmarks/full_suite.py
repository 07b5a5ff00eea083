"""The full default suite, cold and warm, per phase, with peak RSS (issue 16's measurement).

    python benchmarks/full_suite.py [--recovery induced] [--prune wanda:0.5] [--runs cold,warm]
                                    [--limit-per-lang N] [--langs en,fr] [--json FILE]

What a user runs: ``pytest --pyargs illusion_tests --illusion-prune wanda:0.5`` (all ten shipped
languages, every item), in a child process on a fresh ``ILLUSION_CACHE`` that starts with only the
converted SmolLM2:

* ``prepare``: the same command on one item per language with ``--illusion-no-cache``, which prunes
  and caches the pruned model (the issue's "cold" has the pruned model cached);
* ``cold``: the whole suite on an empty results store: nothing is read from it, every item is
  probed on both sides and the recovery probes run (``--illusion-no-cache``'s work, plus writing
  the results, which the warm run needs);
* ``warm``: the same command again, everything read from the store the cold run filled.

Each run's phases are timed from its progress lines on stderr (loading, pruning, probing each side,
the recovery probes, the rest: collection before and reporting after); peak RSS is the child's own
high-water mark (``VmHWM``), also as a multiple of one model's weight bytes. The pytest summary line and the
recovery scope are printed with the figures. ``--report DIR`` keeps the cold run's report.json;
``--compare INDUCED.json ALL.json`` then checks that two scopes agree on every item (outcome,
category, ranks, generation) and on the recovery verdict of every item both probed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from memory import ITEMSIZE, checkpoint_params, fresh_cache, peak_bytes, phase_of  # noqa: E402  (benchmarks is not a package)

RUNS = ("cold", "warm")


def child(pytest_args: list[str], rss_file: str) -> int:
    """One suite run in this process, its peak resident set written to ``rss_file`` at the end."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]  # benchmarks/xdist.py
    import pytest

    code = pytest.main(pytest_args)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child would report
    # this benchmark's own peak (a model converted or loaded to count its weights) as its own.
    Path(rss_file).write_text(str(peak_bytes()))
    return int(code)


def timed_run(pytest_args: list[str], cache: Path, echo: bool) -> dict:
    """Run the suite in a child; time each phase from its stderr lines as they arrive."""
    rss_file = cache / "peak-rss.txt"
    command = [sys.executable, __file__, "--child", str(rss_file), "--", *pytest_args]
    env = {**os.environ, "ILLUSION_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    stdout_file = cache / "pytest-stdout.txt"  # a file, not a pipe: pytest's report would fill a pipe nobody reads yet
    with stdout_file.open("w") as sink:
        child_process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.PIPE, text=True)
        phases: dict[str, float] = {}
        code = read_phases(child_process, phases, started, echo)
    ended = time.perf_counter()
    stdout = stdout_file.read_text()
    summary = next((line.strip("= ") for line in reversed(stdout.splitlines()) if " in " in line and "passed" in line), "")
    if code not in (0, 1):
        sys.exit(f"the suite run failed (exit {code}):\n{stdout[-3000:]}")
    return {"wall": round(ended - started, 1), "exit": code, "summary": summary,
            "phases": {name: round(seconds, 1) for name, seconds in phases.items()},
            "peak_rss": int(rss_file.read_text())}


def read_phases(child_process: subprocess.Popen, phases: dict[str, float], started: float, echo: bool) -> int:
    """Add each phase's seconds to ``phases`` as the child's progress lines arrive; its exit code."""
    current, since = "collect", started
    for line in child_process.stderr:
        if echo:
            print(f"  {line}", end="", file=sys.stderr, flush=True)
        phase = phase_of(line.strip())
        if phase is not None and phase != current:
            now = time.perf_counter()
            phases[current] = phases.get(current, 0.0) + now - since
            current, since = phase, now
    code = child_process.wait()
    phases[current] = phases.get(current, 0.0) + time.perf_counter() - since
    return code


def compare_scopes(first: Path, second: Path) -> int:
    """Items whose verdicts differ between two reports of the same run with different scopes."""
    def items(path: Path) -> dict:
        return {(item["lang"], item["id"]): item for item in json.loads(path.read_text())["items"]}

    one, two = items(first), items(second)
    if one.keys() != two.keys():
        sys.exit(f"the reports hold different items ({len(one)} and {len(two)}): not the same run")
    fields = ("mc_correct", "gen_correct", "category", "gold_rank", "first_position_rank", "generation")
    def recovered(result: dict) -> bool:  # a recognition-only item the recovery probes ran on
        return result["category"] == "recognition_only" and result["recovered_by"] is not None

    differ, both_probed = [], 0
    for key, item in one.items():
        other = two[key]
        a, b = item["candidate"], other["candidate"]
        same = item["outcome"] == other["outcome"] and all(a[name] == b[name] for name in fields)
        if recovered(a) and recovered(b):
            both_probed += 1
            same = same and a["recovered_by"] == b["recovered_by"] and a["recovery"] == b["recovery"]
        if not same:
            differ.append("-".join(key))
    probed = [sum(recovered(item["candidate"]) for item in side.values()) for side in (one, two)]
    print(f"{len(one)} items; recovery probes ran on {probed[0]} recognition-only items ({first}) and {probed[1]} ({second}), "
          f"{both_probed} by both; items whose verdicts differ: {len(differ)} {differ[:10]}")
    return 1 if differ else 0


def suite_args(args: argparse.Namespace, *, limit: int | None, store: bool, report: Path | None = None) -> list[str]:
    command = ["--pyargs", "illusion_tests", "-q", "-rN", "-p", "no:cacheprovider",
               "--illusion-recovery", args.recovery]
    if args.prune:
        command += ["--illusion-prune", args.prune]
    if args.langs:
        command += ["--illusion-langs", args.langs]
    if limit:
        command += ["--illusion-limit-per-lang", str(limit)]
    if not store:
        command.append("--illusion-no-cache")
    if report is not None:
        command += ["--illusion-report", str(report)]
    return command


def report(name: str, run: dict, weight_bytes: int) -> None:
    minutes, seconds = divmod(run["wall"], 60)
    print(f"{name}: {run['wall']:.1f} s wall ({int(minutes)} min {seconds:.0f} s); {run['summary']}")
    for phase, spent in run["phases"].items():
        print(f"  {phase:<18}{spent:>8.1f} s")
    rss = run["peak_rss"]
    print(f"  peak RSS {rss / 2**20:.0f} MiB = {rss / weight_bytes:.2f}x one model's weight bytes "
          f"({weight_bytes / 2**20:.0f} MiB)")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[4:], sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recovery", default="induced", choices=("induced", "all", "off"))
    parser.add_argument("--prune", default="wanda:0.5")
    parser.add_argument("--langs", default="", help="default: every shipped language")
    parser.add_argument("--limit-per-lang", type=int, default=None, help="default: every item")
    parser.add_argument("--runs", default="cold,warm", help="which of cold, warm to time")
    parser.add_argument("--verbose", action="store_true", help="echo the runs' progress lines")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--report", type=Path, help="write the cold run's report.json, .md, .html here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("REPORT", "OTHER"),
                        help="compare two report.json files of different scopes, then exit")
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare_scopes(*args.compare))
    runs = [run for run in args.runs.split(",") if run]
    if not set(runs) <= set(RUNS):
        parser.error(f"--runs takes {', '.join(RUNS)}; got {args.runs!r}")

    from illusion.models import converted_gguf_dir, parse_spec
    from illusion.paths import cache_root

    cache = fresh_cache(cache_root())
    weight_bytes = checkpoint_params(converted_gguf_dir(parse_spec("smollm2-135m"))) * ITEMSIZE["float32"]
    figures: dict = {"recovery": args.recovery, "prune": args.prune, "langs": args.langs or "all",
                     "limit_per_lang": args.limit_per_lang, "weight_bytes": weight_bytes}
    try:
        if args.prune:
            prepared = timed_run(suite_args(args, limit=1, store=False), cache, args.verbose)
            print(f"prepare (prunes and caches the candidate): {prepared['wall']:.1f} s")
        whole = suite_args(args, limit=args.limit_per_lang, store=True)
        cold = timed_run(suite_args(args, limit=args.limit_per_lang, store=True, report=args.report), cache,
                         args.verbose)  # the warm run needs the store it fills
        if "cold" in runs:
            figures["cold"] = cold
            report("cold", cold, weight_bytes)
        if "warm" in runs:
            figures["warm"] = timed_run(whole, cache, args.verbose)
            report("warm", figures["warm"], weight_bytes)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
