"""The Hugging Face transformers backend: prompts encoded, batched and forwarded once, through
the model's own top-level forward, with a KV cache shared by MC scoring and decoding.

One prompt forward per question feeds everything: its KV cache is shared by the question's MC
options (scored as continuations) and by greedy decoding, whose first step is the prompt's last
position. Every forward is the model's own ``model(...)`` with ``logits_to_keep``, so what a
quantization integration or accelerate installs on the model (decompression, offload hooks, a
quantized ``lm_head``, logit soft-capping) runs as in ``generate``, and logits exist only where
they are used. Logits are upcast to float32 before any softmax, rank or argmax.
"""

from __future__ import annotations

import inspect
import time
from functools import cached_property, wraps
from typing import TYPE_CHECKING, Sequence

from ..errors import ModelError
from . import decoding, scoring
from .base import (BeamRequest, Greedy, GreedyRequest, Message, Progress, PromptFormat, SampleRequest,
                   ScoreRequest)
from .batching import left_pad, select_cache
from .text import (build_prompt, encode_prompt, gold_first_tokens, newline_mask, render_messages, resolve_format,
                   stop_ids)

if TYPE_CHECKING:
    import torch

    from ..models import LoadedModel


def _inference(method):
    """Run ``method`` under ``torch.inference_mode`` (no autograd bookkeeping in any tensor op)."""

    @wraps(method)
    def wrapper(*args, **kwargs):
        import torch

        with torch.inference_mode():
            return method(*args, **kwargs)

    return wrapper


class HFBackend:
    """Batched inference on one loaded transformers causal LM; reusable across calls.

    ``batch_size`` prompts share a forward; results do not depend on it (in float32).
    """

    def __init__(self, loaded: "LoadedModel", *, prompt_format: PromptFormat = "auto", max_new_tokens: int = 24,
                 batch_size: int = 64):
        import torch

        check_runnable(loaded)
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = torch.device(loaded.device)
        self.prompt_format = resolve_format(self.tokenizer, prompt_format)
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.newline_ids = set(newline_mask(self.tokenizer, vocab_size(self.model)).nonzero().flatten().tolist())
        self.stop_ids = stop_ids(self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        self._has_text: dict[int, bool] = {}  # token id -> its text is not just whitespace
        # Ask the model for logits only where they are used (a forward without the argument gives all).
        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        # Wall time and token counts per phase, for benchmarks/probe_speed.py. The work actually run
        # is counted apart: ``forward_tokens`` went through the layers (padding included, the shared
        # prompt prefix not), ``head_rows`` through the vocabulary head.
        self.stats = {"prompt_s": 0.0, "mc_s": 0.0, "generate_s": 0.0,
                      "prompt_tokens": 0, "option_tokens": 0, "generated_tokens": 0,
                      "forward_tokens": 0, "head_rows": 0}

    # ------------------------------------------------------------------ the Backend protocol

    def render(self, messages: Sequence[Message]) -> str:
        return render_messages(self.tokenizer, messages, self.prompt_format)

    @_inference
    def score_options(self, requests: Sequence[ScoreRequest], *,
                      progress: Progress | None = None) -> list[tuple[float, ...]]:
        return [scores for scores, _ in self._probe(requests, None, progress)]

    @_inference
    def greedy(self, requests: Sequence[GreedyRequest], *, progress: Progress | None = None) -> list[Greedy]:
        """Shortest prompts batched together when gold ranks are asked (the main probe); in the
        given order otherwise (one-shot prompts, as the recovery probes chunk them)."""
        if any(r.gold_forms for r in requests):
            return [answer for _, answer in self._probe(None, requests, progress)]
        out: list[Greedy] = []
        for batch, last, cache, mask in self._forwarded_batches(requests):
            texts, _, _ = self._timed("generate_s", decoding.greedy, self, last, cache, mask)
            out += [Greedy(text) for text in texts]
        return out

    @_inference
    def score_and_greedy(self, requests: Sequence[tuple[ScoreRequest, GreedyRequest]], *,
                         progress: Progress | None = None) -> list[tuple[tuple[float, ...], Greedy]]:
        return self._probe([s for s, _ in requests], [g for _, g in requests], progress)

    @_inference
    def sample(self, requests: Sequence[SampleRequest]) -> list[tuple[str, ...]]:
        """Each prompt computed once, its cache copied to its samples."""
        import torch

        temperature = _one_value("sample", "temperature", [r.temperature for r in requests])
        out: list[tuple[str, ...]] = []
        for batch, last, cache, mask in self._forwarded_batches(requests):
            counts = [len(r.seeds) for r in batch]
            rows = torch.repeat_interleave(torch.arange(len(batch), device=self.device),
                                           torch.tensor(counts, device=self.device))
            cache.batch_select_indices(rows)
            sampler = decoding.GumbelSampler([s for r in batch for s in r.seeds], temperature)
            texts, _, _ = self._timed("generate_s", decoding.greedy, self, last[rows], cache, mask[rows],
                                      perturb=sampler.perturb)
            bounds = [sum(counts[:i]) for i in range(len(counts) + 1)]
            out += [tuple(texts[bounds[i]:bounds[i + 1]]) for i in range(len(batch))]
        return out

    @_inference
    def beam(self, requests: Sequence[BeamRequest]) -> list[tuple[str, ...]]:
        width = _one_value("beam", "beams", [r.beams for r in requests])
        out: list[tuple[str, ...]] = []
        for batch, last, cache, mask in self._forwarded_batches(requests):
            beams = self._timed("generate_s", decoding.beam_search, self, last, cache, mask, width)
            out += [tuple(texts) for texts in beams]
        return out

    # ------------------------------------------------------------------ forward and prompt cache

    @_inference
    def forward(self, ids: "torch.Tensor", *, mask: "torch.Tensor | None" = None,
                positions: "torch.Tensor | None" = None, cache=None, keep: "int | torch.Tensor" = 1,
                use_cache: bool = True):
        """The model's own top-level forward: float32 logits where ``keep`` says, and the KV cache.

        ``keep=1``: the last position's logits, [B, V]. ``keep`` a bool [B, T] mask: the logits at
        its True positions, [N, V], in row-major order. Going through ``model(...)`` runs the hooks
        that quantization integrations and accelerate install on the top-level module (weight
        decompression, offload), the model's own ``lm_head`` (quantized or not) and its logit
        soft-capping, as ``generate`` does. The logits come in the model's dtype and are upcast
        here: in bf16 they carry bf16's ~3 significant digits, as they do in ``generate``.
        """
        kwargs = {"logits_to_keep": keep} if self._keeps_logits else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                         use_cache=use_cache, **kwargs)
        logits = out.logits
        if isinstance(keep, int):
            logits = logits[:, -1]
        elif logits.dim() == 3:  # a forward without logits_to_keep returns every position
            logits = logits[keep]
        self.stats["forward_tokens"] += ids.numel()
        self.stats["head_rows"] += out.logits.numel() // out.logits.shape[-1]
        return logits.float(), out.cache

    def _encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [encode_prompt(self.tokenizer, p, self.prompt_format) for p in prompts]

    def _prompt_forward(self, encoded: Sequence[list[int]]):
        """Forward the prompts' tokens with a KV cache; the template's constant prefix is computed once.

        Returns the last-position logits [B, V], the cache and the attention mask [B, T]. Chat
        templates open every prompt with the same system turn (about half of SmolLM2's prompt
        tokens). Its keys and values are computed once per backend and copied into each batch;
        each row then holds [prefix, left padding, question]. A batch where a prompt does not
        start with the prefix (a merge across the boundary) runs in full.
        """
        import torch

        self.stats["prompt_tokens"] += sum(len(e) for e in encoded)
        start = time.perf_counter()
        prefix = self._prefix_tokens
        shared = len(prefix) > 0 and all(e[:len(prefix)] == prefix and len(e) > len(prefix) for e in encoded)
        if not shared:
            ids, mask = left_pad(encoded, self.pad_id, self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            last, cache = self.forward(ids, mask=mask, positions=positions)
        else:
            ids, tail_mask = left_pad([e[len(prefix):] for e in encoded], self.pad_id, self.device)
            mask = torch.cat([torch.ones((len(encoded), len(prefix)), dtype=tail_mask.dtype, device=self.device),
                              tail_mask], dim=1)
            positions = (mask.cumsum(-1) - 1)[:, len(prefix):].clamp(min=0)
            rows = torch.zeros(len(encoded), dtype=torch.long, device=self.device)
            last, cache = self.forward(ids, mask=mask, positions=positions, cache=select_cache(self._prefix_cache, rows))
        self.stats["prompt_s"] += time.perf_counter() - start
        return last, cache, mask

    @cached_property
    def _prefix_tokens(self) -> list[int]:
        """Tokens every prompt of this format starts with (found from two different questions),
        less the last one, which a question's first characters could merge with."""
        one, two = (encode_prompt(self.tokenizer, build_prompt(self.tokenizer, q, self.prompt_format),
                                  self.prompt_format) for q in ("Who?", "What is 7?"))
        common = 0
        while common < min(len(one), len(two)) and one[common] == two[common]:
            common += 1
        return one[:max(0, common - 1)]

    @cached_property
    @_inference
    def _prefix_cache(self):
        import torch

        return self.forward(torch.tensor([self._prefix_tokens], device=self.device))[1]

    # ------------------------------------------------------------------ helpers

    def _probe(self, scores: Sequence[ScoreRequest] | None, greedies: Sequence[GreedyRequest] | None,
               progress: Progress | None) -> list[tuple[tuple[float, ...], Greedy]]:
        """Score options and/or decode greedily from one prompt forward per request, shortest
        prompts batched together (less padding); results in request order."""
        requests = scores if scores is not None else greedies
        prompts = [r.prompt for r in requests]
        if scores is not None and greedies is not None and [g.prompt for g in greedies] != prompts:
            raise ValueError("score_and_greedy(): each pair must share its prompt")
        encoded = self._encode(prompts)
        order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))
        results: dict[int, tuple[tuple[float, ...], Greedy]] = {}
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            last, cache, mask = self._prompt_forward([encoded[i] for i in batch])
            option_scores = [()] * len(batch)
            if scores is not None:
                option_scores = self._timed("mc_s", scoring.score_options, self, [prompts[i] for i in batch],
                                            [scores[i].options for i in batch], last, cache, mask)
            answers = [Greedy("")] * len(batch)
            if greedies is not None:
                golds = [gold_first_tokens(self.tokenizer, greedies[i].gold_forms) for i in batch]
                texts, best, firsts = self._timed("generate_s", decoding.greedy, self, last, cache, mask, golds=golds)
                answers = [Greedy(t, b, f) for t, b, f in zip(texts, best, firsts)]
            for index, option, answer in zip(batch, option_scores, answers):
                results[index] = (tuple(option), answer)
            if progress:
                progress(f"{min(start + self.batch_size, len(order))}/{len(order)} items")
        return [results[i] for i in range(len(prompts))]

    def _forwarded_batches(self, requests: Sequence):
        """The requests in batches, in the given order, each with its prompts' forward:
        (batch, last-position logits, KV cache, attention mask)."""
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start:start + self.batch_size]
            yield (batch, *self._prompt_forward(self._encode([r.prompt for r in batch])))

    def _timed(self, phase: str, function, *args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.stats[phase] += time.perf_counter() - start

    def token_has_text(self, token: int) -> bool:
        """Whether a token decodes to more than whitespace (memoised: asked per row and step)."""
        if token not in self._has_text:
            self._has_text[token] = bool(self.tokenizer.decode([token]).strip())
        return self._has_text[token]


def _one_value(method: str, field: str, values: Sequence):
    """The value all requests of a call share (a batch decodes with one setting)."""
    distinct = sorted(set(values))
    if len(distinct) > 1:
        raise ValueError(f"{method}(): requests of one call must share {field}, got {distinct}; "
                         f"call {method}() once per {field}")
    return distinct[0] if distinct else None


def vocab_size(model) -> int:
    """The width of the model's logits (read from the head's shape, which a quantized head keeps)."""
    head = model.get_output_embeddings()
    width = getattr(head, "out_features", None) or getattr(getattr(head, "weight", None), "shape", [None])[0]
    return int(width or model.config.get_text_config().vocab_size)


def check_runnable(loaded: "LoadedModel") -> None:
    """Refuse, with the fix, a model this backend cannot run as a causal language model."""
    model = loaded.model
    if not (callable(getattr(model, "can_generate", None)) and model.can_generate()
            and model.get_output_embeddings() is not None):
        raise ModelError(f"model {loaded.spec.raw!r}: {type(model).__name__} is not a causal language model with "
                         "a language-modelling head; the Hugging Face backend needs a checkpoint that "
                         "AutoModelForCausalLM loads (a *ForCausalLM architecture)")
