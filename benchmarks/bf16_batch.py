"""What makes a row's logits depend on its batch, in bfloat16 and float32, on SmolLM2 (CPU),
and what a fixed-shape scheme that removes it would cost.

    python benchmarks/bf16_batch.py [--dtype bfloat16] [--prompts 8] [--threads 2] [--skip-cost]

1. Each prompt's last-position logits alone (batch 1), then in batches that change one thing:
   - rows R: R copies of the same prompt (no padding): only the row count of every matmul changes;
   - left pad P: the prompt beside one P tokens longer (left padding with an exact mask);
   - right pad P: the same, the prompt padded on the right and its logits read at its last real token.
2. Unpadded groups: 64 different prompts cut to one length (the chat prefix, then 20 tokens), so
   nothing is ever padded; each decoded greedily for 12 steps alone, then in random groups of
   2 to 64 rows where half the rows leave at steps 3 and 7 (as rows that stop do). Every step's
   logits are compared with the row's alone.
3. Fixed row count: the same prompts, every batch exactly 64 rows and none leaving; a row among
   63 others against the row in 64 copies of itself.
4. The cost of the exact scheme on the whole shipped set: tokens through the layers when every
   forward holds prompts of one length, options of one length, a fixed row count R and no row
   leaves, against today's batching (length-sorted, padded, rows leave at their stop).

For each comparison, the largest |logit difference| and the argmax (greedy token) changes.
"""

from __future__ import annotations

import argparse
import collections
import math
import random

import torch

from illusion.engine import Message
from illusion.engine.batching import left_pad, right_pad
from illusion.engine.text import continuation_ids
from illusion.models import load_model, parse_spec
from illusion.probes import ProbeConfig, open_engine
from illusion.sources import load_items

TAIL, STEPS, POOL = 20, 12, 64  # unpadded groups: question tokens kept, decode steps, prompts


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


def encoded_questions(engine, items) -> list[list[int]]:
    """Each item's question as the engine's prompt tokens."""
    return engine._encode([engine.render([Message("user", i.question)]) for i in items])


def compare(got: list[torch.Tensor], want: list[torch.Tensor]) -> tuple[float, int]:
    """Largest |difference| and argmax changes between two rows' logits, step by step."""
    worst = max(float((a - b).abs().max()) for a, b in zip(got, want))
    return worst, sum(int(a.argmax() != b.argmax()) for a, b in zip(got, want))


def padding_effects(engine, encoded: list[list[int]]) -> None:
    long_tail = encoded[0][-1:]
    variants = {f"rows {r}": lambda e, r=r: last_logits(engine, [e] * r, "left")[0] for r in (2, 8, 32)}
    for side in ("left", "right"):
        for p in (1, 8, 32):
            variants[f"{side} pad {p}"] = (lambda e, p=p, side=side:
                                           last_logits(engine, [e, e + long_tail * p], side)[0])
    alone = [last_logits(engine, [e], "left")[0] for e in encoded]
    print(f"1. {len(encoded)} prompts, last logits against batch 1:")
    for name, run in variants.items():
        worst, flips = compare([run(e) for e in encoded], alone)
        print(f"  {name:<14} max |delta| {worst:9.2e}   argmax changed {flips}/{len(encoded)}")


def decode(engine, prompts: list[list[int]], leave_at: set[int], seed: int) -> list[list[torch.Tensor]]:
    """Each row's logits at every greedy step (prompt's last position first); at a step in
    ``leave_at`` a random half of the rows leaves the batch, as rows that stopped do."""
    rng = random.Random(seed)
    last, cache, mask = engine._prompt_forward(prompts)
    seqs = [[last[i]] for i in range(len(prompts))]
    active, logits = list(range(len(prompts))), last
    for step in range(STEPS):
        chosen = logits.argmax(-1)
        if step in leave_at and len(active) > 1:
            keep = sorted(rng.sample(range(len(active)), len(active) // 2))
            rows = torch.tensor(keep)
            cache.batch_select_indices(rows)
            mask, chosen, active = mask[rows], chosen[rows], [active[k] for k in keep]
        mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype)], 1)
        logits, cache = engine.forward(chosen[:, None], mask=mask, positions=mask.sum(-1, keepdim=True) - 1,
                                       cache=cache)
        for i, row in enumerate(active):
            seqs[row].append(logits[i])
    return seqs


def unpadded_groups(engine, pool: list[list[int]]) -> None:
    alone = [decode(engine, [p], set(), 0)[0] for p in pool]
    rng = random.Random(1)
    print(f"2. {len(pool)} prompts of one length (no padding anywhere), {STEPS} greedy steps, "
          "in random groups against alone:")
    for size in (2, 7, 16, 64):
        for trial in range(2):
            rows = rng.sample(range(len(pool)), size)
            seqs = decode(engine, [pool[r] for r in rows], {3, 7}, trial)
            results = [compare(seq, alone[r]) for r, seq in zip(rows, seqs)]
            print(f"  {size:2d} rows, half leave at steps 3 and 7 (trial {trial}): max |delta| "
                  f"{max(w for w, _ in results):9.2e}   argmax changed at {sum(f for _, f in results)} of "
                  f"{sum(len(s) for s in seqs)} row-steps")


def fixed_row_count(engine, pool: list[list[int]]) -> None:
    rng = random.Random(2)
    print(f"3. every batch {POOL} rows, none leaving: a row among {POOL - 1} others against the row in {POOL} copies:")
    for row in range(4):
        copies = decode(engine, [pool[row]] * POOL, set(), 0)[0]
        mixed = decode(engine, [pool[row]] + [pool[rng.randrange(4, len(pool))] for _ in range(POOL - 1)], set(), 0)[0]
        worst, flips = compare(mixed, copies)
        print(f"  row {row}: max |delta| {worst:9.2e}   argmax changed {flips}/{len(copies)}")


def fixed_shape_cost(engine, max_new_tokens: int = 24, generated_mean: int = 21) -> None:
    """Tokens through the layers for the shipped set's MC and greedy probes, per scheme."""
    items = load_items()
    prompts = [engine.render([Message("user", i.question)]) for i in items]
    prefix = len(engine._prefix_tokens)
    tails = [len(e) - prefix for e in engine._encode(prompts)]
    conts = [[len(continuation_ids(engine.tokenizer, p, o)) - 1 for o in (i.answer, *i.distractors)]
             for p, i in zip(prompts, items)]
    by_tail = sorted(tails)
    options = sorted(c for cs in conts for c in cs if c > 0)
    padded = (sum(len(b) * max(b) for b in (by_tail[s:s + 64] for s in range(0, len(items), 64)))
              + sum(len(c) * max(c) for c in (options[s:s + 64] for s in range(0, len(options), 64)))
              + len(items) * generated_mean)
    print(f"4. the shipped set ({len(items)} items, {len(set(tails))} question lengths), tokens through the layers; "
          f"today (batch 64, padded, rows leave; {generated_mean} of {max_new_tokens} decode steps on average): {padded}")
    groups = collections.Counter(tails)
    option_groups = collections.Counter((tails[i], c) for i in range(len(items)) for c in conts[i] if c > 0)
    for rows in (8, 16, 32, 64):
        fill = lambda n: math.ceil(n / rows) * rows  # noqa: E731 - every forward holds exactly `rows` rows
        work = (sum(fill(n) * length for length, n in groups.items())
                + sum(fill(n) * length for (_, length), n in option_groups.items())
                + sum(fill(n) for n in groups.values()) * max_new_tokens)
        print(f"  exact lengths, {rows:2d} rows per forward, no row leaving: {work:8d} = {work / padded:.2f}x today's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--skip-cost", action="store_true", help="leave out part 4 (tokenizes the whole set)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = open_engine(load_model(parse_spec("smollm2-135m"), dtype=args.dtype, device="cpu"), ProbeConfig())
    print(f"{args.dtype}, threads {torch.get_num_threads()}")
    with torch.inference_mode():
        items = load_items(langs=["en", "zh"], limit_per_lang=args.prompts // 2 or 1)
        padding_effects(engine, encoded_questions(engine, items))
        items = load_items(langs=["en", "fr", "zh", "ru"], limit_per_lang=40)
        encoded = encoded_questions(engine, items)
        keep = len(engine._prefix_tokens) + TAIL
        pool = [e[:keep] for e in encoded if len(e) >= keep][:POOL]
        unpadded_groups(engine, pool)
        fixed_row_count(engine, pool)
    if not args.skip_cost:
        fixed_shape_cost(engine)


if __name__ == "__main__":
    main()
