"""The probes on a tiny random Llama: batching, MC scoring, gold rank, recovery."""

from __future__ import annotations

import pytest
import torch

from illusion.data import Item
from illusion.engine.text import build_prompt, continuation_ids, encode_prompt
from illusion.probes import BEAMS, ProbeConfig, probe, recover
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


def naive_option_logprob(loaded, prompt: str, option: str, prompt_format: str = "chat") -> float:
    """Full forward of prompt+option with no cache: the definition MC scoring must equal."""
    tokenizer, model = loaded.tokenizer, loaded.model
    prompt_ids = encode_prompt(tokenizer, prompt, prompt_format)
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


def test_greedy_generation_is_single_line_and_rank_is_consistent(tiny_model, one_at_a_time):
    _, results = one_at_a_time
    for result in results:
        assert "\n" not in result.generation
        assert 1 <= result.gold_rank <= result.first_position_rank


def test_recovery_probes_find_a_beam_answer_and_are_seeded(tiny_model):
    from illusion.matching import tokens

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


class ScriptedBackend:
    """A backend that answers from a script, without a model: the probes need nothing but the
    ``Backend`` protocol (a vLLM or llama.cpp backend is a sibling of the HF one)."""

    prompt_format = "plain"

    def __init__(self, says: dict[str, dict[str, str]]):
        self.says = says  # probe -> prompt -> answer
        self.stats: dict = {}

    def render(self, messages):
        return " / ".join(f"{m.role}: {m.content}" for m in messages)

    def score_options(self, requests, *, progress=None):
        return [tuple(-float(i) for i in range(len(r.options))) for r in requests]  # the gold always wins

    def greedy(self, requests, *, progress=None):
        from illusion.engine import Greedy

        return [Greedy(self.says["greedy"].get(r.prompt, "no idea"), 7 if r.gold_forms else None,
                       9 if r.gold_forms else None) for r in requests]

    def score_and_greedy(self, requests, *, progress=None):
        from illusion.engine import score_then_greedy

        return score_then_greedy(self, requests, progress=progress)

    def sample(self, requests):
        return [tuple(self.says["sample"].get(r.prompt, "no idea") for _ in r.seeds) for r in requests]

    def beam(self, requests):
        return [(self.says["beam"].get(r.prompt, "no idea"),) * r.beams for r in requests]


def test_probes_run_on_any_backend_and_recovery_names_the_probe_that_brought_the_answer_back():
    from illusion.probes import probe_on, recover_on

    items = make_items(4)
    exemplar = make_items(12)[11]
    ask = {item.id: f"user: {item.question}" for item in items}
    one_shot = f"user: {exemplar.question} / assistant: {exemplar.answer} / user: {items[2].question}"
    backend = ScriptedBackend({"greedy": {ask["t00"]: f"It is {items[0].answer}.", one_shot: items[2].answer},
                               "beam": {ask["t01"]: items[1].answer}, "sample": {ask["t03"]: items[3].answer}})
    results = probe_on(backend, items)
    assert [r.prompt for r in results] == [ask[item.id] for item in items]
    assert all(r.mc_correct and (r.gold_rank, r.first_position_rank) == (7, 9) for r in results)
    assert [r.recognition_only for r in results] == [False, True, True, True]
    found = recover_on(backend, [(item, exemplar) for item in items[1:]], batch_size=8, seed=0)
    assert found == {"en-t01": ("beam",), "en-t02": ("one_shot",), "en-t03": ("sampling",)}
