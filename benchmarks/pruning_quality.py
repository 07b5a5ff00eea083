"""Held-out perplexity and wall time of magnitude, Wanda and SparseGPT on the embedded SmolLM2.

    python benchmarks/pruning_quality.py [--sparsity 0.5] [--langs en,de,...] [--items 100] [--threads N]

Prunes SmolLM2-135M (float32, CPU) with each method at one unstructured sparsity, calibrating
Wanda and SparseGPT on the default calibration batch (64 x 256 tokens of fixtures/calibration,
seed 0), and measures perplexity on text none of them saw: the QA items of fixtures/qa, written
as "Question: ...\\nAnswer: ...\\n" lines, concatenated per language and cut into 256-token
windows. (fixtures/calibration is not reused as held-out text: its README forbids it.) The
expected order is dense < SparseGPT <= Wanda < magnitude; the last line says whether it holds.
Wall time is the pruning alone (prune_model), not loading or evaluation; on a shared machine it
is noisy.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time

import torch

from illusion.data import fixtures_dir
from illusion.models import load_model, parse_spec
from illusion.prune import CalibrationConfig, PruneRecipe, calibration_batch, prune_model

METHODS = ("magnitude", "wanda", "sparsegpt")
WINDOW = 256
LANGS = ("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "sw")


def held_out_windows(tokenizer, langs: tuple[str, ...], items: int) -> dict[str, list[torch.Tensor]]:
    """Per language, the first ``items`` QA items as text, tokenized and cut into windows."""
    windows = {}
    for lang in langs:
        lines = (fixtures_dir() / "qa" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()][:items]
        text = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n" for r in records)
        ids = torch.tensor(tokenizer.encode(text, add_special_tokens=False))
        windows[lang] = [w for w in ids.split(WINDOW) if len(w) > 1]
    return windows


@torch.no_grad()
def nll(model, windows: dict[str, list[torch.Tensor]]) -> dict[str, tuple[float, int]]:
    """Summed next-token negative log-likelihood and token count, per language."""
    out = {}
    for lang, chunks in windows.items():
        total, count = 0.0, 0
        for ids in chunks:
            logits = model(input_ids=ids.unsqueeze(0), use_cache=False).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, ids[1:], reduction="sum").item()
            count += len(ids) - 1
        out[lang] = (total, count)
    return out


def perplexity(parts: dict[str, tuple[float, int]], langs) -> float:
    total = sum(parts[lang][0] for lang in langs)
    return math.exp(total / sum(parts[lang][1] for lang in langs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--langs", default=",".join(LANGS), help="held-out QA languages")
    parser.add_argument("--items", type=int, default=100, help="QA items per language in the held-out text")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: torch's choice); 1 is much faster on an oversubscribed machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    langs = tuple(x for x in args.langs.split(",") if x)

    loaded = load_model(parse_spec("smollm2-135m"), dtype="float32", device="cpu")
    dense = loaded.model
    windows = held_out_windows(loaded.tokenizer, langs, args.items)
    tokens = sum(len(w) - 1 for chunks in windows.values() for w in chunks)
    calibration = calibration_batch(loaded.tokenizer, CalibrationConfig())
    print(f"SmolLM2-135M float32 on CPU ({torch.get_num_threads()} threads), {args.sparsity:.0%} unstructured; "
          f"held-out: {tokens} tokens of fixtures/qa ({args.items} items x {len(langs)} languages); "
          f"calibration {calibration.shape[0]}x{calibration.shape[1]} tokens", flush=True)

    rows = [("dense", None, nll(dense, windows), 0.0)]
    print("  dense: perplexity measured", flush=True)
    for method in METHODS:
        model = copy.deepcopy(dense)
        start = time.perf_counter()
        stats = prune_model(model, PruneRecipe(method, sparsity=args.sparsity),
                            calibration if method != "magnitude" else None)
        seconds = time.perf_counter() - start
        rows.append((method, seconds, nll(model, windows), stats.total))
        print(f"  {method}: pruned in {seconds:.1f} s", flush=True)
        del model

    en = ("en",) if "en" in langs else ()
    print(f"\n| model | prune wall s | zeros | ppl ({len(langs)} langs) |" + (" ppl en |" if en else ""))
    print("|---|---:|---:|---:|" + ("---:|" if en else ""))
    ppl = {}
    for name, seconds, parts, zeros in rows:
        ppl[name] = perplexity(parts, langs)
        wall = "-" if seconds is None else f"{seconds:.1f}"
        print(f"| {name} | {wall} | {zeros:.2%} | {ppl[name]:.2f} |"
              + (f" {perplexity(parts, en):.2f} |" if en else ""))
    holds = ppl["dense"] < ppl["sparsegpt"] <= ppl["wanda"] < ppl["magnitude"]
    print(f"\ndense < sparsegpt <= wanda < magnitude: {'holds' if holds else 'DOES NOT HOLD'}")


if __name__ == "__main__":
    main()
