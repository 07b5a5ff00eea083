"""The probe engine: MC scores, greedy generation and gold rank for a batch of items.

One prompt forward per question feeds everything: its KV cache is shared by the question's MC
options (scored as continuations) and by greedy decoding, whose first-step distribution is the
prompt's last position. Logits are computed in float32 from the final hidden states even when the
body runs in bf16: bf16 logits have ~3 significant digits, so greedy argmax and ranks would tie.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Literal, Sequence, TypeVar

from .data import Item
from .matching import judge

if TYPE_CHECKING:
    import torch

    from .models import LoadedModel

PromptFormat = Literal["auto", "chat", "plain"]
Progress = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class ProbeConfig:
    """Everything that decides a probe's numbers (it is part of every cache and snapshot key)."""

    prompt_format: PromptFormat = "auto"  # auto: the model's chat template if it has one, else plain
    max_new_tokens: int = 24  # greedy answers are short; stop earlier at newline/EOS
    batch_size: int = 64  # questions per forward; results do not depend on it

    def key(self) -> dict:
        """The fields that change numbers or verdicts (batch size does not)."""
        from .matching import NORMALIZATION_VERSION

        return {"prompt_format": self.prompt_format, "max_new_tokens": self.max_new_tokens,
                "normalization": NORMALIZATION_VERSION}


@dataclass(frozen=True)
class ItemResult:
    """One model's outcome on one item. ``options[0]`` is the gold answer."""

    lang: str
    id: str
    prompt: str  # the exact text given to the model
    options: tuple[str, ...]  # scoring order: gold, then distractors
    mc_scores: tuple[float, ...]  # summed continuation log-probabilities, aligned with options
    generation: str  # greedy output up to its first newline
    gold_rank: int  # best rank of a gold first token along the greedy path (1 = chosen)
    first_position_rank: int  # the same, at the first generated position only
    matched: str | None = None  # the gold form found in the generation
    hedged_with: tuple[str, ...] = ()  # distractors also mentioned (a hedge is not an answer)
    recovered_by: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.lang}-{self.id}"

    @property
    def mc_correct(self) -> bool:
        """The gold scores strictly highest."""
        return all(self.mc_scores[0] > other for other in self.mc_scores[1:])

    @property
    def gen_correct(self) -> bool:
        return self.matched is not None and not self.hedged_with

    @property
    def recognition_only(self) -> bool:
        """MC-correct but not generation-correct: the illusion."""
        return self.mc_correct and not self.gen_correct

    @property
    def recovery(self) -> str | None:
        """For a recognition-only item: demoted (some probe makes it say the gold) or erased."""
        if not self.recognition_only:
            return None
        return "demoted" if self.recovered_by else "erased"

    @property
    def gold_logprob(self) -> float:
        """Teacher-forced log-probability of the gold right after the prompt."""
        return self.mc_scores[0]

    @property
    def mc_margin(self) -> float:
        return self.mc_scores[0] - max(self.mc_scores[1:])


def resolve_format(tokenizer, requested: PromptFormat) -> Literal["chat", "plain"]:
    if requested == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    return requested


def build_prompt(tokenizer, question: str, fmt: Literal["chat", "plain"]) -> str:
    """The exact text both MC scoring and generation start from."""
    if fmt == "chat":
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"Question: {question}\nAnswer:"


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


def newline_mask(tokenizer, vocab_size: int) -> "torch.Tensor":
    """Bool [vocab]: tokens whose text contains a newline (generation stops there)."""
    import torch

    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for token_id in range(min(vocab_size, len(tokenizer))):
        if "\n" in tokenizer.decode([token_id]):
            mask[token_id] = True
    return mask


MC_CHUNK_ROWS = 64  # options scored per forward: larger chunks only add memory traffic on CPU


class Engine:
    """Batched probing for one loaded model; reusable across calls."""

    def __init__(self, loaded: "LoadedModel", config: ProbeConfig):
        import torch

        self.loaded = loaded
        self.config = config
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model
        self.device = torch.device(loaded.device)
        self.fmt = resolve_format(self.tokenizer, config.prompt_format)
        self.body = getattr(self.model, self.model.base_model_prefix)
        head = self.model.get_output_embeddings()
        self.head_weight = head.weight.detach().float()
        self.head_bias = None if head.bias is None else head.bias.detach().float()
        self.softcap = getattr(self.model.config, "final_logit_softcapping", None)
        self.newline_ids = set(newline_mask(self.tokenizer, self.head_weight.shape[0]).nonzero().flatten().tolist())
        self._has_text: dict[int, bool] = {}  # token id -> its text is not just whitespace
        self.stop_ids = _stop_ids(self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        # Wall time and token counts per phase, for benchmarks/probe_speed.py.
        self.stats = {"prompt_s": 0.0, "mc_s": 0.0, "generate_s": 0.0,
                      "prompt_tokens": 0, "option_tokens": 0, "generated_tokens": 0}

    def logits(self, hidden: "torch.Tensor") -> "torch.Tensor":
        """float32 logits from final hidden states."""
        import torch.nn.functional as F

        out = F.linear(hidden.float(), self.head_weight, self.head_bias)
        if self.softcap:
            out = self.softcap * (out / self.softcap).tanh()
        return out

    def run(self, items: Sequence[Item], progress: Progress | None = None) -> list[ItemResult]:
        """Probe all items in batches, shortest prompts together (less padding)."""
        prompts = [build_prompt(self.tokenizer, item.question, self.fmt) for item in items]
        encoded = [encode_prompt(self.tokenizer, p, self.fmt) for p in prompts]
        order = sorted(range(len(items)), key=lambda i: (len(encoded[i]), i))
        results: dict[int, ItemResult] = {}
        size = self.config.batch_size
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            for index, result in zip(batch, self._run_batch([items[i] for i in batch],
                                                            [prompts[i] for i in batch],
                                                            [encoded[i] for i in batch])):
                results[index] = result
            if progress:
                progress(f"{min(start + size, len(order))}/{len(order)} items")
        return [results[i] for i in range(len(items))]

    def _run_batch(self, items, prompts, encoded) -> list[ItemResult]:
        import torch

        clock = time.perf_counter
        with torch.inference_mode():
            start = clock()
            out, mask = self._prompt_forward(encoded)
            last_logits = self.logits(out.last_hidden_state[:, -1])  # [B, V]
            cache = out.cache
            options = [(item.answer, *item.distractors) for item in items]
            scored = clock()
            scores = self._score_options(items, prompts, encoded, options, last_logits, cache, mask)
            generated = clock()
            generations, ranks, firsts = self._greedy(items, last_logits, cache, mask)
        self.stats["prompt_s"] += scored - start
        self.stats["mc_s"] += generated - scored
        self.stats["generate_s"] += clock() - generated
        self.stats["prompt_tokens"] += sum(len(e) for e in encoded)
        results = []
        for i, item in enumerate(items):
            verdict = judge(generations[i], answers=(item.answer, *item.aliases),
                            distractors=item.distractors, lang=item.lang)
            results.append(ItemResult(
                lang=item.lang, id=item.id, prompt=prompts[i], options=options[i],
                mc_scores=tuple(scores[i]), generation=generations[i], gold_rank=ranks[i],
                first_position_rank=firsts[i], matched=verdict.matched, hedged_with=verdict.hedged_with,
            ))
        return results

    def _prompt_forward(self, encoded):
        """Forward the prompts with a KV cache; the template's constant prefix is computed once.

        Chat templates open every prompt with the same system turn (about half of SmolLM2's
        prompt tokens). Its keys and values are computed once per engine and copied into each
        batch; each row then holds [prefix, left padding, question]. A batch where a prompt
        does not start with the prefix (a merge across the boundary) runs in full.
        """
        import torch

        prefix = self._prefix_tokens
        shared = len(prefix) > 0 and all(e[:len(prefix)] == prefix and len(e) > len(prefix) for e in encoded)
        if not shared:
            ids, mask = _left_pad(encoded, self.pad_id, self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            return self.body(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True), mask
        ids, tail_mask = _left_pad([e[len(prefix):] for e in encoded], self.pad_id, self.device)
        mask = torch.cat([torch.ones((len(encoded), len(prefix)), dtype=tail_mask.dtype, device=self.device),
                          tail_mask], dim=1)
        positions = (mask.cumsum(-1) - 1)[:, len(prefix):].clamp(min=0)
        cache = _select_cache(self._prefix_cache, torch.zeros(len(encoded), dtype=torch.long, device=self.device))
        out = self.body(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        return out, mask

    @cached_property
    def _prefix_tokens(self) -> list[int]:
        """Tokens every prompt of this format starts with (found from two different questions),
        less the last one, which a question's first characters could merge with."""
        one, two = (encode_prompt(self.tokenizer, build_prompt(self.tokenizer, q, self.fmt), self.fmt)
                    for q in ("Who?", "What is 7?"))
        common = 0
        while common < min(len(one), len(two)) and one[common] == two[common]:
            common += 1
        return one[:max(0, common - 1)]

    @cached_property
    def _prefix_cache(self):
        import torch

        ids = torch.tensor([self._prefix_tokens], device=self.device)
        with torch.inference_mode():
            return self.body(input_ids=ids, use_cache=True).cache

    def _score_options(self, items, prompts, encoded, options, last_logits, cache, mask):
        """Summed log-probability of each option as the prompt's continuation, prompt computed once.

        Options of similar length share a chunk (little padding), and the vocabulary head runs
        only at real continuation positions, never at padding.
        """
        import torch

        pairs = [(q, opt) for q in range(len(items)) for opt in range(len(options[q]))]
        conts = [continuation_ids(self.tokenizer, prompts[q], options[q][o]) for q, o in pairs]
        first_logprobs = torch.log_softmax(last_logits, dim=-1)  # [B, V]
        scores = [[0.0] * len(opts) for opts in options]
        for p, (q, o) in enumerate(pairs):
            scores[q][o] = first_logprobs[q, conts[p][0]].item()
        by_length = sorted((p for p in range(len(pairs)) if len(conts[p]) > 1), key=lambda p: (len(conts[p]), p))
        chunk = MC_CHUNK_ROWS
        for start in range(0, len(by_length), chunk):
            part = by_length[start:start + chunk]
            rows = torch.tensor([pairs[p][0] for p in part], device=self.device)
            cont_ids, cont_mask = _right_pad([conts[p][:-1] for p in part], self.pad_id, self.device)
            full_mask = torch.cat([mask[rows], cont_mask], dim=1)
            positions = mask[rows].sum(-1, keepdim=True) + torch.arange(cont_ids.shape[1], device=self.device)
            out = self.body(input_ids=cont_ids, attention_mask=full_mask, position_ids=positions,
                            cache=_select_cache(cache, rows), use_cache=False)
            real = cont_mask.bool()  # hidden state at token t predicts token t+1 of the option
            logprobs = torch.log_softmax(self.logits(out.last_hidden_state[real]), dim=-1)  # [real positions, V]
            targets = torch.tensor([t for p in part for t in conts[p][1:]], device=self.device)
            picked = logprobs.gather(-1, targets[:, None]).squeeze(-1).tolist()
            offset = 0
            for p in part:
                q, o = pairs[p]
                n = len(conts[p]) - 1
                scores[q][o] += sum(picked[offset:offset + n])
                offset += n
        self.stats["option_tokens"] += sum(len(c) for c in conts)
        return scores

    def decode(self, items: Sequence[Item], prompts: Sequence[str], *, repeat: int = 1,
               perturb: Callable | None = None) -> list[list[str]]:
        """Answer lines of ``repeat`` decodings of each prompt, the prompt computed once.

        Greedy unless ``perturb(logits, rows)`` changes the logits of the given rows first (a
        sampler). Each row stops at its own newline/EOS and leaves the batch.
        """
        import torch

        encoded = [encode_prompt(self.tokenizer, p, self.fmt) for p in prompts]
        with torch.inference_mode():
            out, mask = self._prompt_forward(encoded)
            last = self.logits(out.last_hidden_state[:, -1])
            cache = out.cache
            if repeat > 1:
                rows = torch.arange(len(prompts), device=self.device).repeat_interleave(repeat)
                cache.batch_select_indices(rows)
                mask, last = mask[rows], last[rows]
            texts, _, _ = self._greedy([it for it in items for _ in range(repeat)], last, cache, mask,
                                       perturb=perturb, ranks=False)
        return [texts[i * repeat:(i + 1) * repeat] for i in range(len(prompts))]

    def beam_search(self, prompts: Sequence[str], beams: int) -> list[list[str]]:
        """The answer lines of all ``beams`` returned beams of each prompt.

        transformers' beam search (``generate`` with num_beams = num_return_sequences = beams,
        length penalty 1, early_stopping False, the stop tokens as EOS), step for step, on the
        engine: each prompt is computed once and its cache copied to its beams, where
        ``generate`` computes every prompt once per beam.
        """
        import torch

        dev, steps, k = self.device, self.config.max_new_tokens, beams
        encoded = [encode_prompt(self.tokenizer, p, self.fmt) for p in prompts]
        b = len(encoded)
        with torch.inference_mode():
            out, mask = self._prompt_forward(encoded)
            rows = torch.arange(b, device=dev).repeat_interleave(k)
            logits = self.logits(out.last_hidden_state[:, -1])[rows]
            cache = out.cache
            cache.batch_select_indices(rows)
            mask = mask[rows]
            vocab = logits.shape[-1]
            stops = torch.tensor(sorted(self.stop_ids), dtype=torch.long, device=dev)
            keep = max(2, 1 + len(stops)) * k  # enough candidates that k can go on after stops
            fill = self.pad_id if self.pad_id is not None else int(stops[0])
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
                out = self.body(input_ids=run_seq[:, :, step].reshape(-1, 1), attention_mask=mask,
                                position_ids=mask.sum(-1, keepdim=True) - 1, cache=cache, use_cache=True)
                logits = self.logits(out.last_hidden_state[:, -1])
        self.stats["generated_tokens"] += int(fin_len.sum())
        return [[_answer_line(self.tokenizer.decode(fin_seq[i, j, :fin_len[i, j]].tolist(), skip_special_tokens=True))
                 for j in range(k)] for i in range(b)]

    def _greedy(self, items, last_logits, cache, mask, perturb: Callable | None = None, ranks: bool = True):
        """Greedy decoding; each row stops at its own newline/EOS and leaves the batch.

        Returns the answer lines and, with ``ranks``, each row's gold rank along its path and at
        its first position (recovery probes do not need them).
        """
        import torch

        golds = pad_golds([gold_first_tokens(self.tokenizer, (it.answer, *it.aliases)) for it in items],
                          self.device) if ranks else None
        tokens: list[list[int]] = [[] for _ in items]
        best = [math.inf] * len(items)
        firsts = [0] * len(items)
        active = list(range(len(items)))
        has_text = [False] * len(items)
        logits = last_logits
        for step in range(self.config.max_new_tokens):
            chosen = (perturb(logits, active) if perturb else logits).argmax(-1)
            step_ranks = best_ranks(logits, golds).tolist() if golds is not None else None
            keep = []
            for row, (index, token) in enumerate(zip(active, chosen.tolist())):
                if step_ranks is not None:
                    best[index] = min(best[index], step_ranks[row])
                    if step == 0:
                        firsts[index] = step_ranks[row]
                tokens[index].append(token)
                text = self._token_has_text(token)
                stop = token in self.stop_ids or (token in self.newline_ids and (has_text[index] or text))
                has_text[index] = has_text[index] or text
                if not stop:
                    keep.append(row)
            if not keep or step + 1 == self.config.max_new_tokens:
                break
            rows = torch.tensor(keep, device=self.device)
            active = [active[r] for r in keep]
            golds = golds[rows] if golds is not None else None
            cache.batch_select_indices(rows)
            mask = torch.cat([mask[rows], torch.ones(len(keep), 1, dtype=mask.dtype, device=self.device)], dim=1)
            positions = mask.sum(-1, keepdim=True) - 1
            out = self.body(input_ids=chosen[rows][:, None], attention_mask=mask, position_ids=positions,
                            cache=cache, use_cache=True)
            logits = self.logits(out.last_hidden_state[:, -1])
        self.stats["generated_tokens"] += sum(len(t) for t in tokens)
        texts = [_answer_line(self.tokenizer.decode(t, skip_special_tokens=True)) for t in tokens]
        return texts, ([int(r) for r in best] if ranks else []), (firsts if ranks else [])

    def _token_has_text(self, token: int) -> bool:
        """Whether a token decodes to more than whitespace (memoised: asked per row and step)."""
        if token not in self._has_text:
            self._has_text[token] = bool(self.tokenizer.decode([token]).strip())
        return self._has_text[token]


def _answer_line(text: str) -> str:
    """The greedy answer: leading whitespace dropped, cut at the first newline."""
    return text.lstrip().split("\n", 1)[0].rstrip()


def _stop_ids(model, tokenizer) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _left_pad(seqs: Sequence[list[int]], pad: int, device):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(seq)
        mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


def _right_pad(seqs: Sequence[list[int]], pad: int, device):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def _select_cache(cache, rows):
    """A copy of the KV cache holding ``rows`` (with repeats); the original stays untouched."""
    sub = copy.copy(cache)
    sub.layers = [copy.copy(layer) for layer in cache.layers]
    sub.batch_select_indices(rows)
    return sub


def probe(loaded: "LoadedModel", items: Sequence[Item], config: ProbeConfig,
          progress: Progress | None = None) -> list[ItemResult]:
    """Probe ``items`` on one model; the results are in the same order as ``items``."""
    return Engine(loaded, config).run(items, progress)


RESULT_FIELDS = ("mc_scores", "generation", "gold_rank", "first_position_rank", "matched", "hedged_with",
                 "recovered_by")


def result_to_dict(result: ItemResult) -> dict:
    """The per-model part of a report item (DESIGN report.json contract), derived fields included."""
    from .verdict import category

    return {
        "mc_correct": result.mc_correct, "gen_correct": result.gen_correct,
        "category": category(result.mc_correct, result.gen_correct),
        "mc_scores": list(result.mc_scores), "gold_rank": result.gold_rank,
        "first_position_rank": result.first_position_rank, "gold_logprob": result.gold_logprob,
        "mc_margin": result.mc_margin, "generation": result.generation, "matched": result.matched,
        "hedged_with": list(result.hedged_with), "recovered_by": list(result.recovered_by),
        "recovery": result.recovery,
    }


def result_from_dict(data: dict, *, lang: str, id: str, prompt: str, options: Sequence[str]) -> ItemResult:
    """Inverse of result_to_dict (derived fields are recomputed, not trusted)."""
    return ItemResult(
        lang=lang, id=id, prompt=prompt, options=tuple(options), mc_scores=tuple(data["mc_scores"]),
        generation=data["generation"], gold_rank=data["gold_rank"],
        first_position_rank=data["first_position_rank"], matched=data["matched"],
        hedged_with=tuple(data["hedged_with"]), recovered_by=tuple(data["recovered_by"]),
    )


# ----------------------------------------------------------------------------- recovery probes

BEAMS, SAMPLES, TEMPERATURE = 4, 8, 0.7


def one_shot_prompt(tokenizer, exemplar: Item, question: str, fmt: str) -> str:
    """The item's prompt preceded by one solved exemplar in the same language."""
    if fmt == "chat":
        messages = [{"role": "user", "content": exemplar.question},
                    {"role": "assistant", "content": exemplar.answer},
                    {"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"Question: {exemplar.question}\nAnswer: {exemplar.answer}\n\nQuestion: {question}\nAnswer:"


RECOVERY_VERSION = 3  # batched probes; sampling and one-shot on the engine (stored candidate results carry it)


def recover(loaded: "LoadedModel", pairs: Sequence[tuple[Item, Item | None]], config: ProbeConfig,
            *, seed: int, progress: Progress | None = None) -> dict[str, tuple[str, ...]]:
    """Which probes make the model say each (recognition-only) item's answer.

    ``pairs`` holds (item, exemplar or None). Beam search counts any of its 4 returned beams;
    sampling counts any of 8 samples at T=0.7; one-shot is greedy after one solved exemplar.
    Each probe runs batched over the items. Sampling draws its noise from one generator per
    (item, sample), so what an item samples does not depend on which other items share its
    batch (or its xdist worker).
    """
    engine = Engine(loaded, config)
    fmt = engine.fmt
    found: dict[str, list[str]] = {item.key: [] for item, _ in pairs}
    done = 0
    for chunk in recovery_chunks(pairs, config.batch_size):
        items = [item for item, _ in chunk]
        prompts = [build_prompt(loaded.tokenizer, item.question, fmt) for item in items]
        beams = engine.beam_search(prompts, BEAMS)
        sampler = _GumbelSampler([_row_seed(seed, item.key, k) for item in items for k in range(SAMPLES)], TEMPERATURE)
        samples = engine.decode(items, prompts, repeat=SAMPLES, perturb=sampler.perturb)
        for item, beam_texts, sample_texts in zip(items, beams, samples):
            if _says(item, beam_texts):
                found[item.key].append("beam")
            if _says(item, sample_texts):
                found[item.key].append("sampling")
        shots = [(item, one_shot_prompt(loaded.tokenizer, ex, item.question, fmt)) for item, ex in chunk if ex]
        if shots:
            answers = engine.decode([item for item, _ in shots], [p for _, p in shots])
            for (item, _), texts in zip(shots, answers):
                if _says(item, texts):
                    found[item.key].append("one_shot")
        done += len(chunk)
        if progress:
            progress(f"recovery probes {done}/{len(pairs)}")
    return {key: tuple(hits) for key, hits in found.items()}


def recovery_chunks(items: Sequence[T], batch_size: int) -> list[list[T]]:
    """Consecutive chunks of at most batch_size // 4 items (sampling runs 8 rows per item), as
    even as possible: 33 items go 11/11/11, not 16/16/1, because a decoding step costs nearly
    as much for one item as for sixteen."""
    if not items:
        return []
    step = max(1, batch_size // 4)
    count = -(-len(items) // step)
    size, extra = divmod(len(items), count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [list(items[bounds[i]:bounds[i + 1]]) for i in range(count)]


def _says(item: Item, texts: Sequence[str]) -> bool:
    return any(judge(t, answers=(item.answer, *item.aliases), distractors=item.distractors, lang=item.lang).correct
               for t in texts)


def _row_seed(seed: int, key: str, sample: int) -> int:
    import zlib

    return (seed * 1_000_003 + zlib.crc32(f"{key}#{sample}".encode())) % 2**63


class _GumbelSampler:
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
