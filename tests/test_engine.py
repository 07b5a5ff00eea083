"""The Hugging Face engine on a tiny random Llama: prompts and continuations, token ranks, the
Gumbel sampler and beam search against transformers' own ``generate``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from illusion.engine import BeamRequest
from illusion.engine.decoding import GumbelSampler
from illusion.engine.hf import HFBackend
from illusion.engine.scoring import best_ranks, pad_golds, token_rank
from illusion.engine.text import answer_line, build_prompt, continuation_ids, encode_prompt
from illusion.probes import BEAMS
from tiny import WORDS

def test_prompt_uses_chat_template_and_prompt_is_prefix_of_continuation(tiny_model):
    tokenizer = tiny_model.tokenizer
    prompt = build_prompt(tokenizer, "What is the river?", "chat")
    assert prompt.startswith("<|im_start|>user\nWhat is the river?") and prompt.endswith("assistant\n")
    cont = continuation_ids(tokenizer, prompt, "mountain")
    assert tokenizer.decode(cont) == "mountain"
    plain = build_prompt(tokenizer, "What is the river?", "plain")
    assert plain == "Question: What is the river?\nAnswer:"
    assert tokenizer.decode(continuation_ids(tokenizer, plain, "mountain")) == " mountain"


def test_gold_rank_on_hand_built_step_scores():
    # vocab of 6; gold first tokens {2, 4}
    steps = [torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0]),   # token 2 is 3rd, token 4 is 5th
             torch.tensor([0.0, 1.0, 2.0, 9.0, 8.0, 7.0]),   # token 4 is 2nd
             torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])]   # all tied: ties go to the lower id, token 2 is 3rd
    ranks = best_ranks(torch.stack(steps), pad_golds([[2, 4]] * 3)).tolist()
    assert ranks == [3, 2, 3]
    assert (min(ranks), ranks[0]) == (2, 3)  # gold rank along the path, and at its first position
    assert best_ranks(torch.tensor([[0.0, 0.0, 7.0]]), pad_golds([[2]])).tolist() == [1]


@given(st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=2, max_size=40), st.data())
def test_rank_one_means_greedy_picks_that_token(values, data):
    logits = torch.tensor(values)
    token = data.draw(st.integers(0, len(values) - 1))
    rank = token_rank(logits, token)
    assert (rank == 1) == (int(logits.argmax()) == token)
    assert rank == 1 + sorted(range(len(values)), key=lambda i: (-values[i], i)).index(token)


def test_gumbel_sampler_draws_from_the_tempered_softmax_with_per_row_noise():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    rows = 4000
    picks = GumbelSampler(range(rows), 0.7).perturb(logits.expand(rows, 4), range(rows)).argmax(-1)
    frequencies = torch.bincount(picks, minlength=4).float() / rows
    assert torch.allclose(frequencies, torch.softmax(logits / 0.7, -1), atol=0.03)
    # A row's noise depends on its own seed only, not on the rows beside it.
    alone = GumbelSampler([7], 0.7).perturb(logits[None], [0])
    among = GumbelSampler([3, 7, 9], 0.7).perturb(logits.expand(3, 4), [0, 1, 2])[1]
    assert torch.equal(alone[0], among)


@given(st.lists(st.lists(st.integers(-3, 3), min_size=6, max_size=6), min_size=1, max_size=5), st.data())
def test_best_ranks_of_a_batch_equal_the_best_token_rank_row_by_row(rows, data):
    """Small integer logits make ties common: the batched ranks must break them like token_rank."""
    logits = torch.tensor(rows, dtype=torch.float32)
    golds = [data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=4, unique=True)) for _ in rows]
    assert best_ranks(logits, pad_golds(golds)).tolist() == [min(token_rank(logits[i], t) for t in g)
                                                             for i, g in enumerate(golds)]


def test_engine_beam_search_returns_the_beams_of_generate(tiny_model):
    """The engine's beam search is transformers' algorithm on a shared prompt cache: the same
    four beams as ``generate``, prompt by prompt. One token in eleven is made a stop token,
    so beams end at all lengths, which exercises the finished-beam bookkeeping and the early stop."""
    tokenizer, model = tiny_model.tokenizer, tiny_model.model
    engine = HFBackend(tiny_model)
    questions = ["What is the old river?", "Quel est le nom de la vieille ville ?", "river stone?",
                 "What is the name of the old city, the one by the river with the stone bridge?", "Who?"]
    prompts = [build_prompt(tokenizer, q, "chat") for q in questions]
    engine.stop_ids = set(engine.stop_ids) | set(range(5, len(tokenizer), 11))
    expected, ended = [], 0
    for prompt in prompts:
        ids = torch.tensor([encode_prompt(tokenizer, prompt, "chat")])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=BEAMS, do_sample=False,
                             num_return_sequences=BEAMS, max_new_tokens=24, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=sorted(engine.stop_ids))
        new = out[:, ids.shape[1]:]
        expected.append([answer_line(tokenizer.decode(row, skip_special_tokens=True)) for row in new])
        ended += sum(bool(set(row[:-1].tolist()) & engine.stop_ids) for row in new)  # a stop before the end
    assert [list(texts) for texts in engine.beam([BeamRequest(p, BEAMS) for p in prompts])] == expected
    assert 4 <= ended < 4 * len(prompts)  # some returned beams ended early, some ran to the limit


class WeightsOnlyInsideForward:
    """A model as quantization integrations and accelerate's offload leave it: at rest its weights
    are not the ones it runs with (here: negated); a forward pre-hook on the top-level module puts
    the real ones in and a forward hook takes them out again, as compressed-tensors' decompression
    and accelerate's offload hooks do. It also records the shape of every logits tensor returned."""

    def __init__(self, model):
        self.params = list(model.parameters())
        self.logit_shapes: list[tuple[int, ...]] = []
        self._flip()
        model.register_forward_pre_hook(lambda module, args: self._flip())
        model.register_forward_hook(self._after)

    def _flip(self) -> None:
        for param in self.params:
            param.data.neg_()

    def _after(self, module, args, output) -> None:
        self.logit_shapes.append(tuple(output.logits.shape))
        self._flip()


def test_engine_runs_the_models_own_forward_with_its_hooks(tiny_dir):
    """Scores equal plain ``model(...)`` and greedy answers equal ``model.generate(...)`` on a model
    whose top-level hooks change its weights; the engine asks only for the logits it uses."""
    from illusion.models import load_model, parse_spec
    from illusion.probes import ProbeConfig, probe
    from test_probes import make_items, naive_option_logprob

    loaded = load_model(parse_spec(str(tiny_dir)), dtype="float32", device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    hooks = WeightsOnlyInsideForward(model)
    items = make_items(6)
    results = probe(loaded, items, ProbeConfig(batch_size=4))

    prompt_ids = torch.tensor([encode_prompt(tokenizer, results[0].prompt, "chat")])
    with torch.no_grad():  # the hooks matter: the inner model with the head's resting weights is another model
        bypass = torch.nn.functional.linear(model.model(prompt_ids).last_hidden_state, model.lm_head.weight)
        assert not torch.allclose(bypass, model(prompt_ids).logits, atol=1e-3)
    stops = sorted(HFBackend(loaded).stop_ids)
    for item, result in zip(items, results):
        naive = [naive_option_logprob(loaded, result.prompt, option) for option in result.options]
        assert result.mc_scores == pytest.approx(naive, abs=1e-4)
        ids = torch.tensor([encode_prompt(tokenizer, result.prompt, "chat")])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
        assert result.generation == answer_line(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    hooks.logit_shapes.clear()
    probe(loaded, items, ProbeConfig(batch_size=4))
    last_only = [shape for shape in hooks.logit_shapes if len(shape) == 3]
    assert last_only and all(shape[1] == 1 for shape in last_only)  # prompts and decoding steps: 1 position
    assert any(len(shape) == 2 for shape in hooks.logit_shapes)  # MC continuations: their real positions only


def test_backend_refuses_a_model_without_a_language_modelling_head(tiny_model):
    from transformers import LlamaModel

    from illusion.errors import ModelError
    from illusion.models import LoadedModel

    body = LoadedModel(spec=tiny_model.spec, model=LlamaModel(tiny_model.model.config), tokenizer=tiny_model.tokenizer,
                       fingerprint="x", dtype="float32", device="cpu")
    with pytest.raises(ModelError, match="not a causal language model.*ForCausalLM"):
        HFBackend(body)


def test_score_then_greedy_equals_the_shared_prompt_path(tiny_model):
    """The plain fallback a backend without prompt sharing uses gives what the HF backend's shared path gives."""
    from illusion.engine import GreedyRequest, ScoreRequest, score_then_greedy

    backend = HFBackend(tiny_model, batch_size=3)
    prompts = [build_prompt(tiny_model.tokenizer, f"What is the {word}?", "chat") for word in WORDS[:5]]
    requests = [(ScoreRequest(p, (WORDS[i], WORDS[i + 1], WORDS[i + 2])), GreedyRequest(p, (WORDS[i],)))
                for i, p in enumerate(prompts)]
    shared = backend.score_and_greedy(requests)
    assert score_then_greedy(backend, requests) == shared
    assert all(answer.gold_rank >= 1 and len(scores) == 3 for scores, answer in shared)


def test_a_call_mixing_decoding_settings_is_refused_before_any_work(tiny_model):
    from illusion.engine import SampleRequest

    backend = HFBackend(tiny_model)
    with pytest.raises(ValueError, match=r"sample\(\): requests of one call must share temperature"):
        backend.sample([SampleRequest("a", (1,), 0.7), SampleRequest("b", (2,), 1.0)])
    with pytest.raises(ValueError, match=r"beam\(\): requests of one call must share beams"):
        backend.beam([BeamRequest("a", 4), BeamRequest("b", 2)])
    assert backend.stats["prompt_tokens"] == 0


@given(st.lists(st.integers(1, 30), max_size=60), st.integers(1, 8), st.integers(1, 50))
def test_option_chunks_cover_every_option_once_within_both_limits(lengths, max_rows, max_positions):
    from illusion.engine.scoring import option_chunks

    chunks = option_chunks(lengths, max_rows, max_positions)
    assert [i for chunk in chunks for i in chunk] == list(range(len(lengths)))  # in order, each once
    for chunk in chunks:
        assert 1 <= len(chunk) <= max_rows
        assert len(chunk) == 1 or sum(lengths[i] for i in chunk) <= max_positions  # only a too-long option is alone
    for chunk, following in zip(chunks, chunks[1:]):  # a chunk ends only where the next option does not fit
        assert len(chunk) == max_rows or sum(lengths[i] for i in chunk) + lengths[following[0]] > max_positions


def mc_chunks(backend) -> list[tuple[int, int]]:
    """Spy on a backend's MC chunk forwards: (logit positions, rows) of each, in order."""
    seen, forward = [], backend.forward

    def spy(ids, *, keep=1, **kwargs):
        logits, cache = forward(ids, keep=keep, **kwargs)
        if isinstance(keep, torch.Tensor):  # an MC chunk asks for logits at its real positions only
            seen.append((logits.shape[0], ids.shape[0]))
        return logits, cache

    backend.forward = spy
    return seen


def test_mc_logits_stay_under_the_byte_bound_whatever_the_vocabulary(tiny_model, monkeypatch):
    """With the logits bound set to five positions of the vocabulary, no MC forward asks for more
    logits than that (unless one option alone is longer), and the scores stay those of the
    unbounded chunks (within the batch tolerance)."""
    from illusion.engine import ScoreRequest
    from illusion.engine import scoring

    prompts = [build_prompt(tiny_model.tokenizer, f"What is the {word}?", "chat") for word in WORDS[:6]]
    requests = [ScoreRequest(p, (" ".join(WORDS[i:i + 4]), WORDS[i + 1], " ".join(WORDS[i:i + 7]), WORDS[i + 3]))
                for i, p in enumerate(prompts)]
    unbounded_backend = HFBackend(tiny_model)
    unbounded_chunks = mc_chunks(unbounded_backend)
    unbounded = unbounded_backend.score_options(requests)
    monkeypatch.setattr(scoring, "MC_LOGITS_BYTES", 5 * 4 * len(tiny_model.tokenizer))
    backend = HFBackend(tiny_model)
    chunks = mc_chunks(backend)
    bounded = backend.score_options(requests)
    assert max(positions for positions, _ in unbounded_chunks) > 5  # the bound has something to split
    assert all(positions <= 5 or rows == 1 for positions, rows in chunks)
    assert sum(p for p, _ in chunks) == sum(p for p, _ in unbounded_chunks)  # every option position scored once
    for a, b in zip(unbounded, bounded, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_work_counters_equal_what_the_model_ran(tiny_model):
    """``forward_tokens`` and ``head_rows`` (the benchmarks' FLOP count) are the tokens the model's
    forwards took in and the logit rows they gave out, the shared chat prefix run once apart."""
    backend = HFBackend(tiny_model, batch_size=3)
    seen = {"tokens": 0, "rows": 0}

    def count(module, args, kwargs, output):
        seen["tokens"] += kwargs["input_ids"].numel()
        seen["rows"] += output.logits.numel() // output.logits.shape[-1]

    backend._prefix_cache  # computed once per backend, before counting starts
    before = (backend.stats["forward_tokens"], backend.stats["head_rows"])
    handle = tiny_model.model.register_forward_hook(count, with_kwargs=True)
    try:
        prompts = [build_prompt(tiny_model.tokenizer, f"What is the {word}?", "chat") for word in WORDS[:5]]
        from illusion.engine import GreedyRequest, ScoreRequest

        backend.score_and_greedy([(ScoreRequest(p, (WORDS[i], WORDS[i + 1] * 3)), GreedyRequest(p, (WORDS[i],)))
                                  for i, p in enumerate(prompts)])
    finally:
        handle.remove()
    assert seen["tokens"] > 0 and seen["rows"] > 0
    counted = (backend.stats["forward_tokens"] - before[0], backend.stats["head_rows"] - before[1])
    assert counted == (seen["tokens"], seen["rows"])


def test_rows_view_gives_the_copied_rows_forward_and_keeps_nothing(tiny_model):
    """MC options read their prompts' cache through ``rows_view``: the same logits, bit for bit,
    as through a full copy of the rows, with the original cache and the view left as they were."""
    from illusion.engine.batching import left_pad, rows_view, select_cache

    backend = HFBackend(tiny_model)
    prompts = [encode_prompt(tiny_model.tokenizer, build_prompt(tiny_model.tokenizer, f"What is the {w}?", "chat"),
                             "chat") for w in WORDS[:3]]
    ids, mask = left_pad(prompts, backend.pad_id, backend.device)
    with torch.inference_mode():
        _, cache = backend.forward(ids, mask=mask, positions=(mask.cumsum(-1) - 1).clamp(min=0))
        before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
        rows = torch.tensor([2, 0, 0, 1, 2])  # repeats, out of order: four options' prompts
        cont = torch.randint(5, 50, (len(rows), 3))
        full_mask = torch.cat([mask[rows], torch.ones_like(cont)], dim=1)
        positions = mask[rows].sum(-1, keepdim=True) + torch.arange(3)
        view = rows_view(cache, rows)
        outputs = [backend.forward(cont, mask=full_mask, positions=positions, cache=c, keep=torch.ones_like(cont).bool(),
                                   use_cache=False)[0] for c in (select_cache(cache, rows), view)]
    assert torch.equal(outputs[0], outputs[1])
    for layer, (keys, values), seen in zip(cache.layers, before, view.layers):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
        assert seen.keys is layer.keys  # the view appended nothing and copied nothing


@given(st.integers(1, 150), st.integers(2, 40), st.data())
def test_target_logprobs_equal_one_log_softmax_bit_for_bit(rows, vocab, data):
    from illusion.engine.scoring import target_logprobs

    seed = data.draw(st.integers(0, 2**31 - 1))
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 10
    targets = torch.tensor(data.draw(st.lists(st.integers(0, vocab - 1), min_size=rows, max_size=rows)))
    whole = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    assert torch.equal(target_logprobs(logits, targets), whole)
