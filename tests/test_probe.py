"""The probe engine on a tiny random Llama: batching, MC scoring, gold rank."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from illusion.data import Item
from illusion.probe import (ProbeConfig, best_ranks, build_prompt, continuation_ids, encode_prompt, pad_golds,
                            probe, token_rank)
from tiny import WORDS


def make_items(n: int, lang: str = "en") -> list[Item]:
    # Questions of different lengths so batches need real padding.
    return [Item(id=f"t{i:02d}", lang=lang, question=f"What is the {' '.join(WORDS[i:i + 1 + i % 4])}?",
                 answer=WORDS[i], aliases=(WORDS[i + 20],), distractors=tuple(WORDS[i + 1:i + 4]), type="entity")
            for i in range(n)]


@pytest.fixture(scope="module")
def one_at_a_time(tiny_model):
    items = make_items(9)
    return items, probe(tiny_model, items, ProbeConfig(batch_size=1))


@pytest.mark.parametrize("batch_size", [2, 4, 16])
def test_results_do_not_depend_on_batch_size(tiny_model, one_at_a_time, batch_size):
    items, single = one_at_a_time
    batched = probe(tiny_model, items, ProbeConfig(batch_size=batch_size))
    for one, many in zip(single, batched):
        assert one.key == many.key
        assert many.mc_scores == pytest.approx(one.mc_scores, abs=1e-4)
        assert many.generation == one.generation
        assert (many.gold_rank, many.first_position_rank) == (one.gold_rank, one.first_position_rank)


def naive_option_logprob(loaded, prompt: str, option: str) -> float:
    """Full forward of prompt+option with no cache: the definition MC scoring must equal."""
    tokenizer, model = loaded.tokenizer, loaded.model
    prompt_ids = encode_prompt(tokenizer, prompt, "chat")
    cont = continuation_ids(tokenizer, prompt, option)
    ids = torch.tensor([prompt_ids + cont])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(logprobs[len(prompt_ids) - 1 + k, tok].item() for k, tok in enumerate(cont))


def test_mc_scores_equal_naive_one_option_at_a_time(tiny_model):
    items = make_items(5)
    results = probe(tiny_model, items, ProbeConfig(batch_size=3))
    for item, result in zip(items, results):
        naive = [naive_option_logprob(tiny_model, result.prompt, opt) for opt in (item.answer, *item.distractors)]
        assert result.mc_scores == pytest.approx(naive, abs=1e-4)
        assert result.options == (item.answer, *item.distractors)
        assert result.gold_logprob == result.mc_scores[0]


def test_prompt_uses_chat_template_and_prompt_is_prefix_of_continuation(tiny_model):
    tokenizer = tiny_model.tokenizer
    prompt = build_prompt(tokenizer, "What is the river?", "chat")
    assert prompt.startswith("<|im_start|>user\nWhat is the river?") and prompt.endswith("assistant\n")
    cont = continuation_ids(tokenizer, prompt, "mountain")
    assert tokenizer.decode(cont) == "mountain"
    plain = build_prompt(tokenizer, "What is the river?", "plain")
    assert plain == "Question: What is the river?\nAnswer:"
    assert tokenizer.decode(continuation_ids(tokenizer, plain, "mountain")) == " mountain"


def test_greedy_generation_is_single_line_and_rank_is_consistent(tiny_model, one_at_a_time):
    _, results = one_at_a_time
    for result in results:
        assert "\n" not in result.generation
        assert 1 <= result.gold_rank <= result.first_position_rank


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


def test_recovery_probes_find_a_beam_answer_and_are_seeded(tiny_model):
    from illusion.matching import tokens
    from illusion.probe import BEAMS, encode_prompt, recover

    tokenizer, model = tiny_model.tokenizer, tiny_model.model
    question = "What is the old river?"
    prompt = build_prompt(tokenizer, question, "chat")
    ids = torch.tensor([encode_prompt(tokenizer, prompt, "chat")])
    beams = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=BEAMS, do_sample=False,
                           num_return_sequences=BEAMS, max_new_tokens=24, pad_token_id=tokenizer.pad_token_id)
    beam_text = tokenizer.decode(beams[0, ids.shape[1]:], skip_special_tokens=True).lstrip().split("\n")[0]
    word = next(t for t in tokens(beam_text, "en") if t.isalpha())  # a word the first beam says
    said = Item(id="said", lang="en", question=question, answer=word, aliases=(),
                distractors=("zqxj", "qzxv", "xvqz"), type="entity")
    unsaid = Item(id="unsaid", lang="en", question=question, answer="zqzqzq", aliases=(),
                  distractors=("xvxv", "jqjq", "vzvz"), type="entity")
    exemplar = Item(id="x1", lang="en", question="What is the stone?", answer="stone", aliases=(),
                    distractors=("paper", "bread", "cloud"), type="entity")
    found = recover(tiny_model, [(said, exemplar), (unsaid, None)], ProbeConfig(), seed=0)
    assert "beam" in found["en-said"]
    assert found["en-unsaid"] == ()  # a string the model cannot produce: erased
    alone = recover(tiny_model, [(said, exemplar)], ProbeConfig(), seed=0)
    assert alone["en-said"] == found["en-said"]  # per-item seeds: other items do not matter
    small = recover(tiny_model, [(unsaid, None), (said, exemplar)], ProbeConfig(batch_size=2), seed=0)
    assert small == found  # batch size and order do not matter either


def test_gumbel_sampler_draws_from_the_tempered_softmax_with_per_row_noise():
    from illusion.probe import _GumbelSampler

    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    rows = 4000
    picks = _GumbelSampler(range(rows), 0.7).perturb(logits.expand(rows, 4), range(rows)).argmax(-1)
    frequencies = torch.bincount(picks, minlength=4).float() / rows
    assert torch.allclose(frequencies, torch.softmax(logits / 0.7, -1), atol=0.03)
    # A row's noise depends on its own seed only, not on the rows beside it.
    alone = _GumbelSampler([7], 0.7).perturb(logits[None], [0])
    among = _GumbelSampler([3, 7, 9], 0.7).perturb(logits.expand(3, 4), [0, 1, 2])[1]
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
    from illusion.probe import BEAMS, Engine, _answer_line, encode_prompt

    tokenizer, model = tiny_model.tokenizer, tiny_model.model
    engine = Engine(tiny_model, ProbeConfig())
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
        expected.append([_answer_line(tokenizer.decode(row, skip_special_tokens=True)) for row in new])
        ended += sum(bool(set(row[:-1].tolist()) & engine.stop_ids) for row in new)  # a stop before the end
    assert engine.beam_search(prompts, BEAMS) == expected
    assert 4 <= ended < 4 * len(prompts)  # some returned beams ended early, some ran to the limit
