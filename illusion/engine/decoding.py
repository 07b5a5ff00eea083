"""Decoding on a prompt's KV cache: greedy (with the gold rank along its path), Gumbel sampling
(greedy on perturbed logits), and beam search as transformers' ``generate`` runs it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

from .scoring import Runner, best_ranks, pad_golds
from .text import answer_line

if TYPE_CHECKING:
    import torch

Perturb = Callable[["torch.Tensor", Sequence[int]], "torch.Tensor"]


def greedy(backend: Runner, last_logits: "torch.Tensor", cache, mask: "torch.Tensor", *,
           golds: Sequence[Sequence[int]] | None = None,
           perturb: Perturb | None = None) -> tuple[list[str], list[int], list[int]]:
    """Greedy decoding of a batch of prompts; each row stops at its own newline/EOS and leaves it.

    ``last_logits`` [B, V], ``cache`` and ``mask`` [B, T] come from the prompt forward; the cache
    is consumed. With ``perturb(logits, rows)`` the argmax runs on changed logits (a sampler).
    Returns the answer lines and, with ``golds`` (each row's gold first tokens), each row's best
    gold rank along its path and its rank at the first position.
    """
    import torch

    device, rows_n, max_steps = backend.device, last_logits.shape[0], backend.max_new_tokens
    gold_ids = pad_golds(golds, device) if golds is not None else None
    tokens: list[list[int]] = [[] for _ in range(rows_n)]
    best = [math.inf] * rows_n
    firsts = [0] * rows_n
    active = list(range(rows_n))
    has_text = [False] * rows_n
    logits = last_logits
    for step in range(max_steps):
        chosen = (perturb(logits, active) if perturb else logits).argmax(-1)
        step_ranks = best_ranks(logits, gold_ids).tolist() if gold_ids is not None else None
        keep = []
        for row, (index, token) in enumerate(zip(active, chosen.tolist())):
            if step_ranks is not None:
                best[index] = min(best[index], step_ranks[row])
                if step == 0:
                    firsts[index] = step_ranks[row]
            tokens[index].append(token)
            text = backend.token_has_text(token)
            stop = token in backend.stop_ids or (token in backend.newline_ids and (has_text[index] or text))
            has_text[index] = has_text[index] or text
            if not stop:
                keep.append(row)
        if not keep or step + 1 == max_steps:
            break
        if len(keep) < len(active):  # rows that stopped leave the batch, the cache and the head
            rows = torch.tensor(keep, device=device)
            active = [active[r] for r in keep]
            gold_ids = gold_ids[rows] if gold_ids is not None else None
            cache.batch_select_indices(rows)
            mask, chosen = mask[rows], chosen[rows]
        mask = torch.cat([mask, torch.ones(len(keep), 1, dtype=mask.dtype, device=device)], dim=1)
        logits, cache = backend.forward(chosen[:, None], mask=mask, positions=mask.sum(-1, keepdim=True) - 1,
                                        cache=cache)
    backend.stats["generated_tokens"] += sum(len(t) for t in tokens)
    texts = [answer_line(backend.tokenizer.decode(t, skip_special_tokens=True)) for t in tokens]
    if golds is None:
        return texts, [], []
    return texts, [int(r) for r in best], firsts


class GumbelSampler:
    """Sampling at temperature T as argmax(logits / T + Gumbel noise): an exact draw from
    softmax(logits / T), with the noise of each row from its own seeded generator."""

    def __init__(self, seeds: Sequence[int], temperature: float):
        import torch

        self.temperature = temperature
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def perturb(self, scores, rows: Sequence[int]):
        """Tempered, Gumbel-perturbed logits for the still-active ``rows`` (one draw per row)."""
        import torch

        tiny = torch.finfo(torch.float32).tiny
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=self.generators[r]) for r in rows])
        gumbel = -torch.log((-torch.log(uniform.clamp_min(tiny))).clamp_min(tiny))
        return scores.float() / self.temperature + gumbel.to(scores.device)


def beam_search(backend: Runner, last_logits: "torch.Tensor", cache, mask: "torch.Tensor",
                beams: int) -> list[list[str]]:
    """The answer lines of all ``beams`` returned beams of each prompt.

    transformers' beam search (``generate`` with num_beams = num_return_sequences = beams,
    length penalty 1, early_stopping False, the stop tokens as EOS), step for step, on the
    prompt's cache copied to its beams, where ``generate`` computes every prompt once per beam.
    ``last_logits`` [B, V], ``cache`` and ``mask`` [B, T] come from the prompt forward.
    """
    import torch

    dev, steps, k, b = backend.device, backend.max_new_tokens, beams, last_logits.shape[0]
    rows = torch.arange(b, device=dev).repeat_interleave(k)
    logits = last_logits[rows]
    cache.batch_select_indices(rows)
    mask = mask[rows]
    vocab = logits.shape[-1]
    stops = torch.tensor(sorted(backend.stop_ids), dtype=torch.long, device=dev)
    keep = max(2, 1 + len(stops)) * k  # enough candidates that k can go on after stops
    fill = backend.pad_id if backend.pad_id is not None else int(stops[0])
    # Running beams [b, k, steps] and their summed log-probabilities; finished ones with their
    # lengths and length-normalised scores.
    run_seq = torch.full((b, k, steps), fill, dtype=torch.long, device=dev)
    run_score = torch.zeros((b, k), device=dev)
    run_score[:, 1:] = -1e9  # step 0 expands the first beam only (all k are the same prompt)
    fin_seq, fin_len = run_seq.clone(), torch.zeros((b, k), dtype=torch.long, device=dev)
    fin_score = torch.full((b, k), -1e9, device=dev)
    finished = torch.zeros((b, k), dtype=torch.bool, device=dev)
    improvable = torch.ones((b, 1), dtype=torch.bool, device=dev)
    for step in range(steps):
        scores = (torch.log_softmax(logits, -1).view(b, k, vocab) + run_score[..., None]).view(b, -1)
        top_score, top_index = torch.topk(scores, keep)
        parent, token = top_index // vocab, top_index % vocab
        top_seq = run_seq.gather(1, parent[..., None].expand(-1, -1, steps)).clone()
        top_seq[:, :, step] = token
        hits = torch.isin(token, stops) | (step + 1 >= steps)
        # the k best candidates that did not stop go on
        going = top_score - hits.float() * 1e9
        nxt = torch.topk(going, k).indices
        run_seq, run_score = top_seq.gather(1, nxt[..., None].expand(-1, -1, steps)), going.gather(1, nxt)
        # candidates among the top k that stopped compete for the k finished slots
        done = hits & (torch.arange(keep, device=dev) < k)
        candidate = top_score / (step + 1) - (~improvable).float() * 1e9 - (~done).float() * 1e9
        merged = torch.cat([fin_score, candidate], 1)
        pick = torch.topk(merged, k).indices
        fin_seq = torch.cat([fin_seq, top_seq], 1).gather(1, pick[..., None].expand(-1, -1, steps))
        fin_len = torch.cat([fin_len, torch.full_like(candidate, step + 1, dtype=torch.long)], 1).gather(1, pick)
        finished = torch.cat([finished, done], 1).gather(1, pick)
        fin_score = merged.gather(1, pick)
        worst = torch.where(finished, fin_score.min(1, keepdim=True).values, -1e9)
        improvable &= (run_score[:, :1] / (step + 1) > worst).any(-1, keepdim=True)
        if not improvable.any() or hits.all():
            break
        flat = (parent.gather(1, nxt) + torch.arange(b, device=dev)[:, None] * k).view(-1)
        cache.batch_select_indices(flat)
        mask = torch.cat([mask[flat], torch.ones(b * k, 1, dtype=mask.dtype, device=dev)], dim=1)
        logits, cache = backend.forward(run_seq[:, :, step].reshape(-1, 1), mask=mask,
                                        positions=mask.sum(-1, keepdim=True) - 1, cache=cache)
    backend.stats["generated_tokens"] += int(fin_len.sum())
    decode = backend.tokenizer.decode
    return [[answer_line(decode(fin_seq[i, j, :fin_len[i, j]].tolist(), skip_special_tokens=True)) for j in range(k)]
            for i in range(b)]
