"""What makes a row's logits depend on its batch, in bfloat16 and float32, on SmolLM2 (CPU).

    python benchmarks/bf16_batch.py [--dtype bfloat16] [--prompts 8] [--threads 2]

Each prompt's last-position logits are computed alone (batch 1) and then in batches that
change one thing at a time:

- rows R: R copies of the same prompt (no padding): only the row count of every matmul changes;
- left pad P: the prompt beside one P tokens longer (left padding with an exact mask);
- right pad P: the same, the prompt padded on the right and its logits read at its last real token.

For each, the largest |logit difference| against batch 1 and the prompts whose argmax (the
greedy token) changes. Zero differences for a fixed row count or padding scheme would make that
scheme exact; any difference at fixed shape means the batch still leaks into the row.
"""

from __future__ import annotations

import argparse

import torch

from illusion.engine import Message
from illusion.engine.batching import left_pad, right_pad
from illusion.models import load_model, parse_spec
from illusion.probes import ProbeConfig, open_engine
from illusion.sources import load_items


def last_logits(engine, rows: list[list[int]], side: str) -> torch.Tensor:
    """Last real position's logits of each row, [rows, V], in one forward of the padded batch."""
    pad = left_pad if side == "left" else right_pad
    ids, mask = pad(rows, engine.pad_id, engine.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    lengths = torch.tensor([len(r) for r in rows])
    keep = torch.zeros_like(mask, dtype=torch.bool)
    keep[torch.arange(len(rows)), lengths - 1 if side == "right" else torch.full_like(lengths, ids.shape[1] - 1)] = True
    logits, _ = engine.forward(ids, mask=mask, positions=positions, keep=keep, use_cache=False)
    return logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = open_engine(load_model(parse_spec("smollm2-135m"), dtype=args.dtype, device="cpu"), ProbeConfig())
    items = load_items(langs=["en", "zh"], limit_per_lang=args.prompts // 2 or 1)
    encoded = engine._encode([engine.render([Message("user", i.question)]) for i in items])
    long_tail = encoded[0][-1:]
    variants = {f"rows {r}": lambda e, r=r: last_logits(engine, [e] * r, "left")[0] for r in (2, 8, 32)}
    for side in ("left", "right"):
        for p in (1, 8, 32):
            variants[f"{side} pad {p}"] = (lambda e, p=p, side=side:
                                           last_logits(engine, [e, e + long_tail * p], side)[0])
    with torch.inference_mode():
        alone = [last_logits(engine, [e], "left")[0] for e in encoded]
        print(f"{args.dtype}, {len(encoded)} prompts, threads {torch.get_num_threads()}: "
              "against batch 1, max |delta logit| and prompts whose argmax changes")
        for name, run in variants.items():
            worst, flips = 0.0, 0
            for e, single in zip(encoded, alone):
                batched = run(e)
                worst = max(worst, float((batched - single).abs().max()))
                flips += int(batched.argmax() != single.argmax())
            print(f"  {name:<14} max |delta| {worst:9.2e}   argmax changed {flips}/{len(encoded)}")


if __name__ == "__main__":
    main()
