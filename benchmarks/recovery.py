"""Demoted or erased? Recovery probes on the candidate's recognition-only items, per language.

    python benchmarks/recovery.py [--recipes wanda:0.5,wanda:0.7] [--langs en,de,fr,es,zh,ru] [--limit 40]

For each recipe, prunes the embedded SmolLM2 (cached), probes the items (results store: a rerun
computes nothing) and prints, per language, how many recognition-only items some probe brings
back (demoted) and how many none does (erased), and which probe recovers them: beam search
(4 beams), sampling (8 at T=0.7) or one in-context example. The paper's finding is that most
recognition-only errors of pruned models are demoted, not erased.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from illusion.session import IllusionSession, RunConfig

PROBES = ("beam", "sampling", "one_shot")


def rows_for(recipe: str, langs: list[str], limit: int) -> list[tuple]:
    session = IllusionSession(RunConfig(prune=recipe, langs=tuple(langs), limit_per_lang=limit),
                              progress=lambda msg: print(f"  [{recipe}] {msg}", file=sys.stderr, flush=True))
    verdicts = session.verdicts(session.items)
    rows = []
    for lang in langs:
        results = [v.candidate for v in verdicts if v.candidate.lang == lang]
        only = [r for r in results if r.recognition_only]
        probes = Counter(p for r in only for p in r.recovered_by)
        induced = sum(v.pruning_induced for v in verdicts if v.candidate.lang == lang)
        rows.append((recipe, lang, len(results), len(only), induced, sum(r.recovery == "demoted" for r in only),
                     sum(r.recovery == "erased" for r in only), *(probes[p] for p in PROBES)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="wanda:0.5,wanda:0.7")
    parser.add_argument("--langs", default="en,de,fr,es,zh,ru")
    parser.add_argument("--limit", type=int, default=40, help="items per language")
    args = parser.parse_args()
    langs = args.langs.split(",")
    print(f"$ python benchmarks/recovery.py --recipes {args.recipes} --langs {args.langs} --limit {args.limit}")
    header = ("recipe", "lang", "items", "recog-only", "pruning-induced", "demoted", "erased", *PROBES)
    table = [header]
    start = time.perf_counter()
    for recipe in args.recipes.split(","):
        rows = rows_for(recipe, langs, args.limit)
        total = [sum(r[i] for r in rows) for i in range(2, len(header))]
        table += [tuple(map(str, r)) for r in rows] + [(recipe, "all", *map(str, total))]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.rjust(w) if i > 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    print(f"(a probe column counts the recognition-only items that probe recovers; one item can count in several)"
          f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
