"""Reference + candidate results -> per-item categories and per-language counts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Literal, Sequence

from .probe import ItemResult

Category = Literal["both", "recognition_only", "generation_only", "neither"]
CATEGORIES: tuple[Category, ...] = ("both", "recognition_only", "generation_only", "neither")
Outcome = Literal["pass", "fail", "xfail"]


def category(mc_correct: bool, gen_correct: bool) -> Category:
    """The four cells of MC-correct x generation-correct; recognition_only is the illusion."""
    if mc_correct:
        return "both" if gen_correct else "recognition_only"
    return "generation_only" if gen_correct else "neither"


@dataclass(frozen=True)
class ItemVerdict:
    """The paired outcome of one item."""

    candidate: ItemResult
    reference: ItemResult

    @property
    def key(self) -> str:
        return self.candidate.key

    @property
    def candidate_category(self) -> Category:
        return category(self.candidate.mc_correct, self.candidate.gen_correct)

    @property
    def reference_category(self) -> Category:
        return category(self.reference.mc_correct, self.reference.gen_correct)

    @property
    def pruning_induced(self) -> bool:
        """The candidate shows the illusion where the reference does not."""
        return self.candidate_category == "recognition_only" and self.reference_category != "recognition_only"

    @property
    def outcome(self) -> Outcome:
        """fail on a candidate illusion; xfail when the reference had the same illusion already."""
        if self.candidate_category != "recognition_only":
            return "pass"
        return "xfail" if self.reference_category == "recognition_only" else "fail"


@dataclass(frozen=True)
class LanguageStats:
    """Counts for one model in one language."""

    items: int
    mc_correct: int
    gen_correct: int
    both: int
    recognition_only: int
    generation_only: int
    neither: int
    median_gold_rank: float | None
    demoted: int = 0  # recognition-only items some recovery probe brings back
    erased: int = 0  # recognition-only items no probe brings back

    @property
    def illusion_rate(self) -> float | None:
        """recognition_only / MC-correct (None when nothing is MC-correct)."""
        return self.recognition_only / self.mc_correct if self.mc_correct else None

    def as_dict(self) -> dict:
        return {
            "items": self.items, "mc_correct": self.mc_correct, "gen_correct": self.gen_correct,
            "both": self.both, "recognition_only": self.recognition_only,
            "generation_only": self.generation_only, "neither": self.neither,
            "illusion_rate": self.illusion_rate, "median_gold_rank": self.median_gold_rank,
            "demoted": self.demoted, "erased": self.erased,
        }


def language_stats(results: Sequence[ItemResult]) -> LanguageStats:
    cats = [category(r.mc_correct, r.gen_correct) for r in results]
    ranks = [r.gold_rank for r in results]
    return LanguageStats(
        items=len(results),
        mc_correct=sum(r.mc_correct for r in results),
        gen_correct=sum(r.gen_correct for r in results),
        median_gold_rank=statistics.median(ranks) if ranks else None,
        demoted=sum(r.recovery == "demoted" for r in results),
        erased=sum(r.recovery == "erased" for r in results),
        **{name: cats.count(name) for name in CATEGORIES},
    )


@dataclass(frozen=True)
class LanguageVerdict:
    """Reference and candidate counts for one language, plus the paired count."""

    lang: str
    reference: LanguageStats
    candidate: LanguageStats
    pruning_induced: int


def pair(candidate: Sequence[ItemResult], reference: Sequence[ItemResult]) -> list[ItemVerdict]:
    """Pair results by item key; both sides must cover the same items."""
    by_key = {r.key: r for r in reference}
    missing = [c.key for c in candidate if c.key not in by_key]
    if missing:
        raise ValueError(f"reference results missing for {missing[:5]}")
    return [ItemVerdict(candidate=c, reference=by_key[c.key]) for c in candidate]


def by_language(verdicts: Sequence[ItemVerdict]) -> dict[str, LanguageVerdict]:
    """Per-language verdicts, in first-seen language order."""
    groups: dict[str, list[ItemVerdict]] = {}
    for verdict in verdicts:
        groups.setdefault(verdict.candidate.lang, []).append(verdict)
    return {
        lang: LanguageVerdict(
            lang=lang,
            reference=language_stats([v.reference for v in group]),
            candidate=language_stats([v.candidate for v in group]),
            pruning_induced=sum(v.pruning_induced for v in group),
        )
        for lang, group in groups.items()
    }
