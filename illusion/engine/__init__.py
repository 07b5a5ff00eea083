"""The inference engine behind the probes: a backend protocol, its request records, and the one
backend today, Hugging Face transformers (``hf.py``, with ``scoring.py`` and ``decoding.py``).

The probes (``illusion.probes``) only build requests and read results; a second backend (vLLM,
llama.cpp) implements ``Backend`` and nothing else in the suite, the session or the report changes.

What a backend must provide (``base.Backend``):

- **Prompt rendering.** ``render(messages)`` turns a conversation into the exact prompt text:
  the tokenizer's chat template when the model has one (``prompt_format`` "auto"), or the plain
  ``Question: ...\\nAnswer:`` form. The text is what report.json records, so it must be what the
  model is given, token for token (plain prompts get the tokenizer's BOS, chat templates carry
  their own special tokens).
- **Four batched requests**, each a list in, a list of results out, in order:
  ``score_options`` (summed log-probability of each option's tokens as the prompt's
  continuation; the option follows after one space unless the prompt ends in whitespace, and
  is tokenised together with the prompt), ``greedy`` (the answer up to its first newline, EOS
  or the token limit; with gold forms, the best rank of their first tokens along the path),
  ``sample`` (Gumbel-max draws at a temperature, one seeded generator per row) and ``beam``
  (transformers' beam search, all beams returned). ``score_and_greedy`` lets a backend compute
  a shared prompt once for both; ``base.score_then_greedy`` is the plain fallback.
- **Determinism and batch independence.** The same request gives the same answer whatever else
  shares its batch, in whatever order (exactly for texts and ranks, within 1e-4 nats for
  float32 scores; tests/test_batch_invariance.py). Sampling noise depends only on each row's
  seed. Scores, ranks and argmaxes are taken on float32 logits.
- **The model as its library runs it.** Whatever a quantization integration or hook installs on
  the model must run; a backend never reads weights around it.
- **Internal state stays internal.** Batching, padding, the KV prefix cache shared by all
  prompts of a template, and timing (``stats``, read by benchmarks/probe_speed.py) are the
  backend's own business.
- **Refusal.** A model the backend cannot run correctly is refused when the backend is built,
  with an ``illusion.errors.ModelError`` (or ``ConfigError`` for an option) that names the model
  and the fix, never with a wrong answer or a traceback from deep inside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (Backend, BeamRequest, Greedy, GreedyRequest, Message, Progress, PromptFormat, SampleRequest,
                   ScoreRequest, score_then_greedy)

if TYPE_CHECKING:
    from ..models import LoadedModel

__all__ = ["Backend", "BeamRequest", "Greedy", "GreedyRequest", "Message", "Progress", "PromptFormat",
           "SampleRequest", "ScoreRequest", "open_backend", "score_then_greedy"]


def open_backend(loaded: "LoadedModel", *, prompt_format: PromptFormat = "auto", max_new_tokens: int = 24,
                 batch_size: int = 64) -> Backend:
    """The backend for a loaded model (transformers is the only one today; a second one is chosen
    here, by the kind of model it is given)."""
    from .hf import HFBackend

    return HFBackend(loaded, prompt_format=prompt_format, max_new_tokens=max_new_tokens, batch_size=batch_size)
