"""Padding token lists into batches, and copying a KV cache's rows."""

from __future__ import annotations

import copy
import functools
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



def reserve_cache(cache, extra: int) -> None:
    """Give every layer of a (prompt) KV cache room for ``extra`` more positions, in place.

    Decoding then writes each step's keys and values into that room instead of concatenating
    (``DynamicLayer.update`` copies the whole cache once per step and layer: at batch 64 about
    half as many bytes per step as the weights). Attention reads a view of the filled
    positions: the same values in the same shape as before. Only plain ``DynamicLayer``s grow
    (a sliding-window layer keeps its own update).
    """
    from transformers.cache_utils import DynamicLayer

    cache.layers = [_grown(layer, extra) if type(layer) is DynamicLayer and layer.is_initialized else layer
                    for layer in cache.layers]


def _grown(layer, extra: int):
    import torch

    grown = copy.copy(layer)
    grown.__class__ = growing_layer_class()
    batch, heads, length, dim = layer.keys.shape
    grown.key_room = torch.empty((batch, heads, length + extra, dim), dtype=layer.keys.dtype, device=layer.keys.device)
    grown.value_room = torch.empty((batch, heads, length + extra, layer.values.shape[-1]), dtype=layer.values.dtype,
                                   device=layer.values.device)
    grown.key_room[:, :, :length] = layer.keys
    grown.value_room[:, :, :length] = layer.values
    grown.filled = length
    grown.show_filled()
    return grown


@functools.cache
def growing_layer_class() -> type:
    """The ``DynamicLayer`` subclass ``reserve_cache`` gives a cache (built on first use:
    transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """``keys``/``values`` are views of preallocated room (``key_room``/``value_room``,
        of which ``filled`` positions are used)."""

        def update(self, key_states, value_states, *args, **kwargs):
            end = self.filled + key_states.shape[-2]
            if end > self.key_room.shape[-2]:  # out of room: concatenate as before
                self.keys, self.values = self.keys.contiguous(), self.values.contiguous()
                self.__class__ = DynamicLayer
                return DynamicLayer.update(self, key_states, value_states, *args, **kwargs)
            self.key_room[:, :, self.filled:end] = key_states
            self.value_room[:, :, self.filled:end] = value_states
            self.filled = end
            self.show_filled()
            return self.keys, self.values

        def batch_select_indices(self, indices):
            self.key_room, self.value_room = self.key_room[indices], self.value_room[indices]
            self.show_filled()

        def show_filled(self):
            self.keys = self.key_room[:, :, :self.filled]
            self.values = self.value_room[:, :, :self.filled]

    return GrowingLayer
