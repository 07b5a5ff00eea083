"""MC option scoring on a shared prompt cache, and token ranks (the gold rank's arithmetic)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol, Sequence

from .batching import right_pad, rows_view
from .text import continuation_ids

if TYPE_CHECKING:
    import torch

MC_CHUNK_ROWS = 64  # options scored per forward: larger chunks only add memory traffic on CPU
# A chunk's float32 logits at its real positions stay under this whatever the vocabulary: 1365
# positions of SmolLM2's 49k vocabulary, which its 64 options never reach, but 256 of a 262k one
# (Gemma), where 64 options of 40 tokens would take 2.7 GB.
MC_LOGITS_BYTES = 256 * 2**20
LOG_SOFTMAX_ROWS = 64  # positions log-softmaxed at a time (each row is its own softmax: the same numbers)


class Runner(Protocol):
    """What scoring and decoding use of the backend that runs them (``hf.HFBackend``)."""

    device: "torch.device"
    tokenizer: object
    pad_id: int | None
    stop_ids: set[int]
    newline_ids: set[int]
    max_new_tokens: int
    stats: dict

    def forward(self, ids: "torch.Tensor", *, mask: "torch.Tensor | None" = None,
                positions: "torch.Tensor | None" = None, cache=None, keep: "int | torch.Tensor" = 1,
                use_cache: bool = True) -> tuple["torch.Tensor", object]: ...

    def token_has_text(self, token: int) -> bool: ...


def score_options(backend: Runner, prompts: Sequence[str], options: Sequence[Sequence[str]],
                  last_logits: "torch.Tensor", cache, mask: "torch.Tensor") -> list[list[float]]:
    """Summed log-probability of each option as its prompt's continuation, each prompt computed once.

    ``last_logits`` [B, V] are the prompts' last-position logits, ``cache`` and ``mask`` [B, T]
    their KV cache and attention mask (left-padded). An option's first token is scored from
    ``last_logits``; the rest run as continuations of the cache. Options of similar length share
    a chunk (little padding), and logits are asked for only at real continuation positions.
    """
    import torch

    device = backend.device
    pairs = [(q, opt) for q in range(len(prompts)) for opt in range(len(options[q]))]
    conts = [continuation_ids(backend.tokenizer, prompts[q], options[q][o]) for q, o in pairs]
    first_logprobs = torch.log_softmax(last_logits, dim=-1)  # [B, V]
    scores = [[0.0] * len(opts) for opts in options]
    for p, (q, o) in enumerate(pairs):
        scores[q][o] = first_logprobs[q, conts[p][0]].item()
    by_length = sorted((p for p in range(len(pairs)) if len(conts[p]) > 1), key=lambda p: (len(conts[p]), p))
    max_positions = max(1, MC_LOGITS_BYTES // (4 * last_logits.shape[-1]))
    for chunk in option_chunks([len(conts[p]) - 1 for p in by_length], MC_CHUNK_ROWS, max_positions):
        part = [by_length[i] for i in chunk]
        rows = torch.tensor([pairs[p][0] for p in part], device=device)
        cont_ids, cont_mask = right_pad([conts[p][:-1] for p in part], backend.pad_id, device)
        full_mask = torch.cat([mask[rows], cont_mask], dim=1)
        positions = mask[rows].sum(-1, keepdim=True) + torch.arange(cont_ids.shape[1], device=device)
        real = cont_mask.bool()  # the logits at token t predict token t+1 of the option
        logits, _ = backend.forward(cont_ids, mask=full_mask, positions=positions, cache=rows_view(cache, rows),
                                    keep=real, use_cache=False)  # [real positions, V]
        targets = torch.tensor([t for p in part for t in conts[p][1:]], device=device)
        picked = target_logprobs(logits, targets).tolist()
        offset = 0
        for p in part:
            q, o = pairs[p]
            n = len(conts[p]) - 1
            scores[q][o] += sum(picked[offset:offset + n])
            offset += n
    backend.stats["option_tokens"] += sum(len(c) for c in conts)
    return scores


def target_logprobs(logits: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
    """``log_softmax(logits)[i, targets[i]]`` for each row, a few rows at a time, so that no
    second [rows, V] tensor is ever whole beside the logits."""
    import torch

    return torch.cat([torch.log_softmax(part, dim=-1).gather(-1, wanted[:, None]).squeeze(-1)
                      for part, wanted in zip(logits.split(LOG_SOFTMAX_ROWS), targets.split(LOG_SOFTMAX_ROWS))])


def option_chunks(lengths: Sequence[int], max_rows: int, max_positions: int) -> list[range]:
    """Consecutive chunks of at most ``max_rows`` options whose ``lengths`` (scored positions)
    sum to at most ``max_positions``; an option longer than that alone is a chunk of its own."""
    chunks, start, total = [], 0, 0
    for index, length in enumerate(lengths):
        if index > start and (index - start == max_rows or total + length > max_positions):
            chunks.append(range(start, index))
            start, total = index, 0
        total += length
    if start < len(lengths):
        chunks.append(range(start, len(lengths)))
    return chunks


def token_rank(logits: "torch.Tensor", token: int) -> int:
    """1-based rank of ``token`` in a 1-D logit vector, ties broken like argmax (lower id first)."""
    value = logits[token]
    ahead = (logits > value).sum() + (logits[:token] == value).sum()
    return int(ahead) + 1


def best_ranks(logits: "torch.Tensor", golds: "torch.Tensor") -> "torch.Tensor":
    """Each row's best ``token_rank`` among its gold first tokens, for all rows at once:
    ``logits`` [rows, vocab], ``golds`` [rows, k] holding each row's gold first tokens, padded with -1.

    The best rank among a row's golds is the rank of its best gold (highest logit, then lowest
    id), so one comparison pass over the vocabulary per row suffices.
    """
    import torch

    vocab = logits.shape[1]
    ids = golds.clamp(min=0)
    values = logits.gather(1, ids).masked_fill(golds < 0, -math.inf)
    top = values.max(-1, keepdim=True).values
    top_id = ids.masked_fill((values != top) | (golds < 0), vocab).min(-1, keepdim=True).values
    ahead = (logits > top).sum(-1)
    ties = ((logits == top) & (torch.arange(vocab, device=logits.device) < top_id)).sum(-1)  # lower id first
    return ahead + ties + 1


def pad_golds(golds: Sequence[Sequence[int]], device=None) -> "torch.Tensor":
    """Lists of gold first tokens as one [rows, k] tensor, padded with -1 (for ``best_ranks``)."""
    import torch

    width = max(1, max((len(g) for g in golds), default=1))
    return torch.tensor([list(g) + [-1] * (width - len(g)) for g in golds], dtype=torch.long, device=device)
