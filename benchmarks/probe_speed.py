"""Probe-engine throughput on the embedded SmolLM2: items/s and tokens/s for MC scoring and generation.

    python benchmarks/probe_speed.py [--langs en,fr] [--limit 40] [--dtype auto] [--batch-size 64]
                                     [--recovery-items 64]

MC time includes the shared prompt forward; tokens counted are prompt + option tokens for MC,
and generated tokens for greedy decoding. A matmul peak measured in the same run puts the
figures in context, counting the matmul work the engine ran (attention not counted): 2 x the
layers' weights per token through the layers (padding included; the chat template's shared
prefix, computed once, not) and 2 x the vocabulary head's per position it scored. Decode
throughput is given as a fraction of the float32 peak, and the bfloat16 peak is measured
beside it. Peak RSS is given as a multiple of the model's weight bytes. The model's own matmul
shapes are timed alone at the batch's row count, to tell the products' speed from the rest.
``--recovery-items N`` also runs the recovery probes (beam, sampling, one-shot) on the first N
items and counts their work the same way.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from illusion.data import exemplar_for
from illusion.models import load_model, parse_spec
from illusion.probes import ProbeConfig, open_engine, probe_on, recover_on
from illusion.sources import load_exemplars, load_items


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a square matmul, best of ``repeats``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def matmul_weights(model) -> tuple[int, int]:
    """(weights of the layers' matmuls, weights of the vocabulary head): the embedding lookup
    is not a matmul, and a head tied to the embedding is counted once, as the head."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    body = total - embedding.numel() - (0 if head is embedding else head.numel())
    return body, head.numel()


def matmul_work(stats: dict, body: int, head: int) -> int:
    """FLOP of the matmuls the engine ran, from its counters (see ``matmul_weights``)."""
    return 2 * (body * stats["forward_tokens"] + head * stats["head_rows"])


def linear_rates(model, rows: int, dtype: torch.dtype, repeats: int = 20) -> dict[tuple[int, int], float]:
    """GFLOP/s of each distinct (in, out) matmul shape of the model's linear layers and head, with
    ``rows`` rows, timed alone (its weights stay in cache: an upper bound for the same product
    inside a forward)."""
    shapes = sorted({(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)})
    rates = {}
    for k, n in shapes:
        x, w = torch.randn(rows, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
        torch.nn.functional.linear(x, w)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(repeats):
                torch.nn.functional.linear(x, w)
            best = min(best, (time.perf_counter() - start) / repeats)
        rates[(k, n)] = 2 * rows * k * n / best / 1e9
    return rates


def token_step_rate(model, rows: int, repeats: int = 5) -> float:
    """GFLOP/s of one token per row through the whole model (no cache, logits at that token):
    a decode step's matmuls with the weights streamed from memory, as inside decoding."""
    body, head = matmul_weights(model)
    ids = torch.randint(100, 1000, (rows, 1))
    with torch.inference_mode():
        model(input_ids=ids, use_cache=False)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            best = min(best, time.perf_counter() - start)
    return 2 * (body + head) * rows / best / 1e9


def recovery_work(engine, items, body: int, head: int, peak: float) -> str:
    """The recovery probes on ``items``: wall time and matmul work per item, as a fraction of peak."""
    exemplars = load_exemplars(sorted({i.lang for i in items}))
    pairs = [(item, exemplar_for(item, exemplars)) for item in items]
    engine.stats = dict.fromkeys(engine.stats, 0)
    start = time.perf_counter()
    recover_on(engine, pairs, batch_size=engine.batch_size, seed=0)
    wall = time.perf_counter() - start
    s = engine.stats
    work = matmul_work(s, body, head)
    return (f"recovery:    {len(items)} items in {wall:.1f} s, {work / 1e9 / len(items):.1f} GFLOP an item, "
            f"~{work / wall / 1e9:.0f} GFLOP/s ({work / wall / 1e9 / peak:.1%} of peak); "
            f"{s['generated_tokens']} tokens generated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="en,fr,zh")
    parser.add_argument("--limit", type=int, default=32, help="items per language")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--step-rows", default="",
                        help="only time one token a row through the model at these row counts (e.g. 1,64,512)")
    parser.add_argument("--recovery-items", type=int, default=0,
                        help="also run the recovery probes on this many items and count their work")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_model(parse_spec("smollm2-135m"), dtype=args.dtype, device="cpu")
    if args.step_rows:
        body, head = matmul_weights(loaded.model)
        for rows in map(int, args.step_rows.split(",")):
            rate = token_step_rate(loaded.model, rows)
            print(f"one token a row, {rows:4d} rows: {2 * (body + head) / rate / 1e6:6.2f} ms a row, {rate:6.1f} GFLOP/s")
        return
    items = load_items(langs=args.langs.split(","), limit_per_lang=args.limit)
    engine = open_engine(loaded, ProbeConfig(batch_size=args.batch_size))
    probe_on(engine, items[: args.batch_size])  # warm-up: kernels, allocator
    engine.stats = dict.fromkeys(engine.stats, 0)
    start = time.perf_counter()
    probe_on(engine, items)
    total = time.perf_counter() - start
    s = engine.stats
    body, head = matmul_weights(loaded.model)
    mc_s = s["prompt_s"] + s["mc_s"]
    mc_tok = s["prompt_tokens"] + s["option_tokens"]
    peak = matmul_peak(getattr(torch, loaded.dtype))
    fp32_peak = peak if loaded.dtype == "float32" else matmul_peak(torch.float32)
    bf16_peak = matmul_peak(torch.bfloat16)
    weight_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(f"model smollm2-135m  dtype {loaded.dtype}  batch {args.batch_size}  threads {torch.get_num_threads()}  "
          f"items {len(items)} ({args.langs})")
    print(f"MC scoring:  {len(items) / mc_s:7.1f} items/s  {mc_tok / mc_s:8.0f} tok/s  "
          f"({s['prompt_tokens']} prompt + {s['option_tokens']} option tokens in {mc_s:.1f} s)")
    print(f"generation:  {len(items) / s['generate_s']:7.1f} items/s  {s['generated_tokens'] / s['generate_s']:8.0f} tok/s  "
          f"({s['generated_tokens']} tokens in {s['generate_s']:.1f} s)")
    decode_gflops = 2 * (body + head) * s["generated_tokens"] / s["generate_s"] / 1e9
    print(f"decode:      ~{decode_gflops:.1f} GFLOP/s = {decode_gflops / fp32_peak:.1%} of the {fp32_peak:.0f} GFLOP/s "
          f"float32 matmul peak (bfloat16 peak {bf16_peak:.0f} GFLOP/s, {bf16_peak / fp32_peak:.2f}x float32)")
    print(f"memory:      peak RSS {rss / 1e6:.0f} MB = {rss / weight_bytes:.1f}x the weights ({weight_bytes / 1e6:.0f} MB)")
    work = matmul_work(s, body, head)
    achieved = work / total / 1e9
    rates = linear_rates(loaded.model, args.batch_size, getattr(torch, loaded.dtype))
    print(f"matmuls:     alone at {args.batch_size} rows, of the {loaded.dtype} peak: "
          + ", ".join(f"{k}->{n} {r / peak:.0%}" for (k, n), r in rates.items())
          + f"; one token a row through the whole model {token_step_rate(loaded.model, args.batch_size) / peak:.0%}")
    print(f"overall:     {len(items) / total:7.1f} items/s  ~{achieved:.0f} GFLOP/s of a {peak:.0f} GFLOP/s "
          f"{loaded.dtype} matmul peak ({achieved / peak:.1%}); {work / 1e12:.2f} TFLOP run: "
          f"{s['forward_tokens']} tokens through the layers, {s['head_rows']} through the head")

    if args.recovery_items:
        print(recovery_work(engine, items[: args.recovery_items], body, head, peak))


if __name__ == "__main__":
    main()
