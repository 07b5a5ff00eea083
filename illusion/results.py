"""One model's outcome on one item (``ItemResult``), its category and its report.json form.

It sits below both the probes that make results and the verdicts that pair them, so neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

Category = Literal["both", "recognition_only", "generation_only", "neither"]
CATEGORIES: tuple[Category, ...] = ("both", "recognition_only", "generation_only", "neither")


def category(mc_correct: bool, gen_correct: bool) -> Category:
    """The four cells of MC-correct x generation-correct; recognition_only is the illusion."""
    if mc_correct:
        return "both" if gen_correct else "recognition_only"
    return "generation_only" if gen_correct else "neither"


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
    # The recovery probes that made the model say the gold: () when none did (or the item is not
    # recognition-only); None when the probes did not run on this recognition-only item, because
    # --illusion-recovery leaves it out (``induced``: a pre-existing illusion; ``off``: every item).
    recovered_by: tuple[str, ...] | None = field(default=())

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
        """For a recognition-only item: demoted (some probe makes it say the gold), erased (none
        does), or not_probed (the recovery scope left it out)."""
        if not self.recognition_only:
            return None
        if self.recovered_by is None:
            return "not_probed"
        return "demoted" if self.recovered_by else "erased"

    @property
    def gold_logprob(self) -> float:
        """Teacher-forced log-probability of the gold right after the prompt."""
        return self.mc_scores[0]

    @property
    def mc_margin(self) -> float:
        return self.mc_scores[0] - max(self.mc_scores[1:])


RESULT_FIELDS = ("mc_scores", "generation", "gold_rank", "first_position_rank", "matched", "hedged_with",
                 "recovered_by")


def result_to_dict(result: ItemResult) -> dict:
    """The per-model part of a report item (DESIGN report.json contract), derived fields included."""
    return {
        "mc_correct": result.mc_correct, "gen_correct": result.gen_correct,
        "category": category(result.mc_correct, result.gen_correct),
        "mc_scores": list(result.mc_scores), "gold_rank": result.gold_rank,
        "first_position_rank": result.first_position_rank, "gold_logprob": result.gold_logprob,
        "mc_margin": result.mc_margin, "generation": result.generation, "matched": result.matched,
        "hedged_with": list(result.hedged_with), "recovered_by": None if result.recovered_by is None else list(result.recovered_by),
        "recovery": result.recovery,
    }


def result_from_dict(data: dict, *, lang: str, id: str, prompt: str, options: Sequence[str]) -> ItemResult:
    """Inverse of result_to_dict (derived fields are recomputed, not trusted)."""
    return ItemResult(
        lang=lang, id=id, prompt=prompt, options=tuple(options), mc_scores=tuple(data["mc_scores"]),
        generation=data["generation"], gold_rank=data["gold_rank"],
        first_position_rank=data["first_position_rank"], matched=data["matched"],
        hedged_with=tuple(data["hedged_with"]), recovered_by=None if data["recovered_by"] is None else tuple(data["recovered_by"]),
    )
