"""Categories, outcomes and per-language counts (pure logic, Hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from illusion.results import ItemResult
from illusion.verdict import CATEGORIES, ItemVerdict, by_language, category, language_stats, pair


def result(key: str, mc: bool, gen: bool, rank: int = 1) -> ItemResult:
    lang, id_ = key.split("-", 1)
    return ItemResult(lang=lang, id=id_, prompt="p", options=("gold", "a", "b", "c"),
                      mc_scores=(-1.0, -2.0, -3.0, -4.0) if mc else (-5.0, -2.0, -3.0, -4.0),
                      generation="gold" if gen else "x", gold_rank=rank, first_position_rank=rank,
                      matched="gold" if gen else None)


def test_categories_and_outcomes():
    assert category(True, False) == "recognition_only"
    assert category(True, True) == "both" and category(False, True) == "generation_only"
    assert category(False, False) == "neither"
    illusion, fine = result("en-1", True, False), result("en-1", True, True)
    assert ItemVerdict(candidate=illusion, reference=fine).outcome == "fail"
    assert ItemVerdict(candidate=illusion, reference=fine).pruning_induced
    assert ItemVerdict(candidate=illusion, reference=illusion).outcome == "xfail"
    assert ItemVerdict(candidate=fine, reference=illusion).outcome == "pass"


def test_mc_correct_needs_a_strictly_highest_gold():
    tie = ItemResult(lang="en", id="1", prompt="p", options=("g", "a", "b"), mc_scores=(-1.0, -1.0, -3.0),
                     generation="", gold_rank=1, first_position_rank=1)
    assert not tie.mc_correct and tie.mc_margin == 0.0


flags = st.tuples(st.booleans(), st.booleans(), st.integers(1, 1000))


@given(st.lists(st.tuples(st.sampled_from(["en", "fr"]), flags, flags), min_size=1, max_size=60))
def test_language_counts_partition_items(rows):
    cand = [result(f"{lang}-{n}", *c) for n, (lang, c, _) in enumerate(rows)]
    ref = [result(f"{lang}-{n}", *r) for n, (lang, _, r) in enumerate(rows)]
    langs = by_language(pair(cand, ref))
    assert sum(lv.candidate.items for lv in langs.values()) == len(rows)
    for lang, lv in langs.items():
        stats = lv.candidate
        assert sum(getattr(stats, name) for name in CATEGORIES) == stats.items
        assert stats.demoted + stats.erased == stats.recognition_only
        assert stats.mc_correct == stats.both + stats.recognition_only
        assert stats.gen_correct == stats.both + stats.generation_only
        if stats.mc_correct:
            assert 0 <= stats.illusion_rate <= 1
        expected = sum(1 for n, (l, c, r) in enumerate(rows) if l == lang and c[0] and not c[1]
                       and not (r[0] and not r[1]))
        assert lv.pruning_induced == expected


def test_median_rank_and_empty_illusion_rate():
    stats = language_stats([result("en-1", False, False, 3), result("en-2", False, False, 9)])
    assert stats.median_gold_rank == 6 and stats.illusion_rate is None


@given(cand=st.tuples(st.booleans(), st.booleans()), ref=st.tuples(st.booleans(), st.booleans()))
def test_recovery_scope_induced_is_exactly_the_failing_items(cand, ref):
    """induced probes the items whose consistency test fails, all every recognition-only item, off none."""
    from illusion.verdict import check_recovery_scope, needs_recovery

    verdict = ItemVerdict(candidate=result("en-q1", *cand), reference=result("en-q1", *ref))
    assert needs_recovery("induced", verdict) == (verdict.outcome == "fail") == verdict.pruning_induced
    assert needs_recovery("all", verdict) == verdict.candidate.recognition_only
    assert not needs_recovery("off", verdict)
    assert all(check_recovery_scope(scope) == scope for scope in ("induced", "all", "off"))


def test_a_bad_recovery_scope_names_the_choices():
    import pytest

    from illusion.errors import ConfigError
    from illusion.verdict import check_recovery_scope

    with pytest.raises(ConfigError, match="choose induced .* all .* or off"):
        check_recovery_scope("everything")


def test_unprobed_illusions_are_counted_apart_from_demoted_and_erased():
    from dataclasses import replace

    ro = result("en-q1", True, False)
    stats = language_stats([replace(ro, recovered_by=None), replace(ro, recovered_by=()),
                            replace(ro, recovered_by=("beam",)), result("en-q2", True, True)])
    assert (stats.not_probed, stats.erased, stats.demoted, stats.recognition_only) == (1, 1, 1, 3)
    assert replace(ro, recovered_by=None).recovery == "not_probed"
