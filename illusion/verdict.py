"""Reference + candidate results -> per-item categories, per-language counts and gates."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Sequence

from .errors import ConfigError
from .results import CATEGORIES, Category, ItemResult, category

Outcome = Literal["pass", "fail", "xfail"]
RecoveryScope = Literal["induced", "all", "off"]
RECOVERY_SCOPES: tuple[RecoveryScope, ...] = ("induced", "all", "off")


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


def needs_recovery(scope: RecoveryScope, verdict: ItemVerdict) -> bool:
    """Whether the recovery probes run on an item's candidate under ``--illusion-recovery``.

    ``induced`` probes exactly the items whose consistency test fails (pruning-induced illusions:
    is what pruning broke demoted or erased?); a pre-existing illusion xfails whatever the probes
    find. ``all`` probes every recognition-only item (the paper's analysis); ``off`` none.
    """
    if not verdict.candidate.recognition_only or scope == "off":
        return False
    return scope == "all" or verdict.pruning_induced


def check_recovery_scope(scope: str) -> RecoveryScope:
    """A ``--illusion-recovery`` value, or a ConfigError that names the choices."""
    if scope not in RECOVERY_SCOPES:
        raise ConfigError(f"--illusion-recovery {scope!r}: choose induced (the failing items), all "
                          "(every recognition-only item) or off")
    return scope  # type: ignore[return-value]


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
    not_probed: int = 0  # recognition-only items the recovery scope left out (--illusion-recovery)

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
            "demoted": self.demoted, "erased": self.erased, "not_probed": self.not_probed,
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
        not_probed=sum(r.recovery == "not_probed" for r in results),
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


# ----------------------------------------------------------------------------- per-language gate

Z_95 = 1.959963984540054  # standard normal quantile at 0.975: a two-sided 95% interval


class GateOptionError(ConfigError, ValueError):
    """A gate option (alpha, illusion budget) is out of range; the message names the option and range.

    It is a ConfigError, so the plugin reports it cleanly, and a ValueError, as bad numbers are.
    """


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value on the discordant pairs.

    p = min(1, 2 * P(Binomial(n, 1/2) >= k)) with n = lost + gained, k = max(lost, gained).
    The tail is summed in exact integers (one Fraction, rounded once at the end), so large n
    neither underflows nor drifts outside [0, 1].
    """
    if lost < 0 or gained < 0:
        raise ValueError(f"mcnemar_exact(lost={lost}, gained={gained}): counts must be >= 0")
    n, k = lost + gained, max(lost, gained)
    if n == 0:
        return 1.0
    tail, term = 0, math.comb(n, k)
    for i in range(k, n + 1):  # C(n, i+1) = C(n, i) * (n - i) / (i + 1), exact
        tail += term
        term = term * (n - i) // (i + 1)
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (stays inside [0, 1], sane at k = 0 or n).

    The ends are pinned at k == 0 and k == n, where the formula is exactly 0 or 1 but rounding
    could land a hair inside and exclude the point estimate.
    """
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval(k={k}, n={n}): need 0 <= k <= n")
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class LanguageGate:
    """The per-language gate: paired McNemar on generation among candidate-MC-correct items,
    plus an optional budget on the candidate's illusion rate."""

    lang: str
    pairs: int  # items the candidate gets MC-correct (the paired sample)
    lost: int  # among them: reference generation-correct, candidate generation-wrong
    gained: int  # among them: reference generation-wrong, candidate generation-correct
    p_value: float  # two-sided exact McNemar on (lost, gained)
    alpha: float
    recognition_only: int  # candidate recognition-only items (all are MC-correct)
    interval: tuple[float, float]  # 95% Wilson interval of the illusion rate
    max_illusion_rate: float | None  # budget on the point estimate; None = no budget

    @property
    def mc_correct(self) -> int:
        """The candidate's MC-correct items: the paired sample, and the illusion rate's denominator."""
        return self.pairs

    @property
    def illusion_rate(self) -> float | None:
        """recognition_only / mc_correct; None when nothing is MC-correct."""
        return self.recognition_only / self.pairs if self.pairs else None

    @property
    def significant_loss(self) -> bool:
        """The candidate says significantly fewer answers it still recognises (a gain never fails)."""
        return self.p_value < self.alpha and self.lost > self.gained

    @property
    def over_budget(self) -> bool:
        if self.max_illusion_rate is None or self.illusion_rate is None:
            return False
        return self.illusion_rate > self.max_illusion_rate

    @property
    def passed(self) -> bool:
        return not (self.significant_loss or self.over_budget)

    def as_dict(self) -> dict:
        return {
            "pairs": self.pairs, "lost": self.lost, "gained": self.gained, "p_value": self.p_value,
            "alpha": self.alpha, "recognition_only": self.recognition_only, "mc_correct": self.mc_correct,
            "illusion_rate": self.illusion_rate, "interval": list(self.interval),
            "max_illusion_rate": self.max_illusion_rate, "passed": self.passed,
        }

    def message(self) -> str:
        """A headline saying which condition failed, then one line per condition."""
        failed = [reason for reason, hit in (("significant generation loss", self.significant_loss),
                                             ("illusion rate over budget", self.over_budget)) if hit]
        headline = f"[{self.lang}] " + ("FAILED: " + "; ".join(failed) if failed else "passed")
        return "\n".join([headline, "  " + self._mcnemar_line(), "  " + self._rate_line()])

    def _mcnemar_line(self) -> str:
        counts = (f"generation lost on {self.lost} of {self.pairs} items the candidate still gets "
                  f"MC-correct (gained on {self.gained}): exact McNemar p = {self.p_value:.3g}")
        if self.p_value >= self.alpha:
            return f"{counts} >= alpha {self.alpha:g}: no significant loss"
        if self.lost > self.gained:
            return f"{counts} < alpha {self.alpha:g}: significant loss"
        return f"{counts} < alpha {self.alpha:g}, but the candidate gained more than it lost: no loss"

    def _rate_line(self) -> str:
        if self.illusion_rate is None:
            return "illusion rate n/a: the candidate gets no item MC-correct"
        low, high = self.interval
        rate = (f"illusion rate {self.illusion_rate:.2f} ({self.recognition_only}/{self.mc_correct}), "
                f"95% Wilson interval [{low:.2f}, {high:.2f}]")
        if self.max_illusion_rate is None:
            return f"{rate}; no budget set (--illusion-max-illusion-rate)"
        verdict = "exceeded" if self.over_budget else "respected"
        return f"{rate}; budget {self.max_illusion_rate:.2f} {verdict}"


def check_gate_options(alpha: float, max_illusion_rate: float | None) -> None:
    if not 0 < alpha < 1:  # also rejects NaN
        raise GateOptionError(f"--illusion-alpha={alpha!r} must be strictly between 0 and 1; "
                              "use e.g. 0.05 (the default)")
    if max_illusion_rate is not None and not 0 <= max_illusion_rate <= 1:
        raise GateOptionError(f"--illusion-max-illusion-rate={max_illusion_rate!r} must be between 0 "
                              "and 1 (a fraction of MC-correct items, e.g. 0.3); omit it for no budget")


def language_gate(lang: str, verdicts: Sequence[ItemVerdict], *, alpha: float = 0.05,
                  max_illusion_rate: float | None = None) -> LanguageGate:
    """Gate one language: verdicts of other languages are ignored, so all verdicts may be passed.

    Only items the candidate still gets MC-correct are paired: the question is whether the
    candidate lost the ability to *say* answers it still *recognises*, relative to the reference.
    """
    check_gate_options(alpha, max_illusion_rate)
    paired = [v for v in verdicts if v.candidate.lang == lang and v.candidate.mc_correct]
    lost = sum(v.reference.gen_correct and not v.candidate.gen_correct for v in paired)
    gained = sum(v.candidate.gen_correct and not v.reference.gen_correct for v in paired)
    illusions = sum(not v.candidate.gen_correct for v in paired)  # MC-correct, generation-wrong
    return LanguageGate(
        lang=lang, pairs=len(paired), lost=lost, gained=gained, p_value=mcnemar_exact(lost, gained),
        alpha=alpha, recognition_only=illusions,
        interval=wilson_interval(illusions, len(paired)), max_illusion_rate=max_illusion_rate,
    )
