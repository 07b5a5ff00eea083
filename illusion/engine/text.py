"""Prompts and tokens for a Hugging Face tokenizer: the exact text a model sees, and the token
ids the scoring and decoding need (continuations, gold first tokens, stop and newline tokens)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

from .base import Message, PromptFormat

if TYPE_CHECKING:
    import torch


def resolve_format(tokenizer, requested: PromptFormat) -> Literal["chat", "plain"]:
    """auto: the model's chat template if it has one, else plain."""
    if requested == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    return requested


def render_messages(tokenizer, messages: Sequence[Message], fmt: Literal["chat", "plain"]) -> str:
    """A conversation ending with a user turn, as the prompt text that asks for the next answer.

    Plain format: ``Question: ...\\nAnswer:`` per user turn, `` answer\\n\\n`` per assistant turn.
    """
    if fmt == "chat":
        turns = [{"role": m.role, "content": m.content} for m in messages]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return "".join(f"Question: {m.content}\nAnswer:" if m.role == "user" else f" {m.content}\n\n"
                   for m in messages)


def build_prompt(tokenizer, question: str, fmt: Literal["chat", "plain"]) -> str:
    """The exact text both MC scoring and generation start from."""
    return render_messages(tokenizer, [Message("user", question)], fmt)


def encode_prompt(tokenizer, prompt: str, fmt: str) -> list[int]:
    """Chat templates already carry their special tokens; plain prompts get the usual BOS."""
    return tokenizer(prompt, add_special_tokens=fmt == "plain")["input_ids"]


def continuation_ids(tokenizer, prompt: str, option: str) -> list[int]:
    """Token ids of ``option`` as the continuation of ``prompt``.

    The option follows the prompt after one space unless the prompt ends in whitespace. We encode
    prompt+option together (so BPE merges match what the model would see) and check, as nanochat
    does, that the prompt's tokens are a prefix; where a merge crosses the boundary we fall back to
    encoding the continuation alone.
    """
    text = option if prompt[-1:].isspace() else " " + option
    bare = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + text, add_special_tokens=False)["input_ids"]
    if full[: len(bare)] == bare and len(full) > len(bare):
        return full[len(bare) :]
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def gold_first_tokens(tokenizer, forms: Sequence[str]) -> list[int]:
    """First token of each gold form, with and without a leading space."""
    ids: set[int] = set()
    for form in forms:
        for text in (form, " " + form):
            encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
            if encoded:
                ids.add(encoded[0])
    return sorted(ids)


def newline_mask(tokenizer, vocab_size: int) -> "torch.Tensor":
    """Bool [vocab]: tokens whose text contains a newline (generation stops there)."""
    import torch

    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for token_id in range(min(vocab_size, len(tokenizer))):
        if "\n" in tokenizer.decode([token_id]):
            mask[token_id] = True
    return mask


def stop_ids(model, tokenizer) -> set[int]:
    """End-of-sequence tokens of the generation config and of the tokenizer."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def answer_line(text: str) -> str:
    """The answer: leading whitespace dropped, cut at the first newline."""
    return text.lstrip().split("\n", 1)[0].rstrip()
