"""Items + an engine -> ItemResult: the MC verdict, the generation verdict and the gold rank of
each item, and the recovery probes (beam, sampling, one-shot) that tell demoted from erased.

Each probe is an ordinary batched engine request; what an answer means (``matching.judge``) is
decided here, never in the engine.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, TypeVar

from .data import Item
from .engine import (Backend, BeamRequest, GreedyRequest, Message, Progress, PromptFormat, SampleRequest,
                     ScoreRequest, open_backend)
from .matching import judge
from .results import ItemResult

if TYPE_CHECKING:
    from .models import LoadedModel

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


def open_engine(loaded: "LoadedModel", config: ProbeConfig) -> Backend:
    """The engine that runs ``config``'s probes on a loaded model."""
    return open_backend(loaded, prompt_format=config.prompt_format, max_new_tokens=config.max_new_tokens,
                        batch_size=config.batch_size)


def probe(loaded: "LoadedModel", items: Sequence[Item], config: ProbeConfig,
          progress: Progress | None = None) -> list[ItemResult]:
    """Probe ``items`` on one model; the results are in the same order as ``items``."""
    return probe_on(open_engine(loaded, config), items, progress)


def probe_on(engine: Backend, items: Sequence[Item], progress: Progress | None = None) -> list[ItemResult]:
    """MC scores and the greedy answer of each item, from the same prompt."""
    prompts = [engine.render([Message("user", item.question)]) for item in items]
    options = [(item.answer, *item.distractors) for item in items]
    requests = [(ScoreRequest(prompt, opts), GreedyRequest(prompt, gold_forms=(item.answer, *item.aliases)))
                for item, prompt, opts in zip(items, prompts, options)]
    results = []
    for item, prompt, opts, (scores, answer) in zip(items, prompts, options,
                                                    engine.score_and_greedy(requests, progress=progress)):
        verdict = judge(answer.text, answers=(item.answer, *item.aliases), distractors=item.distractors,
                        lang=item.lang)
        results.append(ItemResult(
            lang=item.lang, id=item.id, prompt=prompt, options=opts, mc_scores=tuple(scores),
            generation=answer.text, gold_rank=answer.gold_rank, first_position_rank=answer.first_position_rank,
            matched=verdict.matched, hedged_with=verdict.hedged_with,
        ))
    return results


# ----------------------------------------------------------------------------- recovery probes

BEAMS, SAMPLES, TEMPERATURE = 4, 8, 0.7
RECOVERY_VERSION = 3  # batched probes; sampling and one-shot on the engine (stored candidate results carry it)


def one_shot_messages(exemplar: Item, question: str) -> list[Message]:
    """The item's question preceded by one solved exemplar in the same language."""
    return [Message("user", exemplar.question), Message("assistant", exemplar.answer), Message("user", question)]


def recover(loaded: "LoadedModel", pairs: Sequence[tuple[Item, Item | None]], config: ProbeConfig,
            *, seed: int, progress: Progress | None = None) -> dict[str, tuple[str, ...]]:
    """Which probes make the model say each (recognition-only) item's answer (see ``recover_on``)."""
    return recover_on(open_engine(loaded, config), pairs, batch_size=config.batch_size, seed=seed, progress=progress)


def recover_on(engine: Backend, pairs: Sequence[tuple[Item, Item | None]], *, batch_size: int, seed: int,
               progress: Progress | None = None) -> dict[str, tuple[str, ...]]:
    """Which probes make the model say each (recognition-only) item's answer.

    ``pairs`` holds (item, exemplar or None). Beam search counts any of its 4 returned beams;
    sampling counts any of 8 samples at T=0.7; one-shot is greedy after one solved exemplar.
    Each probe runs batched over a chunk of items. Sampling draws its noise from one generator
    per (item, sample), so what an item samples does not depend on which other items share its
    batch (or its xdist worker).
    """
    found: dict[str, list[str]] = {item.key: [] for item, _ in pairs}
    done = 0
    for chunk in recovery_chunks(pairs, batch_size):
        items = [item for item, _ in chunk]
        prompts = [engine.render([Message("user", item.question)]) for item in items]
        beams = engine.beam([BeamRequest(p, BEAMS) for p in prompts])
        samples = engine.sample([SampleRequest(p, tuple(row_seed(seed, item.key, k) for k in range(SAMPLES)),
                                               TEMPERATURE) for item, p in zip(items, prompts)])
        for item, beam_texts, sample_texts in zip(items, beams, samples):
            if _says(item, beam_texts):
                found[item.key].append("beam")
            if _says(item, sample_texts):
                found[item.key].append("sampling")
        shots = [(item, engine.render(one_shot_messages(ex, item.question))) for item, ex in chunk if ex]
        if shots:
            answers = engine.greedy([GreedyRequest(prompt) for _, prompt in shots])
            for (item, _), answer in zip(shots, answers):
                if _says(item, [answer.text]):
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


def row_seed(seed: int, key: str, sample: int) -> int:
    """The seed of one (item, sample) draw: the run's seed and the item, nothing else."""
    return (seed * 1_000_003 + zlib.crc32(f"{key}#{sample}".encode())) % 2**63


def _says(item: Item, texts: Sequence[str]) -> bool:
    return any(judge(t, answers=(item.answer, *item.aliases), distractors=item.distractors, lang=item.lang).correct
               for t in texts)
