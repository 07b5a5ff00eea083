"""Everything the engine outputs on SmolLM2, written exactly, to compare two versions of the engine.

    python benchmarks/decode_identity.py OUT.json [--langs en,fr,zh] [--limit 16] [--dtype float32]
    python benchmarks/decode_identity.py --compare A.json B.json

Writes MC scores (as exact float reprs), greedy answers with gold and first-position ranks,
Gumbel samples and beam-search beams. ``--compare`` prints the first difference and exits 1 on
any: an engine change that claims identical results must leave this file byte for byte the same.
"""

from __future__ import annotations

import argparse
import json
import sys

from illusion.engine import BeamRequest, GreedyRequest, Message, SampleRequest, ScoreRequest
from illusion.models import load_model, parse_spec
from illusion.probes import ProbeConfig, open_engine
from illusion.sources import load_items


def outputs(dtype: str, langs: list[str], limit: int, batch_size: int) -> dict:
    items = load_items(langs=langs, limit_per_lang=limit)
    engine = open_engine(load_model(parse_spec("smollm2-135m"), dtype=dtype, device="cpu"),
                         ProbeConfig(batch_size=batch_size))
    prompts = [engine.render([Message("user", item.question)]) for item in items]
    pairs = [(ScoreRequest(p, (i.answer, *i.distractors)), GreedyRequest(p, gold_forms=(i.answer, *i.aliases)))
             for i, p in zip(items, prompts)]
    probed = engine.score_and_greedy(pairs)
    few = prompts[: max(1, batch_size // 8)]
    samples = engine.sample([SampleRequest(p, tuple(range(k * 8, k * 8 + 8)), 0.7) for k, p in enumerate(few)])
    beams = engine.beam([BeamRequest(p, 4) for p in few])
    plain = engine.greedy([GreedyRequest(p) for p in prompts[::3]])
    return {
        "probe": {i.id: {"scores": [repr(s) for s in scores], "text": g.text, "gold_rank": g.gold_rank,
                         "first": g.first_position_rank} for i, (scores, g) in zip(items, probed)},
        "samples": [list(s) for s in samples],
        "beams": [list(b) for b in beams],
        "greedy": [g.text for g in plain],
    }


def compare(a: dict, b: dict, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = compare(a.get(key), b.get(key), f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for n, (x, y) in enumerate(zip(a, b)):
            found = compare(x, y, f"{path}[{n}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
    parser.add_argument("--langs", default="en,fr,zh")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.compare:
        a, b = (json.loads(open(p).read()) for p in args.compare)
        diff = compare(a, b)
        print(f"first difference: {diff}" if diff else "identical")
        sys.exit(1 if diff else 0)
    if not args.out:
        parser.error("give OUT.json, or --compare A.json B.json")
    result = outputs(args.dtype, args.langs.split(","), args.limit, args.batch_size)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False, sort_keys=True)


if __name__ == "__main__":
    main()
