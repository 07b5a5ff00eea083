"""Padding token lists into batches, and copying a KV cache's rows."""

from __future__ import annotations

import copy
from typing import Sequence


def left_pad(seqs: Sequence[list[int]], pad: int, device):
    """ids and attention mask [rows, width], padded on the left (prompts: their ends align)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(seq)
        mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


def right_pad(seqs: Sequence[list[int]], pad: int, device):
    """ids and attention mask [rows, width], padded on the right (continuations: their starts align)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def select_cache(cache, rows):
    """A copy of the KV cache holding ``rows`` (with repeats); the original stays untouched."""
    sub = copy.copy(cache)
    sub.layers = [copy.copy(layer) for layer in cache.layers]
    sub.batch_select_indices(rows)
    return sub


