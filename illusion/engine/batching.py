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


def rows_view(cache, rows):
    """The KV cache's ``rows`` (with repeats) for one forward that keeps nothing: each layer
    gathers its rows only when it attends, joins the new tokens' keys and values to them, and
    drops them after, so no layer holds a copy while another computes. ``select_cache`` holds all
    layers' copies at once and then what the forward appends to them (MC option chunks would
    double the batch's cache). The original stays untouched; layers of any other kind than a
    plain ``DynamicLayer`` (sliding windows, linear attention, quantized) get ``select_cache``'s copy.
    """
    sub = copy.copy(cache)
    sub.layers = [_layer_rows_view(layer, rows) for layer in cache.layers]
    return sub


def _layer_rows_view(layer, rows):
    import torch
    from transformers.cache_utils import DynamicLayer

    view = copy.copy(layer)
    if type(layer) is not DynamicLayer or not layer.is_initialized:
        view.batch_select_indices(rows)
        return view

    def update(key_states, value_states, *args, **kwargs):
        return (torch.cat([layer.keys[rows], key_states], dim=-2),
                torch.cat([layer.values[rows], value_states], dim=-2))

    view.update = update
    return view
