"""The engine's beam search against transformers' ``generate`` on the same prompts: same beams?
how fast?

    python benchmarks/beam_search.py [--model smollm2-135m] [--items 48] [--threads 2]

Both run the recovery probe's beam search (4 beams, all returned, the engine's stop tokens as
EOS, 24 new tokens) in chunks of 16 prompts, left-padded for ``generate``. It prints the items
whose answer lines differ (there should be none) and the two wall times.
"""

from __future__ import annotations

import argparse
import time

import torch

from illusion.models import load_model, parse_spec
from illusion.engine import BeamRequest
from illusion.engine.batching import left_pad
from illusion.engine.hf import HFBackend
from illusion.engine.text import answer_line, build_prompt, encode_prompt
from illusion.probes import BEAMS
from illusion.sources import load_items


def generate_beams(loaded, engine: HFBackend, prompts: list[str]) -> list[list[str]]:
    tokenizer = loaded.tokenizer
    ids, mask = left_pad([encode_prompt(tokenizer, p, engine.prompt_format) for p in prompts], tokenizer.pad_token_id,
                         loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=engine.max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(engine.stop_ids),
                                    num_beams=BEAMS, num_return_sequences=BEAMS, do_sample=False)
    texts = [answer_line(tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True)) for row in out]
    return [texts[i * BEAMS:(i + 1) * BEAMS] for i in range(len(prompts))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a model spec (a pruned checkpoint dir works)")
    parser.add_argument("--items", type=int, default=48, help="items, every third of the demo's 240")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    items = load_items(langs=["en", "de", "fr", "es", "zh", "ru"], limit_per_lang=40)[::3][:args.items]
    loaded = load_model(parse_spec(args.model), dtype="float32", device="cpu")
    engine = HFBackend(loaded)
    differ, t_generate, t_engine = 0, 0.0, 0.0
    for start in range(0, len(items), 16):
        chunk = items[start:start + 16]
        prompts = [build_prompt(loaded.tokenizer, it.question, engine.prompt_format) for it in chunk]
        clock = time.perf_counter()
        expected = generate_beams(loaded, engine, prompts)
        t_generate += time.perf_counter() - clock
        clock = time.perf_counter()
        got = [list(texts) for texts in engine.beam([BeamRequest(p, BEAMS) for p in prompts])]
        t_engine += time.perf_counter() - clock
        for item, one, two in zip(chunk, expected, got):
            if one != two:
                differ += 1
                print(f"DIFFERS {item.key}: generate {one!r} engine {two!r}")
    print(f"model {args.model}  threads {args.threads}  items {len(items)}  beams {BEAMS}")
    print(f"answer lines differing: {differ} of {len(items)} items")
    print(f"generate {t_generate:.1f} s   engine {t_engine:.1f} s   ({t_generate / t_engine:.2f}x)")


if __name__ == "__main__":
    main()
